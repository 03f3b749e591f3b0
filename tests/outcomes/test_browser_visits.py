"""In headless Chromium, on a phone and on a desktop: a coordinator opens the participant's
visits from the participant page and records the day-1 visit; the list shows it done."""

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from outcomes.models import VisitRecord, VisitStatus
from outcomes.services import visit_record
from tests.conftest import log_in, screenshot
from tests.outcomes.visit_helpers import randomized

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width,height", [(390, 844), (1366, 900)])
def test_coordinator_records_the_day_1_visit(
    page, protocol, site_a, coordinator_a, investigator_a, administrator, width, height
):
    today = timezone.localdate(timezone=site_a.zone)
    allocation = randomized(
        site=site_a,
        coordinator=coordinator_a,
        investigator=investigator_a,
        administrator=administrator,
        at=datetime.combine(today - timedelta(days=1), time(10, 0), tzinfo=site_a.zone),
    )
    study_number = allocation.participant.study_number
    log_in(page, coordinator_a)  # the navbar names the user only when it is not collapsed
    page.set_viewport_size({"width": width, "height": height})

    page.goto(f"/participants/{study_number}/")
    panel = page.get_by_test_id("visits-panel")
    assert "0 of 6 visits done" in panel.inner_text()
    panel.get_by_role("link", name="Visits").click()
    page.wait_for_url(f"**/outcomes/participants/{study_number}/visits/")
    page.locator("[data-testid=visit-row][data-code=D1]").get_by_role("link", name="Record").click()

    page.get_by_label("Visit date").fill(today.isoformat())
    page.get_by_label("5 · Hospitalised, moderate disease: oxygen by mask or nasal prongs").check()
    page.get_by_label("SpO2 (%)").fill("94")
    page.get_by_label("Respiratory support").select_option("oxygen")
    page.get_by_label("PaO2 (mmHg)").fill("82")
    page.get_by_label("FiO2", exact=True).fill("40")
    page.get_by_label("Lymphocyte count (×10⁹/L)").fill("0.9")
    page.get_by_label("CRP (mg/L)").fill("31")
    chest_ct = page.get_by_test_id("measurement-chest_ct")
    chest_ct.get_by_label("Not done", exact=True).check()
    chest_ct.get_by_label("Why not done").fill("Not indicated on day 1")
    page.get_by_label("Alive").check()
    screenshot(page, f"outcomes-visit-day1-form-{width}")
    page.get_by_role("button", name="Record").click()

    page.wait_for_url(f"**/outcomes/participants/{study_number}/visits/")
    assert page.get_by_text(f"Visit D1 of {study_number} recorded.").is_visible()
    row = page.locator("[data-testid=visit-row][data-code=D1]")
    assert row.get_attribute("data-status") == VisitStatus.DONE
    assert "Done" in row.inner_text()
    screenshot(page, f"outcomes-visit-list-{width}")

    record = VisitRecord.objects.get(scheduled_visit__participant=allocation.participant)
    assert (record.who_score, str(record.fio2), record.pf_ratio) == (5, "0.40", 205)
    assert record.il6 is None and not record.il6_not_done  # left blank: not yet known
    assert record.chest_ct_not_done_reason == "Not indicated on day 1"


@pytest.fixture
def axe_page(chromium, live_server):
    """Axe is injected as a script: the page's Content-Security-Policy is bypassed for it."""
    context = chromium.new_context(base_url=live_server.url, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def test_the_visit_pages_fit_a_phone_and_axe_finds_nothing_serious(
    axe_page, protocol, site_a, coordinator_a, investigator_a, administrator
):
    from tests.trialsite.test_browser_every_page import axe_violations

    today = timezone.localdate(timezone=site_a.zone)
    allocation = randomized(
        site=site_a,
        coordinator=coordinator_a,
        investigator=investigator_a,
        administrator=administrator,
        at=datetime.combine(today - timedelta(days=1), time(10, 0), tzinfo=site_a.zone),
    )
    visits = {v.definition.code: v for v in allocation.participant.scheduled_visits.all()}
    visit_record(
        scheduled_visit=visits["D0"],
        user=coordinator_a,
        visit_date=today - timedelta(days=1),
        vital_status="alive",
        measurements={"who_score": 6, "spo2": 91, "respiratory_support": "high_flow"},
    )
    log_in(axe_page, coordinator_a)
    problems = []
    for width in (390, 1366):
        axe_page.set_viewport_size({"width": width, "height": 844})
        for path, bad_input in [
            (f"/outcomes/participants/{allocation.participant.study_number}/visits/", False),
            (f"/outcomes/visits/{visits['D1'].pk}/record/", False),
            (f"/outcomes/visits/{visits['D1'].pk}/record/", True),
            (f"/outcomes/visits/{visits['D0'].pk}/", False),
            (f"/outcomes/visits/{visits['D0'].pk}/correct/", False),
        ]:
            assert axe_page.goto(path).status == 200
            if bad_input:
                axe_page.get_by_label("SpO2 (%)").fill("45")
                axe_page.get_by_role("button", name="Record").click()
                assert axe_page.get_by_text("SpO2 must be between 50 and 100 %.").first.is_visible()
                screenshot(axe_page, f"outcomes-visit-form-errors-{width}")
            scroll = axe_page.evaluate("document.documentElement.scrollWidth")
            if scroll > width:
                problems.append(f"{path} at {width}px scrolls sideways: {scroll}px")
            for v in axe_violations(axe_page):
                problems.append(f"{path} at {width}px: {v['id']} {v['help']}: {v['nodes']}")
    assert problems == [], "\n".join(problems)
