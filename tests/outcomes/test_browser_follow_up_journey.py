"""In headless Chromium, the follow-up of one MSC participant as two people do it: the
coordinator records the day-1 visit; the investigator records a grade 3 serious adverse
event, signs its causality, finds the alert on the reminders page, and reads the whole story
on the participant page, down to one record's audit history."""

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from tests.conftest import log_in, screenshot
from tests.factories import PASSWORD
from tests.outcomes.ae_helpers import randomized_to

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def investigator_page(chromium, live_server):
    context = chromium.new_context(base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.mark.parametrize("width,height", [(390, 844), (1366, 900)])
def test_a_visit_and_a_serious_adverse_event_make_the_participants_story(
    page,
    investigator_page,
    protocol,
    site_a,
    coordinator_a,
    investigator_a,
    administrator,
    width,
    height,
):
    today = timezone.localdate(timezone=site_a.zone)
    allocation = randomized_to(
        "MSC",
        site=site_a,
        coordinator=coordinator_a,
        investigator=investigator_a,
        administrator=administrator,
        at=datetime.combine(today - timedelta(days=1), time(10, 0), tzinfo=site_a.zone),
    )
    number = allocation.participant.study_number

    # The coordinator records the day-1 visit.
    log_in(page, coordinator_a)
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"/participants/{number}/")
    # Day 0's window closed yesterday with no record: overdue; day 1's is open today.
    due = page.get_by_test_id("due-next").locator("[data-kind=visit_due]")
    assert "Visit D0, Baseline" in due.first.inner_text()
    assert "overdue" in due.first.inner_text()
    assert "Visit D1, Day 1" in due.last.inner_text()
    page.get_by_test_id("visits-panel").get_by_role("link", name="Visits").click()
    page.locator("[data-testid=visit-row][data-code=D1]").get_by_role("link", name="Record").click()
    page.get_by_label("Visit date").fill(today.isoformat())
    page.get_by_label("5 · Hospitalised, moderate disease: oxygen by mask or nasal prongs").check()
    page.get_by_label("SpO2 (%)").fill("94")
    page.get_by_label("Respiratory support").select_option("oxygen")
    page.get_by_label("Alive").check()
    page.get_by_role("button", name="Record").click()
    assert page.get_by_text(f"Visit D1 of {number} recorded.").is_visible()

    # The investigator records a serious adverse event and signs its causality.
    inv = investigator_page
    log_in(inv, investigator_a)
    inv.set_viewport_size({"width": width, "height": height})
    inv.goto(f"/outcomes/participants/{number}/adverse-events/new/")
    inv.get_by_label("Term").fill("Pneumonia")
    inv.get_by_label("Onset").fill(today.isoformat())
    inv.get_by_label("3 – Severe or medically significant").check()
    inv.get_by_label("Serious adverse event").check()
    inv.get_by_label("Requires or prolongs hospitalisation").check()
    inv.get_by_label("Action taken").select_option("none")
    inv.get_by_label("Outcome").select_option("not_recovered")
    inv.get_by_role("button", name="Record adverse event").click()
    assert inv.get_by_text(f"Adverse event recorded for {number}.").is_visible()
    inv.get_by_test_id("sign-causality").click()
    for n, choice in ((1, "Possible"), (2, "Not related")):
        group = (
            inv.locator("fieldset, .mb-3")
            .filter(has_text=f"Related to UC-MSC suspension, infusion {n} (day")
            .last
        )
        group.get_by_label(choice, exact=True).check()
    inv.get_by_label("Unexpected", exact=True).check()
    inv.get_by_label("Your password").fill(PASSWORD)
    inv.get_by_role("button", name="Sign").click()
    assert inv.get_by_text("Causality assessment signed.").is_visible()

    # The alert to the investigators is on the reminders page.
    inv.goto("/dosing/reminders/")
    alerts = inv.get_by_test_id("sae-alerts")
    immediate = alerts.locator("[data-testid=sae-alert-row][data-kind=immediate]")
    assert number in immediate.inner_text()
    assert "Pneumonia" in immediate.inner_text()
    screenshot(inv, f"journey-follow-up-reminders-{width}")

    # The participant page tells it all, in order, with the report due at the top.
    inv.goto(f"/participants/{number}/")
    kinds = inv.locator("[data-testid=timeline-entry]").evaluate_all(
        "entries => entries.map(e => e.dataset.kind)"
    )
    assert kinds[kinds.index("allocation") :] == [
        "allocation",
        "visit",
        "adverse_event",
        "causality",
    ]
    due = inv.get_by_test_id("due-next")
    assert "Report Pneumonia to sponsor and ethics" in due.inner_text()
    assert "left" in due.locator("[data-kind=sae_report_due]").inner_text()
    screenshot(inv, f"journey-follow-up-participant-{width}")
    assert inv.evaluate("document.documentElement.scrollWidth") <= width

    # Each event opens its audit history.
    inv.locator("[data-testid=timeline-entry][data-kind=adverse_event]").get_by_test_id(
        "history-link"
    ).click()
    inv.wait_for_url("**/audit/outcomes.adverseevent/**")
    assert "Pneumonia" in inv.content()
    screenshot(inv, f"journey-follow-up-history-{width}")
