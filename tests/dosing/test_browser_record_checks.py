"""In headless Chromium, at a desktop's and a phone's width: a coordinator types an impossible
amount and a time before randomization, sees each message beside its field with what was typed
still there, records the infusion right, then voids the record with a reason."""

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from dosing.models import Administration, DoseStatus
from tests.conftest import log_in, screenshot
from tests.dosing.conftest import randomize, screened_participant
from trialsite.core.clock import site_time_text

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = {"desktop": (1366, 900), "phone": (390, 844)}


def screenshots(page, name: str) -> None:
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        screenshot(page, f"{name}-{label}")
    page.set_viewport_size({"width": 1366, "height": 900})


def test_coordinator_is_stopped_at_the_impossible_then_records_and_voids_with_a_reason(
    page, protocol, site_a, coordinator_a, investigator_a
):
    zone = site_a.zone
    today = timezone.localdate(timezone=zone)
    randomized = datetime.combine(today - timedelta(days=1), time(10, 0), tzinfo=zone)
    participant = screened_participant(site=site_a, user=coordinator_a, weight_kg="70.5")
    day1, _ = randomize(participant, "MSC", at=randomized, user=coordinator_a)
    page.set_viewport_size({"width": 1366, "height": 900})
    log_in(page, coordinator_a)

    page.goto(f"/dosing/participants/{participant.study_number}/")
    page.get_by_test_id("dose-row").first.get_by_role("link", name="Record").click()
    page.wait_for_url(f"**/dosing/doses/{day1.pk}/record/")
    assert page.input_value("#id_amount") == "70500000"
    assert page.get_by_test_id("planned-amount").inner_text() == "7.05 × 10⁷ cells"

    typed_time = f"{today - timedelta(days=2):%Y-%m-%d}T08:00"
    page.fill("#id_given_at", typed_time)
    page.fill("#id_amount", "705000000")
    page.get_by_label("Lot or batch number").fill("UCMSC-2603-A")
    # The browser catches the amount first, from the schedule's plausible range on the input.
    assert page.get_attribute("#id_amount", "min") == "3525000"
    assert page.get_attribute("#id_amount", "max") == "105750000"
    assert page.evaluate("document.querySelector('#id_amount').validity.rangeOverflow")
    # The server says why in its own words: asked with the browser's check turned off.
    page.evaluate("document.querySelector('#id_amount').form.noValidate = true")
    page.get_by_role("button", name="Record").click()

    assert page.locator("#error_1_id_given_at").inner_text() == (
        "The dose cannot have been given before randomization "
        f"({site_time_text(randomized, site_a)})."
    )
    assert page.locator("#error_1_id_amount").inner_text() == (
        "Not plausible for a planned 7.05 × 10⁷ cells: the amount given must be between "
        "3.53 × 10⁶ and 1.06 × 10⁸ cells. Check the number typed."
    )
    assert page.input_value("#id_given_at") == typed_time
    assert page.input_value("#id_amount") == "705000000"
    assert page.input_value("#id_lot_number") == "UCMSC-2603-A"
    assert not Administration.objects.exists()
    screenshots(page, "dosing-record-refused")

    now = timezone.localtime(timezone.now(), zone)
    page.fill("#id_given_at", f"{now:%Y-%m-%dT%H:%M}")
    page.fill("#id_amount", "70500000")
    page.get_by_role("button", name="Record").click()
    page.wait_for_url(f"**/dosing/participants/{participant.study_number}/")
    assert page.get_by_text(f"Dose 1 of {participant.study_number} recorded.").is_visible()
    record = Administration.objects.get()
    assert (record.amount, record.lot_number) == (70500000, "UCMSC-2603-A")

    page.get_by_test_id("dose-row").first.get_by_role("link", name="void").click()
    page.wait_for_url(f"**/dosing/doses/{day1.pk}/void/")
    assert (
        "7.05 × 10⁷ cells · lot UCMSC-2603-A" in page.get_by_test_id("record-to-void").inner_text()
    )
    page.get_by_label("Reason for voiding this record").fill("Recorded on the wrong patient")
    screenshots(page, "dosing-void")
    page.get_by_role("button", name="Void this record").click()
    page.wait_for_url(f"**/dosing/participants/{participant.study_number}/")

    assert page.get_by_text(
        "The record of dose 1 was voided; the dose is open for recording again."
    ).is_visible()
    first_row = page.get_by_test_id("dose-row").first
    assert "Recorded on the wrong patient" in first_row.get_by_test_id("void-record").inner_text()
    assert first_row.get_by_role("link", name="Record").is_visible()
    screenshots(page, "dosing-timeline-after-void")
    record.refresh_from_db()
    assert record.void_reason == "Recorded on the wrong patient"
    day1.refresh_from_db()
    # Open again: still due today, or overdue if the site's midnight passed during the test.
    reopened = DoseStatus.SCHEDULED if timezone.now() <= day1.window_end else DoseStatus.OVERDUE
    assert day1.status == reopened
