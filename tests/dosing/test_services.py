"""Dosing services on the database: schedules, records, overdue, the outbox (in-process).

Delivery through a real worker and broker is in test_tasks.py; here the dispatcher runs in
this process with Django's locmem mail backend, the only fake being the outside world.
"""

import datetime
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from dosing.models import (
    Administration,
    DoseStatus,
    Reminder,
    ReminderKind,
    ReminderStatus,
    ScheduledDose,
)
from dosing.services import (
    CLAIM_LEASE,
    MAX_ATTEMPTS,
    administration_correct,
    dose_record,
    doses_mark_overdue,
    participant_reminders_cancel,
    reminder_resend,
    reminders_dispatch,
)
from tests.dosing.conftest import MRN, NAME, randomize, screened_participant, site_time
from trialsite.core.clock import site_today

pytestmark = pytest.mark.django_db

FAILING = "tests.dosing.fakes.FailingChannel"


@pytest.fixture(autouse=True)
def _locmem_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def reminders(participant, **filters):
    return list(
        Reminder.objects.filter(participant=participant, **filters)
        .order_by("due_at")
        .values_list("kind", "lead_hours", "due_at", "status")
    )


# --- The schedule -------------------------------------------------------------------------------


def test_msc_schedule_two_infusions_per_kg_of_screening_weight_with_reminders(
    participant_a, site_a, coordinator_a
):
    randomized = site_time(site_a, 2026, 3, 10, 8, 0)
    with time_machine.travel(randomized, tick=False):
        doses = randomize(participant_a, "MSC", at=randomized, user=coordinator_a)
    assert [(d.sequence, d.study_day, d.due_at) for d in doses] == [
        (1, 1, site_time(site_a, 2026, 3, 11, 9, 0)),
        (4 // 2, 4, site_time(site_a, 2026, 3, 14, 9, 0)),
    ]
    assert {d.planned_amount for d in doses} == {Decimal("62000000")}  # 62 kg x 1e6 cells/kg
    assert doses[0].amount_display == "6.2 × 10⁷ cells"
    assert reminders(participant_a, scheduled_dose=doses[0]) == [
        ("lead", 24, site_time(site_a, 2026, 3, 10, 9, 0), "pending"),
        ("lead", 1, site_time(site_a, 2026, 3, 11, 8, 0), "pending"),
        ("overdue", 0, site_time(site_a, 2026, 3, 12, 0, 0), "pending"),
    ]
    # Every dose has its history row: the schedule is trial data.
    assert doses[0].history.count() == 1


def test_randomized_at_2359_no_24_hour_reminder_that_would_come_after_the_fact(
    participant_a, site_a, coordinator_a
):
    randomized = site_time(site_a, 2026, 3, 10, 23, 59)
    with time_machine.travel(randomized, tick=False):
        doses = randomize(participant_a, "MSC", at=randomized, user=coordinator_a)
    assert [(k, h) for k, h, _, _ in reminders(participant_a, scheduled_dose=doses[0])] == [
        ("lead", 1),
        ("overdue", 0),
    ]
    assert len(reminders(participant_a, scheduled_dose=doses[1])) == 3


def test_the_schedule_is_created_once_per_participant(participant_a, site_a, coordinator_a):
    randomized = site_time(site_a, 2026, 3, 10, 8, 0)
    with time_machine.travel(randomized, tick=False):
        first = randomize(participant_a, "MSC", at=randomized, user=coordinator_a)
        again = randomize(participant_a, "MSC", at=randomized, user=coordinator_a)
    assert [d.pk for d in again] == [d.pk for d in first]
    assert ScheduledDose.objects.filter(participant=participant_a).count() == 2
    assert Reminder.objects.filter(participant=participant_a).count() == 6


def test_paxlovid_ten_doses_at_150_mg_when_egfr_is_45(participant_a, site_a, coordinator_a):
    randomized = site_time(site_a, 2026, 3, 10, 15, 0)
    with time_machine.travel(randomized, tick=False):
        doses = randomize(
            participant_a, "PAX", at=randomized, user=coordinator_a, egfr=Decimal("45")
        )
    assert len(doses) == 10
    assert {(d.planned_amount, d.amount_unit) for d in doses} == {
        (Decimal("150"), "mg nirmatrelvir")
    }
    assert doses[-1].due_at == site_time(site_a, 2026, 3, 15, 20, 0)
    # Dose 1 (day 1 08:00) is 17 h away: no 24-hour reminder; all others have both.
    assert Reminder.objects.filter(participant=participant_a, kind="lead").count() == 19
    assert Reminder.objects.filter(participant=participant_a, kind="overdue").count() == 10


def test_egfr_from_the_screening_answers_when_not_passed(site_a, coordinator_a, protocol):
    participant = screened_participant(site=site_a, user=coordinator_a, egfr="59")
    doses = randomize(
        participant, "PAX", at=site_time(site_a, 2026, 3, 10, 15, 0), user=coordinator_a
    )
    assert {d.planned_amount for d in doses} == {Decimal("150")}


def test_standard_therapy_has_no_doses_and_no_reminders(participant_a, site_a, coordinator_a):
    assert (
        randomize(participant_a, "STD", at=site_time(site_a, 2026, 3, 10, 8, 0), user=coordinator_a)
        == []
    )
    assert not Reminder.objects.exists()


def test_a_per_kg_dose_without_a_screening_weight_is_refused_and_nothing_written(
    site_a, coordinator_a, protocol
):
    participant = screened_participant(site=site_a, user=coordinator_a, weight_kg=None)
    with pytest.raises(ValidationError) as exc:
        randomize(participant, "MSC", at=site_time(site_a, 2026, 3, 10, 8, 0), user=coordinator_a)
    assert exc.value.message_dict == {
        "weight_kg": ["The dose is per kg body weight, and no screening weight is recorded."]
    }
    assert not ScheduledDose.objects.exists()
    assert not Reminder.objects.exists()


# --- Recording --------------------------------------------------------------------------------


@pytest.fixture
def msc_doses(participant_a, site_a, coordinator_a):
    randomized = site_time(site_a, 2026, 3, 10, 8, 0)
    with time_machine.travel(randomized, tick=False):
        return randomize(participant_a, "MSC", at=randomized, user=coordinator_a)


def give(dose, user, at, **kwargs):
    values = {"amount": dose.planned_amount, "lot_number": "LOT-2026-031"} | kwargs
    with time_machine.travel(at, tick=False):
        return dose_record(dose=dose, user=user, outcome="given", given_at=at, **values)


def test_a_dose_given_at_2359_of_day_4_is_on_time(msc_doses, site_a, coordinator_a):
    administration = give(msc_doses[1], coordinator_a, site_time(site_a, 2026, 3, 14, 23, 59))
    assert administration.deviation_hours is None
    assert not administration.is_deviation
    assert administration.route == "intravenous"
    assert administration.given_by == coordinator_a


def test_a_dose_given_at_0001_after_day_4_is_a_deviation_in_hours(msc_doses, site_a, coordinator_a):
    administration = give(msc_doses[1], coordinator_a, site_time(site_a, 2026, 3, 15, 0, 1))
    assert administration.deviation_hours == Decimal("0.02")
    msc_doses[1].refresh_from_db()
    assert msc_doses[1].status == DoseStatus.GIVEN


def test_recording_a_dose_cancels_its_pending_reminders_only(msc_doses, site_a, coordinator_a):
    give(msc_doses[0], coordinator_a, site_time(site_a, 2026, 3, 11, 9, 30))
    statuses = {
        (r.scheduled_dose_id, r.kind, r.lead_hours): (r.status, r.cancelled_reason)
        for r in Reminder.objects.all()
    }
    first, second = msc_doses
    assert statuses[(first.pk, "overdue", 0)] == ("cancelled", "Dose recorded")
    # The 24 h and 1 h reminders of dose 1 are cancelled too (never dispatched in this test).
    assert statuses[(first.pk, "lead", 1)] == ("cancelled", "Dose recorded")
    assert {s for (pk, _, _), (s, _) in statuses.items() if pk == second.pk} == {"pending"}


def test_a_dose_is_recorded_once(msc_doses, site_a, coordinator_a):
    give(msc_doses[0], coordinator_a, site_time(site_a, 2026, 3, 11, 9, 30))
    with pytest.raises(ValidationError) as exc:
        give(msc_doses[0], coordinator_a, site_time(site_a, 2026, 3, 11, 10, 30))
    assert exc.value.messages == [
        "This dose is already recorded; correct the record, with a reason, instead."
    ]
    assert Administration.objects.count() == 1


def test_given_needs_time_amount_and_lot_and_nothing_is_written_without(
    msc_doses, site_a, coordinator_a
):
    with pytest.raises(ValidationError) as exc:
        give(msc_doses[0], coordinator_a, site_time(site_a, 2026, 3, 11, 9, 30), lot_number=" ")
    assert exc.value.message_dict == {"lot_number": ["Give the lot or batch number."]}
    with (
        pytest.raises(ValidationError) as exc,
        time_machine.travel(site_time(site_a, 2026, 3, 11, 9, 0), tick=False),
    ):
        dose_record(
            dose=msc_doses[0],
            user=coordinator_a,
            outcome="given",
            given_at=site_time(site_a, 2026, 3, 11, 9, 1),
            amount=Decimal("62000000"),
            lot_number="L1",
        )
    assert exc.value.message_dict == {"given_at": ["The time given cannot be in the future."]}
    assert not Administration.objects.exists()
    msc_doses[0].refresh_from_db()
    assert msc_doses[0].status == DoseStatus.SCHEDULED


def test_not_given_needs_a_reason(msc_doses, coordinator_a):
    with pytest.raises(ValidationError) as exc:
        dose_record(dose=msc_doses[0], user=coordinator_a, outcome="not_given")
    assert exc.value.message_dict == {
        "not_given_reason": ["Give the reason the dose was not given."]
    }
    administration = dose_record(
        dose=msc_doses[0],
        user=coordinator_a,
        outcome="not_given",
        not_given_reason="Haemodynamically unstable",
    )
    assert administration.outcome == "not_given"
    msc_doses[0].refresh_from_db()
    assert msc_doses[0].status == DoseStatus.NOT_GIVEN


def test_a_correction_goes_through_the_audit_trail_with_a_reason(
    msc_doses, site_a, coordinator_a, investigator_a
):
    administration = give(msc_doses[0], coordinator_a, site_time(site_a, 2026, 3, 11, 9, 30))
    with pytest.raises(ValidationError) as exc:
        administration_correct(
            administration=administration, user=investigator_a, reason=" ", lot_number="LOT-B"
        )
    assert exc.value.message_dict == {"reason": ["Give a reason for changing this record."]}
    corrected = administration_correct(
        administration=administration,
        user=investigator_a,
        reason="Lot number mistyped",
        lot_number="LOT-B",
        given_at=site_time(site_a, 2026, 3, 12, 1, 0),
    )
    assert corrected.lot_number == "LOT-B"
    assert corrected.deviation_hours == Decimal("1.00")
    latest = corrected.history.first()
    assert (latest.history_change_reason, latest.history_user) == (
        "Lot number mistyped",
        investigator_a,
    )
    assert corrected.history.count() == 2


# --- Overdue ------------------------------------------------------------------------------------


def test_day_4_infusion_becomes_overdue_at_midnight_site_time(msc_doses, site_a):
    day4 = msc_doses[1]
    with time_machine.travel(site_time(site_a, 2026, 3, 14, 23, 59), tick=False):
        assert doses_mark_overdue() == 1  # day 1, never recorded
    day4.refresh_from_db()
    assert day4.status == DoseStatus.SCHEDULED
    with time_machine.travel(site_time(site_a, 2026, 3, 15, 0, 0), tick=False):
        assert doses_mark_overdue() == 1
        assert doses_mark_overdue() == 0  # idempotent
    day4.refresh_from_db()
    assert day4.status == DoseStatus.OVERDUE
    assert day4.history.first().history_change_reason == "No record by the end of the window"


def test_an_overdue_dose_can_still_be_recorded_as_a_deviation(msc_doses, site_a, coordinator_a):
    with time_machine.travel(site_time(site_a, 2026, 3, 12, 0, 1), tick=False):
        doses_mark_overdue()
    administration = give(msc_doses[0], coordinator_a, site_time(site_a, 2026, 3, 12, 2, 0))
    assert administration.deviation_hours == Decimal("2.00")


# --- Withdrawal -------------------------------------------------------------------------------


def test_withdrawal_cancels_every_future_reminder_and_stops_future_doses(
    msc_doses, site_a, coordinator_a
):
    give(msc_doses[0], coordinator_a, site_time(site_a, 2026, 3, 11, 9, 30))
    with time_machine.travel(site_time(site_a, 2026, 3, 12, 10, 0), tick=False):
        cancelled = participant_reminders_cancel(
            participant=msc_doses[0].participant, reason="Withdrew from study treatment"
        )
        assert (
            participant_reminders_cancel(participant=msc_doses[0].participant, reason="again") == 0
        )
    assert cancelled == 3  # dose 2: 24 h, 1 h, overdue
    assert not Reminder.objects.filter(status="pending").exists()
    day4 = ScheduledDose.objects.get(pk=msc_doses[1].pk)
    assert day4.status == DoseStatus.STOPPED
    with pytest.raises(ValidationError) as exc:
        give(day4, coordinator_a, site_time(site_a, 2026, 3, 14, 9, 0))
    assert exc.value.messages == ["This dose was stopped: the participant withdrew."]


# --- The outbox, dispatched in this process -----------------------------------------------------


def test_due_reminders_are_sent_once_with_study_number_never_name_or_mrn(
    msc_doses, site_a, coordinator_a, investigator_a
):
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 8, 0, 30), tick=False):
        result = reminders_dispatch(worker="test")
        again = reminders_dispatch(worker="test")
    assert (result.sent, again.sent) == (2, 0)  # the 24 h (day 1) and the 1 h reminders
    assert len(mail.outbox) == 2
    one_hour = next(m for m in mail.outbox if "Due in 1 h" in m.subject)
    assert one_hour.subject == (
        f"Due in 1 h: {msc_doses[0].participant.study_number} · UC-MSC suspension dose 1/2 "
        "(day 1) 2026-03-11 09:00 Asia/Shanghai"
    )
    assert sorted(one_hour.to) == sorted([coordinator_a.email, investigator_a.email])
    assert f"/dosing/doses/{msc_doses[0].pk}/record/" in one_hour.body
    assert "6.2 × 10⁷ cells" in one_hour.body
    for message in mail.outbox:
        text = message.subject + message.body + str(message.extra_headers)
        assert NAME not in text and MRN not in text
        assert NAME.split()[0] not in text and MRN.split("-")[-1] not in text
    sent = Reminder.objects.filter(status="sent")
    assert sent.count() == 2 and all(r.sent_at and r.attempts == 1 for r in sent)


