"""What a dose record may say: not in the future, not before randomization, a plausible
amount, far outside the window only with a confirmed reason; a wrong record is corrected or
voided with a reason, never deleted."""

from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError

from dosing.models import Administration, DoseStatus, Reminder, ReminderStatus, ScheduledDose
from dosing.services import administration_correct, administration_void, dose_record
from tests.dosing.conftest import randomize, site_time

pytestmark = pytest.mark.django_db

LOT = "PAX-2603-17"


@pytest.fixture
def msc_day1(participant_a, site_a, coordinator_a):
    at = site_time(site_a, 2026, 3, 10, 8, 0)
    with time_machine.travel(at, tick=False):
        return randomize(participant_a, "MSC", at=at, user=coordinator_a)[0]


def give(dose, user, **values):
    return dose_record(
        dose=dose,
        user=user,
        outcome="given",
        **({"amount": Decimal("300"), "lot_number": LOT} | values),
    )


def errors_of(excinfo) -> dict:
    return excinfo.value.message_dict


def test_a_time_before_randomization_is_refused_with_the_randomization_time(
    pax_doses, site_a, coordinator_a
):
    with (
        time_machine.travel(site_time(site_a, 2026, 3, 11, 8, 30), tick=False),
        pytest.raises(ValidationError) as excinfo,
    ):
        give(pax_doses[0], coordinator_a, given_at=site_time(site_a, 1960, 1, 1, 8, 0))
    assert errors_of(excinfo) == {
        "given_at": [
            "The dose cannot have been given before randomization (2026-03-10 10:00 UTC+08:00)."
        ]
    }
    assert not Administration.objects.exists()
    assert ScheduledDose.objects.get(pk=pax_doses[0].pk).status == DoseStatus.SCHEDULED


def test_a_time_in_the_minute_of_randomization_is_accepted(msc_day1, site_a, coordinator_a):
    # Randomized at 08:00 on day 0; a day-0 time is far outside the day-1 window, so confirmed.
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 9, 0), tick=False):
        record = give(
            msc_day1,
            coordinator_a,
            amount=Decimal("62000000"),
            given_at=site_time(site_a, 2026, 3, 10, 8, 0),
        )
    assert record.deviation_hours == Decimal("16.00")


def test_300_million_mg_against_300_mg_is_refused_and_nothing_is_written(
    pax_doses, site_a, coordinator_a
):
    with (
        time_machine.travel(site_time(site_a, 2026, 3, 11, 8, 30), tick=False),
        pytest.raises(ValidationError) as excinfo,
    ):
        give(
            pax_doses[0],
            coordinator_a,
            amount=Decimal("300000000"),
            given_at=site_time(site_a, 2026, 3, 11, 8, 5),
        )
    assert errors_of(excinfo) == {
        "amount": [
            "Not plausible for a planned 300 mg nirmatrelvir: the amount given must be between "
            "150 and 600 mg nirmatrelvir. Check the number typed."
        ]
    }
    assert not Administration.objects.exists()
    assert Reminder.objects.filter(scheduled_dose=pax_doses[0], status="pending").exists()


def test_cells_outside_the_plausible_range_are_named_in_scientific_notation(
    msc_day1, site_a, coordinator_a
):
    with (
        time_machine.travel(site_time(site_a, 2026, 3, 11, 12, 0), tick=False),
        pytest.raises(ValidationError) as excinfo,
    ):
        give(
            msc_day1,
            coordinator_a,
            amount=Decimal("620000000"),
            given_at=site_time(site_a, 2026, 3, 11, 11, 0),
        )
    assert errors_of(excinfo) == {
        "amount": [
            "Not plausible for a planned 6.2 × 10⁷ cells: the amount given must be between "
            "3.1 × 10⁶ and 9.3 × 10⁷ cells. Check the number typed."
        ]
    }


