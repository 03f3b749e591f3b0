"""In headless Chromium: a coordinator sees today's day-4 infusion on the worklist, records
it with a lot number, and the participant's timeline shows 2/2 infusions."""

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from dosing.models import Administration
from dosing.services import dose_record
from tests.conftest import screenshot
from tests.dosing.conftest import randomize, screened_participant
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_coordinator_records_todays_day_4_infusion_and_the_timeline_shows_2_of_2(
    page, protocol, site_a, coordinator_a, investigator_a
):
    zone = site_a.zone
    today = timezone.localdate(timezone=zone)
    randomized = datetime.combine(today - timedelta(days=4), time(10, 0), tzinfo=zone)
    participant = screened_participant(site=site_a, user=coordinator_a, weight_kg="70.5")
    day1, day4 = randomize(participant, "MSC", at=randomized, user=coordinator_a)
    dose_record(
        dose=day1,
        user=coordinator_a,
        outcome="given",
        given_at=day1.due_at + timedelta(minutes=20),
        amount=day1.planned_amount,
        lot_number="UCMSC-2603-A",
    )

    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/home/coordinator/")
    page.get_by_test_id("dosing-worklist-link").click()
    page.wait_for_url("**/dosing/today/")

    row = page.get_by_test_id("worklist-row").filter(has_text=participant.study_number)
    assert row.count() == 1
    assert "dose 2/2, day 4" in row.inner_text()
    assert "7.05 × 10⁷ cells" in row.inner_text()
    screenshot(page, "dosing-worklist-day4")
    row.get_by_role("link", name="Record").click()

    assert "dose 2 of 2, day 4" in page.get_by_test_id("dose-summary").inner_text()
    page.get_by_label("Lot or batch number").fill("UCMSC-2603-B")
    screenshot(page, "dosing-record-day4")
    page.get_by_role("button", name="Record").click()
    page.wait_for_url("**/dosing/today/")
    assert page.get_by_text(f"Dose 2 of {participant.study_number} recorded.").is_visible()

    page.get_by_role("link", name=participant.study_number).first.click()
    page.wait_for_url(f"**/dosing/participants/{participant.study_number}/")
    assert page.get_by_test_id("dose-count").inner_text() == "2/2 infusions"
    assert "UCMSC-2603-B" in page.get_by_test_id("dosing-timeline").inner_text()
    screenshot(page, "dosing-timeline-2-of-2")

    record = Administration.objects.get(scheduled_dose=day4)
    assert (record.lot_number, record.deviation_hours) == ("UCMSC-2603-B", None)
    assert record.recorded_by == coordinator_a