def test_the_overdue_alert_goes_to_the_site_investigator_only(
    msc_doses, site_a, coordinator_a, investigator_a
):
    Reminder.objects.filter(kind=ReminderKind.LEAD).update(status=ReminderStatus.CANCELLED)
    with time_machine.travel(site_time(site_a, 2026, 3, 12, 0, 0, 30), tick=False):
        doses_mark_overdue()
        result = reminders_dispatch(worker="test")
    assert result.sent == 1
    (alert,) = mail.outbox
    assert alert.to == [investigator_a.email]
    assert alert.subject.startswith("OVERDUE: ")


def test_a_row_another_worker_claimed_is_not_sent(msc_doses, site_a):
    first = Reminder.objects.order_by("due_at").first()
    Reminder.objects.filter(pk=first.pk).update(status=ReminderStatus.SENDING, claimed_by="other")
    with time_machine.travel(site_time(site_a, 2026, 3, 10, 9, 0, 30), tick=False):
        result = reminders_dispatch(worker="test")
    assert result.sent == 0 and mail.outbox == []


def test_failures_retry_with_exponential_backoff_then_fail_then_resend(
    msc_doses, site_a, settings, coordinator_a
):
    settings.DOSING_REMINDER_CHANNEL = FAILING
    first = Reminder.objects.order_by("due_at").first()
    start = site_time(site_a, 2026, 3, 10, 9, 0, 30)
    now = start
    gaps = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with time_machine.travel(now, tick=False):
            assert reminders_dispatch(worker="test").sent == 0
        first.refresh_from_db()
        assert first.attempts == attempt
        if attempt < MAX_ATTEMPTS:
            assert first.status == "pending"
            gaps.append((first.next_attempt_at - now).total_seconds())
            # Not picked up a second before its next attempt.
            with time_machine.travel(
                first.next_attempt_at - datetime.timedelta(seconds=1), tick=False
            ):
                reminders_dispatch(worker="test")
            first.refresh_from_db()
            assert first.attempts == attempt
            now = first.next_attempt_at
    assert gaps == [60, 120, 240, 480]
    assert first.status == "failed"
    assert first.last_error == "SMTPServerDisconnected: the mail server went away"
    settings.DOSING_REMINDER_CHANNEL = "dosing.channels.EmailChannel"
    reminder_resend(reminder=first, user=coordinator_a)
    with pytest.raises(ValidationError) as exc:
        reminder_resend(reminder=first, user=coordinator_a)
    assert exc.value.messages == ["Only a failed reminder can be sent again."]
    with time_machine.travel(now + datetime.timedelta(minutes=1), tick=False):
        assert reminders_dispatch(worker="test").sent_ids == [first.pk]
    assert len(mail.outbox) == 1