def test_dose_10_five_days_early_asks_for_a_confirmed_reason(pax_doses, site_a, coordinator_a):
    dose_10 = pax_doses[9]  # day 5, 20:00: on time 18:00 to 22:00 on 2026-03-15
    early = site_time(site_a, 2026, 3, 10, 20, 0)
    with time_machine.travel(site_time(site_a, 2026, 3, 10, 21, 0), tick=False):
        with pytest.raises(ValidationError) as excinfo:
            give(dose_10, coordinator_a, given_at=early)
        assert errors_of(excinfo) == {
            "given_at": [
                "This is 118.00 h outside the dose's window (2026-03-15 18:00 UTC+08:00 to "
                "2026-03-15 22:00 UTC+08:00). If the time is right, tick the confirmation and "
                "give the reason."
            ]
        }
        with pytest.raises(ValidationError) as excinfo:
            give(dose_10, coordinator_a, given_at=early, confirm_outside_window=True)
        assert errors_of(excinfo) == {
            "outside_window_reason": [
                "Give the reason the dose was given so far outside its window."
            ]
        }
        assert not Administration.objects.exists()
        record = give(
            dose_10,
            coordinator_a,
            given_at=early,
            confirm_outside_window=True,
            outside_window_reason="  Supply for the weekend handed over early  ",
        )
    assert record.outside_window_reason == "Supply for the weekend handed over early"
    assert record.deviation_hours == Decimal("118.00")


def test_exactly_the_far_hours_outside_needs_no_confirmation(pax_doses, site_a, coordinator_a):
    # Dose 1 is on time 06:00 to 10:00; 16:00 is 6 h after: late, not far.
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 17, 0), tick=False):
        record = give(pax_doses[0], coordinator_a, given_at=site_time(site_a, 2026, 3, 11, 16, 0))
    assert (record.deviation_hours, record.outside_window_reason) == (Decimal("6.00"), "")


# --- Void ---------------------------------------------------------------------------------------


def test_a_voided_record_stays_with_its_reason_and_the_dose_is_open_again(
    msc_day1, site_a, coordinator_a, investigator_a
):
    with time_machine.travel(site_time(site_a, 2026, 3, 10, 9, 0), tick=False):
        # Recorded on the wrong participant's day-1 infusion, the evening before it is due.
        record = give(
            msc_day1,
            coordinator_a,
            amount=Decimal("62000000"),
            given_at=site_time(site_a, 2026, 3, 10, 8, 30),
        )
        assert not Reminder.objects.filter(scheduled_dose=msc_day1, status="pending").exists()
        voided = administration_void(
            administration=record, user=investigator_a, reason="  Recorded on the wrong patient "
        )
    assert Administration.objects.filter(pk=record.pk).exists()
    assert (voided.void_reason, voided.voided_by, voided.voided_at) == (
        "Recorded on the wrong patient",
        investigator_a,
        site_time(site_a, 2026, 3, 10, 9, 0),
    )
    change = voided.history.first()
    assert (change.history_change_reason, change.history_user) == (
        "Recorded on the wrong patient",
        investigator_a,
    )
    dose = ScheduledDose.objects.get(pk=msc_day1.pk)
    assert dose.status == DoseStatus.SCHEDULED
    assert dose.history.first().history_change_reason == (
        "Record voided: Recorded on the wrong patient"
    )
    # The reminders still ahead are back: 24 h and 1 h before, and the overdue alert.
    assert set(
        Reminder.objects.filter(scheduled_dose=dose).values_list("kind", "lead_hours", "status")
    ) == {
        ("lead", 24, ReminderStatus.PENDING),
        ("lead", 1, ReminderStatus.PENDING),
        ("overdue", 0, ReminderStatus.PENDING),
    }
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 9, 30), tick=False):
        again = give(
            dose,
            coordinator_a,
            amount=Decimal("62000000"),
            given_at=site_time(site_a, 2026, 3, 11, 9, 10),
        )
    assert again.pk != record.pk
    assert ScheduledDose.objects.get(pk=msc_day1.pk).status == DoseStatus.GIVEN


def test_voiding_after_the_window_leaves_the_dose_overdue(pax_doses, site_a, coordinator_a):
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 8, 30), tick=False):
        record = give(pax_doses[0], coordinator_a, given_at=site_time(site_a, 2026, 3, 11, 8, 5))
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 12, 0), tick=False):
        administration_void(administration=record, user=coordinator_a, reason="Vomited, not given")
    assert ScheduledDose.objects.get(pk=pax_doses[0].pk).status == DoseStatus.OVERDUE
    assert not Reminder.objects.filter(scheduled_dose=pax_doses[0], status="pending").exists()


