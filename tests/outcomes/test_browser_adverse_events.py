"""In headless Chromium: an investigator records a grade 3 serious adverse event for an MSC
participant, signs its causality per infusion, and finds it among the reports due with the
time left and the alerts to the investigators; the participant page counts it. The adverse
event pages fit a phone, and axe finds nothing serious on them, bad input included."""

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from outcomes.models import AlertKind, CausalityAssessment, SaeAlert
from tests.conftest import log_in, screenshot
from tests.factories import PASSWORD
from tests.outcomes.ae_helpers import randomized_to

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _msc_yesterday(site, coordinator, investigator, administrator):
    today = timezone.localdate(timezone=site.zone)
    return randomized_to(
        "MSC",
        site=site,
        coordinator=coordinator,
        investigator=investigator,
        administrator=administrator,
        at=datetime.combine(today - timedelta(days=1), time(10, 0), tzinfo=site.zone),
    )


@pytest.mark.parametrize("width,height", [(390, 844), (1366, 900)])
def test_investigator_records_a_serious_event_and_signs_its_causality(
    page, protocol, site_a, coordinator_a, investigator_a, administrator, width, height
):
    allocation = _msc_yesterday(site_a, coordinator_a, investigator_a, administrator)
    number = allocation.participant.study_number
    today = timezone.localdate(timezone=site_a.zone)
    log_in(page, investigator_a)
    page.set_viewport_size({"width": width, "height": height})

    page.goto(f"/participants/{number}/")
    page.get_by_test_id("ae-panel").get_by_role("link", name="Adverse events").click()
    page.wait_for_url(f"**/outcomes/participants/{number}/adverse-events/")
    page.get_by_test_id("record-ae").click()
    page.get_by_label("Term").fill("Pneumonia")
    page.get_by_label("Onset").fill(today.isoformat())
    page.get_by_label("3 – Severe or medically significant").check()
    page.get_by_label("Serious adverse event").check()
    page.get_by_label("Requires or prolongs hospitalisation").check()
    page.get_by_label("Action taken").select_option("none")
    page.get_by_label("Outcome").select_option("not_recovered")
    screenshot(page, f"outcomes-ae-form-{width}")
    page.get_by_role("button", name="Record adverse event").click()

    page.wait_for_url(f"**/outcomes/participants/{number}/adverse-events/")
    assert page.get_by_text(f"Adverse event recorded for {number}.").is_visible()
    assert "24 h 00 min left" in page.get_by_test_id("time-left").inner_text() or (
        "23 h 59 min left" in page.get_by_test_id("time-left").inner_text()
    )
    page.get_by_test_id("sign-causality").click()
    for n, choice in ((1, "Possible"), (2, "Not related")):
        group = (
            page.locator("fieldset, .mb-3")
            .filter(has_text=f"Related to UC-MSC suspension, infusion {n} (day")
            .last
        )
        group.get_by_label(choice, exact=True).check()
    page.get_by_label("Unexpected", exact=True).check()
    page.get_by_label("Your password").fill(PASSWORD)
    screenshot(page, f"outcomes-ae-causality-{width}")
    page.get_by_role("button", name="Sign").click()

    page.wait_for_url(f"**/outcomes/participants/{number}/adverse-events/")
    assert page.get_by_text("Causality assessment signed.").is_visible()
    assert "Signed: " in page.get_by_test_id("causality-signed").inner_text()
    screenshot(page, f"outcomes-ae-list-{width}")

    page.goto("/outcomes/adverse-events/serious/")
    row = page.get_by_test_id("sae-row")
    assert number in row.inner_text()
    assert "Serious adverse event recorded" in row.get_by_test_id("alerts").inner_text()
    screenshot(page, f"outcomes-sae-reports-{width}")

    assessment = CausalityAssessment.objects.get()
    assert [r.relatedness for r in assessment.relatedness.order_by("pk")] == [
        "possible",
        "not_related",
    ]
    assert set(SaeAlert.objects.values_list("kind", flat=True)) == set(AlertKind.values)


def test_the_adverse_event_pages_fit_a_phone_and_axe_finds_nothing_serious(
    axe_page, protocol, site_a, coordinator_a, investigator_a, administrator
):
    from tests.trialsite.test_browser_every_page import axe_violations

    allocation = _msc_yesterday(site_a, coordinator_a, investigator_a, administrator)
    number = allocation.participant.study_number
    log_in(axe_page, investigator_a)
    problems = []
    for width in (390, 1366):
        axe_page.set_viewport_size({"width": width, "height": 844})
        for path, bad_input in [
            (f"/outcomes/participants/{number}/adverse-events/", False),
            (f"/outcomes/participants/{number}/adverse-events/new/", False),
            (f"/outcomes/participants/{number}/adverse-events/new/", True),
            (f"/outcomes/participants/{number}/end-of-study/", False),
            ("/outcomes/adverse-events/serious/", False),
        ]:
            assert axe_page.goto(path).status == 200
            if bad_input:
                axe_page.get_by_label("Term").fill("Rash")
                axe_page.get_by_label("Onset").fill("2020-01-01")
                axe_page.get_by_label("1 – Mild").check()
                axe_page.get_by_role("button", name="Record adverse event").click()
                assert axe_page.get_by_text("The onset is before randomization").first.is_visible()
                screenshot(axe_page, f"outcomes-ae-form-errors-{width}")
            scroll = axe_page.evaluate("document.documentElement.scrollWidth")
            if scroll > width:
                problems.append(f"{path} at {width}px scrolls sideways: {scroll}px")
            for v in axe_violations(axe_page):
                problems.append(f"{path} at {width}px: {v['id']} {v['help']}: {v['nodes']}")
    assert problems == [], "\n".join(problems)


@pytest.fixture
def axe_page(chromium, live_server):
    """Axe is injected as a script: the page's Content-Security-Policy is bypassed for it."""
    context = chromium.new_context(base_url=live_server.url, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()