def test_a_claim_left_by_a_dead_worker_is_recovered_after_the_lease_and_marked(msc_doses, site_a):
    now = site_time(site_a, 2026, 3, 10, 9, 10)
    first, second = Reminder.objects.order_by("due_at")[:2]
    Reminder.objects.filter(pk=first.pk).update(
        status="sending",
        claimed_by="dead/1",
        claimed_at=now - CLAIM_LEASE - datetime.timedelta(seconds=1),
        attempts=1,
    )
    Reminder.objects.filter(pk=second.pk).update(
        status="sending",
        claimed_by="alive/2",
        claimed_at=now - CLAIM_LEASE + datetime.timedelta(seconds=5),
        attempts=1,
    )
    with time_machine.travel(now, tick=False):
        result = reminders_dispatch(worker="test")
    assert (result.recovered, result.sent_ids) == (1, [first.pk])
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.attempts, first.interrupted) == ("sent", 2, 1)
    assert first.last_error.startswith("Interrupted")
    assert (second.status, second.claimed_by) == ("sending", "alive/2")


def test_no_staff_with_an_email_is_a_failure_that_retries(
    participant_a, site_a, coordinator_a, investigator_a
):
    randomized = site_time(site_a, 2026, 3, 10, 8, 0)
    with time_machine.travel(randomized, tick=False):
        randomize(participant_a, "MSC", at=randomized, user=coordinator_a)
    for staff in type(coordinator_a).objects.all():
        staff.email = ""
        staff._change_reason = "test: no e-mail address"
        staff.save()
    with time_machine.travel(site_time(site_a, 2026, 3, 10, 9, 0, 30), tick=False):
        result = reminders_dispatch(worker="test")
    assert (result.sent, result.retrying) == (0, 1)
    assert Reminder.objects.get(attempts=1).last_error == (
        "NoRecipients: No staff with an e-mail address at the site."
    )