def test_a_void_needs_a_reason_and_a_second_void_is_refused(pax_doses, site_a, coordinator_a):
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 8, 30), tick=False):
        record = give(pax_doses[0], coordinator_a, given_at=site_time(site_a, 2026, 3, 11, 8, 5))
        with pytest.raises(ValidationError) as excinfo:
            administration_void(administration=record, user=coordinator_a, reason="  ")
        assert errors_of(excinfo) == {"reason": ["Give the reason for voiding this record."]}
        assert not Administration.objects.get(pk=record.pk).is_void
        administration_void(administration=record, user=coordinator_a, reason="Wrong dose")
        with pytest.raises(ValidationError) as excinfo:
            administration_void(administration=record, user=coordinator_a, reason="Again")
    assert excinfo.value.messages == ["This record was voided; record the dose again instead."]
    assert Administration.objects.get(pk=record.pk).void_reason == "Wrong dose"


# --- Correct ------------------------------------------------------------------------------------


def test_a_correction_changes_the_values_and_the_history_keeps_the_old_ones_and_why(
    pax_doses, site_a, coordinator_a, investigator_a
):
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 8, 30), tick=False):
        record = give(pax_doses[0], coordinator_a, given_at=site_time(site_a, 2026, 3, 11, 8, 5))
        administration_correct(
            administration=record,
            user=investigator_a,
            reason="eGFR 45 on the ward: half dose given",
            amount=Decimal("150"),
        )
    record.refresh_from_db()
    assert record.amount == Decimal("150")
    latest, before = record.history.all()[:2]
    assert latest.history_change_reason == "eGFR 45 on the ward: half dose given"
    assert (before.amount, latest.amount) == (Decimal("300"), Decimal("150"))


def test_a_correction_is_held_to_the_same_checks(pax_doses, site_a, coordinator_a):
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 8, 30), tick=False):
        record = give(pax_doses[0], coordinator_a, given_at=site_time(site_a, 2026, 3, 11, 8, 5))
        with pytest.raises(ValidationError) as excinfo:
            administration_correct(
                administration=record,
                user=coordinator_a,
                reason="typo",
                amount=Decimal("3000"),
                given_at=site_time(site_a, 2026, 3, 9, 8, 5),
            )
    assert errors_of(excinfo) == {
        "amount": [
            "Not plausible for a planned 300 mg nirmatrelvir: the amount given must be between "
            "150 and 600 mg nirmatrelvir. Check the number typed."
        ],
        "given_at": [
            "The dose cannot have been given before randomization (2026-03-10 10:00 UTC+08:00)."
        ],
    }
    record.refresh_from_db()
    assert (record.amount, record.history.count()) == (Decimal("300"), 1)


def test_a_voided_record_cannot_be_corrected(pax_doses, site_a, coordinator_a):
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 8, 30), tick=False):
        record = give(pax_doses[0], coordinator_a, given_at=site_time(site_a, 2026, 3, 11, 8, 5))
        administration_void(administration=record, user=coordinator_a, reason="Wrong patient")
        with pytest.raises(ValidationError) as excinfo:
            administration_correct(
                administration=record, user=coordinator_a, reason="lot", lot_number="X"
            )
    assert excinfo.value.messages == ["This record was voided; record the dose again instead."]


def test_moving_a_record_far_outside_its_window_asks_for_the_reason_again(
    pax_doses, site_a, coordinator_a
):
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 21, 0), tick=False):
        record = give(pax_doses[0], coordinator_a, given_at=site_time(site_a, 2026, 3, 11, 8, 5))
        late = site_time(site_a, 2026, 3, 11, 20, 30)
        with pytest.raises(ValidationError) as excinfo:
            administration_correct(
                administration=record, user=coordinator_a, reason="time", given_at=late
            )
        assert list(errors_of(excinfo)) == ["given_at"]
        administration_correct(
            administration=record,
            user=coordinator_a,
            reason="Time taken from the wrong line of the chart",
            given_at=late,
            confirm_outside_window=True,
            outside_window_reason="Patient off the ward for a CT scan",
        )
        record.refresh_from_db()
        assert (record.deviation_hours, record.outside_window_reason) == (
            Decimal("10.50"),
            "Patient off the ward for a CT scan",
        )
        # A later correction of the lot alone keeps the confirmed time and its reason.
        administration_correct(
            administration=record, user=coordinator_a, reason="Lot misread", lot_number="PAX-9"
        )
    record.refresh_from_db()
    assert record.outside_window_reason == "Patient off the ward for a CT scan"
    assert record.given_at == late
