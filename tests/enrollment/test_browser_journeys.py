"""Journeys through the real pages in Chromium: a coordinator enrolls a patient to "ready to
randomize" with an investigator's sign-off, and a BMI of 31 shows the failing I3."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import log_in, screenshot
from tests.factories import PASSWORD, ConsentVersionFactory
from trialsite.core.clock import site_today

pytestmark = pytest.mark.browser


@pytest.fixture
def ward(transactional_db, protocol, site_a, coordinator_a, investigator_a, administrator):
    ConsentVersionFactory(version="1.0", created_by=administrator)
    coordinator_a.first_name, coordinator_a.last_name = "Lin", "Coordinator"
    coordinator_a.save()
    return site_a


def log_out(page):
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/accounts/login/")


def register(page, *, name, mrn, sex="F"):
    page.goto("/participants/register/")
    page.fill("#id_name", name)
    page.fill("#id_mrn", mrn)
    page.check(f"input[name=sex][value={sex}]")
    page.fill("#id_date_of_birth", "1970-05-01")
    page.get_by_role("button", name="Register").click()
    page.wait_for_selector("text=Registered as")


def screen(page, site, *, height="165", weight="62", sex="F"):
    page.get_by_role("link", name="Screen", exact=True).click()
    today = site_today(site)
    page.fill("#id_diagnosis_date", (today - timedelta(days=2)).isoformat())
    page.check("input[name=severity][value=severe]")
    page.fill("#id_respiratory_rate", "31")
    page.fill("#id_height_cm", height)
    page.fill("#id_weight_kg", weight)
    page.fill("#id_egfr", "85")
    page.select_option("#id_nyha_class", "1")
    page.select_option("#id_ckd_stage", "0")
    page.select_option("#id_child_pugh", "0")
    # The pregnancy question (E5) is not on a male patient's form.
    assert page.locator("input[name=E5]").count() == (0 if sex == "M" else 2)  # yes, no
    for code in ("E1", "E2", "E3", "E4", "E5", "E6", "E7", "E9", "E10", "E11", "E12"):
        if code == "E5" and sex == "M":
            continue
        page.check(f"input[name={code}][value=no]")
    screenshot(page, f"enrollment-screening-form-{sex}-{weight}kg")
    page.get_by_role("button", name="Save screening").click()
    page.wait_for_selector("text=Screening saved")


def test_coordinator_enrolls_to_ready_to_randomize(page, ward, coordinator_a, investigator_a):
    log_in(page, coordinator_a)
    register(page, name="Wang Fang", mrn="SHE-H-55102")
    assert page.get_by_test_id("study-number").inner_text() == "SHE-0001"
    assert page.get_by_test_id("participant-name").inner_text() == "Wang Fang"
    screenshot(page, "enrollment-1-registered")

    screen(page, ward)
    assert page.get_by_test_id("decision").first.inner_text() == "Eligible"
    screenshot(page, "enrollment-2-screened-eligible")

    page.get_by_role("link", name="Record consent").click()
    consented = timezone.localtime(timezone.now() - timedelta(minutes=20), ward.zone)
    page.fill("#id_consented_at", consented.strftime("%Y-%m-%dT%H:%M"))
    page.check("input[name=signer][value=lar]")
    page.fill("#id_lar_name", "Wang Lei")
    page.fill("#id_lar_relationship", "son")
    page.check("#id_copy_given")
    screenshot(page, "enrollment-3-lar-consent-form")
    page.get_by_role("button", name="Record consent").click()
    page.wait_for_selector("text=Consent recorded.")
    assert page.get_by_test_id("reconsent-task").is_visible()
    gate = page.get_by_test_id("gate").inner_text()
    assert "No investigator has signed off the latest screening." in gate
    assert "Ready to randomize" not in gate
    log_out(page)

    log_in(page, investigator_a)
    page.goto("/participants/SHE-0001/")
    page.get_by_role("link", name="Sign off eligibility").click()
    assert "I confirm this patient is eligible." in page.content()
    page.fill("#id_password", PASSWORD)
    screenshot(page, "enrollment-4-signoff")
    page.get_by_role("button", name="Sign").click()
    page.wait_for_selector("text=Eligibility signed off.")
    assert page.get_by_test_id("ready").inner_text() == "Ready to randomize"
    assert investigator_a.get_full_name() in page.get_by_test_id("signoff").inner_text()
    screenshot(page, "enrollment-5-ready-to-randomize")


def test_bmi_31_shows_the_failing_criterion(page, ward, coordinator_a):
    log_in(page, coordinator_a)
    register(page, name="Chen Jie", mrn="SHE-H-55103", sex="M")
    screen(page, ward, height="170", weight="89.6", sex="M")
    assert page.get_by_test_id("decision").first.inner_text() == "Ineligible"
    i3 = page.locator("[data-criterion=I3]").first.inner_text()
    assert "BMI 31.0 kg/m2 is above 30" in i3
    assert "not met" in i3
    screenshot(page, "enrollment-bmi-31-fails-I3")