def test_a_lead_reminder_left_unsent_past_the_window_is_cancelled_not_sent(msc_doses, site_a):
    # The dispatcher was down all day 1: at 00:05 on day 2 the overdue alert goes, the
    # "due in 1 h" of day 1 does not.
    with time_machine.travel(site_time(site_a, 2026, 3, 12, 0, 5), tick=False):
        doses_mark_overdue()
        reminders_dispatch(worker="test")
    day1 = dict(
        Reminder.objects.filter(scheduled_dose=msc_doses[0])
        .values_list("kind", "status")
        .order_by("lead_hours")
    )
    assert [m.subject.split(":")[0] for m in mail.outbox] == ["OVERDUE"]
    assert Reminder.objects.get(scheduled_dose=msc_doses[0], lead_hours=1).cancelled_reason == (
        "The window closed before it could be sent"
    )
    assert day1["overdue"] == "sent"


def test_a_fractional_weight_from_the_database_schedule_keeps_the_exact_cell_count(
    site_a, coordinator_a, protocol
):
    participant = screened_participant(site=site_a, user=coordinator_a, weight_kg="70.55")
    doses = randomize(
        participant, "MSC", at=site_time(site_a, 2026, 3, 10, 8, 0), user=coordinator_a
    )
    assert {d.planned_amount for d in doses} == {Decimal("70550000")}
    assert doses[0].amount_display == "7.06 × 10⁷ cells"


def test_one_cycle_goes_through_every_due_row_batch_by_batch(msc_doses, site_a):
    Reminder.objects.update(due_at=site_time(site_a, 2026, 3, 10, 9, 0))
    with time_machine.travel(site_time(site_a, 2026, 3, 10, 9, 1), tick=False):
        result = reminders_dispatch(worker="test", limit=2)
    assert result.sent == 6  # three batches of two (24 h, 1 h, overdue alert x 2 doses)
    assert len(mail.outbox) == 6


def test_the_enrollment_withdrawal_service_cancels_future_reminders(
    protocol, site_a, coordinator_a, investigator_a
):
    from enrollment.services import withdrawal_record
    from tests.factories import ready_participant

    participant = ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)
    doses = randomize(participant, "PAX", at=timezone.now(), user=coordinator_a)
    assert Reminder.objects.filter(participant=participant, status="pending").count() >= 19
    withdrawal_record(
        participant=participant,
        user=coordinator_a,
        scope="treatment",
        withdrawn_on=site_today(site_a),
        reason="Declined further tablets",
    )
    assert not Reminder.objects.filter(participant=participant, status="pending").exists()
    assert set(
        Reminder.objects.filter(participant=participant).values_list("cancelled_reason", flat=True)
    ) == {"Withdrawal (treatment)"}
    assert {d.status for d in ScheduledDose.objects.filter(pk__in=[d.pk for d in doses])} == {
        DoseStatus.STOPPED
    }
