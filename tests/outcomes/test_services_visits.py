"""Visit services on the database: the schedule with the allocation, missed by the beat's
function, withdrawal, the visit record, visit reminders (in-process, locmem mail)."""

import datetime
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError

from arms.models import Allocation
from dosing.models import ScheduledDose
from enrollment.services import withdrawal_record
from outcomes import receivers
from outcomes.models import (
    ScheduledVisit,
    VisitRecord,
    VisitReminder,
    VisitReminderStatus,
    VisitStatus,
)
from outcomes.services import (
    participant_visits_stop,
    visit_record,
    visit_reminders_dispatch,
    visits_mark_missed,
)
from tests.outcomes.visit_helpers import randomized, site_time

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _locmem_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def allocation(protocol, site_a, coordinator_a, investigator_a, administrator):
    """Randomized at 23:30 on 2026-03-10 in Shanghai (15:30 UTC): day 0 is the 10th."""
    return randomized(
        site=site_a,
        coordinator=coordinator_a,
        investigator=investigator_a,
        administrator=administrator,
        at=site_time(site_a, 2026, 3, 10, 23, 30),
    )


def visit(allocation, code) -> ScheduledVisit:
    return ScheduledVisit.objects.get(participant=allocation.participant, definition__code=code)


# --- The schedule ---------------------------------------------------------------------------


def test_randomization_schedules_the_six_visits_in_site_dates(allocation):
    visits = ScheduledVisit.objects.filter(participant=allocation.participant).order_by("study_day")
    assert [
        (v.definition.code, str(v.window_start), str(v.due_on), str(v.window_end), v.status)
        for v in visits
    ] == [
        ("D0", "2026-03-10", "2026-03-10", "2026-03-10", "due"),
        ("D1", "2026-03-11", "2026-03-11", "2026-03-11", "due"),
        ("D4", "2026-03-14", "2026-03-14", "2026-03-14", "due"),
        ("D7", "2026-03-16", "2026-03-17", "2026-03-18", "due"),
        ("D14", "2026-03-22", "2026-03-24", "2026-03-26", "due"),
        ("D28", "2026-04-04", "2026-04-07", "2026-04-10", "due"),
    ]
    # One reminder per visit after the baseline, 08:00 site time the day before its window.
    assert [
        (r.scheduled_visit.definition.code, r.due_at.astimezone(allocation.participant.site.zone))
        for r in VisitReminder.objects.order_by("due_at")
    ] == [
        ("D1", site_time(allocation.participant.site, 2026, 3, 10, 8, 0)),
        ("D4", site_time(allocation.participant.site, 2026, 3, 13, 8, 0)),
        ("D7", site_time(allocation.participant.site, 2026, 3, 15, 8, 0)),
        ("D14", site_time(allocation.participant.site, 2026, 3, 21, 8, 0)),
        ("D28", site_time(allocation.participant.site, 2026, 4, 3, 8, 0)),
    ]


def test_a_failing_visit_schedule_refuses_the_randomization_and_its_doses(
    monkeypatch, protocol, site_a, coordinator_a, investigator_a, administrator
):
    def fail(**kwargs):
        raise ValidationError("visit schedule failed")

    monkeypatch.setattr(receivers, "participant_visits_create", fail)
    with pytest.raises(ValidationError):
        randomized(
            site=site_a,
            coordinator=coordinator_a,
            investigator=investigator_a,
            administrator=administrator,
            at=site_time(site_a, 2026, 3, 10, 10, 0),
        )
    assert Allocation.objects.count() == 0
    assert ScheduledDose.objects.count() == 0
    assert ScheduledVisit.objects.count() == 0


def test_a_failing_dose_schedule_leaves_no_visits(
    monkeypatch, protocol, site_a, coordinator_a, investigator_a, administrator
):
    from dosing import receivers as dosing_receivers

    def fail(**kwargs):
        raise ValidationError("dose schedule failed")

    monkeypatch.setattr(dosing_receivers, "participant_dosing_schedule_create", fail)
    with pytest.raises(ValidationError):
        randomized(
            site=site_a,
            coordinator=coordinator_a,
            investigator=investigator_a,
            administrator=administrator,
            at=site_time(site_a, 2026, 3, 10, 10, 0),
        )
    assert (Allocation.objects.count(), ScheduledVisit.objects.count()) == (0, 0)
    assert VisitReminder.objects.count() == 0


# --- Missed, by the beat's function ------------------------------------------------------------


def test_a_visit_is_missed_only_once_its_window_has_closed_at_the_site(allocation):
    site = allocation.participant.site
    # D7's last day on time is 2026-03-18 in Shanghai.
    with time_machine.travel(site_time(site, 2026, 3, 18, 23, 59), tick=False):
        assert visits_mark_missed() == 3  # D0, D1 and D4
    assert visit(allocation, "D7").status == VisitStatus.DUE
    with time_machine.travel(site_time(site, 2026, 3, 19, 0, 0), tick=False):
        assert visits_mark_missed() == 1  # D7, at the site's midnight (16:00 UTC)
        assert visits_mark_missed() == 0  # idempotent
    assert visit(allocation, "D7").status == VisitStatus.MISSED
    assert visit(allocation, "D14").status == VisitStatus.DUE
    history = visit(allocation, "D7").history.first()
    assert history.history_change_reason == "No record by the end of the window"


# --- Withdrawal and end of study ----------------------------------------------------------------


def test_withdrawal_from_follow_up_stops_the_visits_still_ahead(allocation, coordinator_a):
    site = allocation.participant.site
    with time_machine.travel(site_time(site, 2026, 3, 17, 9, 0), tick=False):
        withdrawal_record(
            participant=allocation.participant,
            user=coordinator_a,
            scope="follow_up",
            withdrawn_on=datetime.date(2026, 3, 17),
            reason="Moved away",
        )
    statuses = dict(
        ScheduledVisit.objects.filter(participant=allocation.participant).values_list(
            "definition__code", "status"
        )
    )
    # D0-D4 closed before the withdrawal: still due until the beat marks them missed. D7's
    # window is open (16th-18th): it is ahead, like D14 and D28.
    assert statuses == {
        "D0": "due",
        "D1": "due",
        "D4": "due",
        "D7": "not_required",
        "D14": "not_required",
        "D28": "not_required",
    }
    assert visit(allocation, "D14").stopped_reason == ("Withdrawal (Study treatment and follow-up)")
    assert set(
        VisitReminder.objects.filter(scheduled_visit__study_day__gte=7).values_list(
            "status", flat=True
        )
    ) == {VisitReminderStatus.CANCELLED}


def test_withdrawal_from_treatment_only_keeps_the_visits(allocation, coordinator_a):
    with time_machine.travel(site_time(allocation.participant.site, 2026, 3, 12, 9, 0)):
        withdrawal_record(
            participant=allocation.participant,
            user=coordinator_a,
            scope="treatment",
            withdrawn_on=datetime.date(2026, 3, 12),
            reason="Rash",
        )
    assert not ScheduledVisit.objects.filter(status=VisitStatus.NOT_REQUIRED).exists()


def test_stopping_visits_keeps_those_recorded(allocation, coordinator_a):
    site = allocation.participant.site
    with time_machine.travel(site_time(site, 2026, 3, 11, 10, 0), tick=False):
        record(allocation, "D1", coordinator_a, visit_date=datetime.date(2026, 3, 11))
        assert participant_visits_stop(participant=allocation.participant, reason="Died") == 4
        assert participant_visits_stop(participant=allocation.participant, reason="Died") == 0
    assert visit(allocation, "D1").status == VisitStatus.DONE
    assert visit(allocation, "D28").status == VisitStatus.NOT_REQUIRED


# --- The visit record ---------------------------------------------------------------------------

MEASURED = {
    "who_score": 5,
    "spo2": 93,
    "respiratory_support": "oxygen",
    "pao2": Decimal("80"),
    "fio2": Decimal("40"),
    "lymphocytes": Decimal("0.8"),
    "crp": Decimal("35.5"),
    "il6": Decimal("12.0"),
    "chest_ct": "",
    "chest_ct_not_done": True,
    "chest_ct_not_done_reason": "Scanner down",
}


def record(allocation, code, user, *, visit_date, **changes):
    return visit_record(
        scheduled_visit=visit(allocation, code),
        user=user,
        visit_date=visit_date,
        vital_status=changes.pop("vital_status", "alive"),
        date_of_death=changes.pop("date_of_death", None),
        measurements={**MEASURED, **changes},
    )


def test_a_visit_on_time_is_done_with_fio2_kept_as_a_fraction(allocation, coordinator_a):
    with time_machine.travel(site_time(allocation.participant.site, 2026, 3, 11, 10, 0)):
        saved = record(allocation, "D1", coordinator_a, visit_date=datetime.date(2026, 3, 11))
    saved.refresh_from_db()
    assert (saved.fio2, saved.pf_ratio) == (Decimal("0.40"), 200)
    assert (saved.chest_ct, saved.chest_ct_not_done, saved.chest_ct_not_done_reason) == (
        "",
        True,
        "Scanner down",
    )
    assert visit(allocation, "D1").status == VisitStatus.DONE
    reminder = VisitReminder.objects.get(scheduled_visit__definition__code="D1")
    assert reminder.status == VisitReminderStatus.CANCELLED
    assert saved.history.first().history_change_reason == "Visit recorded"


def test_a_visit_outside_its_window_is_done_out_of_window_with_the_days(allocation, coordinator_a):
    with time_machine.travel(site_time(allocation.participant.site, 2026, 3, 21, 10, 0)):
        record(allocation, "D7", coordinator_a, visit_date=datetime.date(2026, 3, 20))
    late = visit(allocation, "D7")
    assert (late.status, late.days_outside_window) == (VisitStatus.DONE_OUT_OF_WINDOW, 2)


@pytest.mark.parametrize(
    "changes,field,message",
    [
        ({"who_score": 11}, "who_score", "The WHO score must be between 0 and 10."),
        ({"spo2": 49}, "spo2", "SpO2 must be between 50 and 100 %."),
        ({"pao2": Decimal("701")}, "pao2", "PaO2 must be between 20 and 700 mmHg."),
        (
            {"fio2": Decimal("15")},
            "fio2",
            "FiO2 must be a fraction from 0.21 to 1.0, or a percentage from 21 to 100.",
        ),
        ({"crp_not_done": True, "crp": None}, "crp_not_done_reason", "Say why it was not done."),
        (
            {"visit_date": datetime.date(2026, 3, 12)},
            "visit_date",
            "The visit date is in the future (today at the site is 2026-03-11).",
        ),
        (
            {"visit_date": datetime.date(2026, 3, 9)},
            "visit_date",
            "The visit date is before randomization (2026-03-10): outside the study period.",
        ),
        ({"vital_status": "dead"}, "date_of_death", "Give the date of death."),
    ],
)
def test_bad_input_is_refused_whole(allocation, coordinator_a, changes, field, message):
    visit_date = changes.pop("visit_date", datetime.date(2026, 3, 11))
    with (
        time_machine.travel(site_time(allocation.participant.site, 2026, 3, 11, 10, 0)),
        pytest.raises(ValidationError) as refused,
    ):
        record(allocation, "D1", coordinator_a, visit_date=visit_date, **changes)
    assert refused.value.message_dict == {field: [message]}
    assert VisitRecord.objects.count() == 0
    assert visit(allocation, "D1").status == VisitStatus.DUE


# --- Visit reminders --------------------------------------------------------------------------


def test_a_visit_reminder_goes_once_to_the_coordinators_with_the_study_number_only(
    allocation, coordinator_a, investigator_a
):
    site = allocation.participant.site
    with time_machine.travel(site_time(site, 2026, 3, 15, 8, 0), tick=False):
        assert visit_reminders_dispatch() == 3  # D1, D4 and D7's: due by now
        assert visit_reminders_dispatch() == 0
    assert len(mail.outbox) == 3
    d7 = next(m for m in mail.outbox if "D7" in m.subject)
    assert d7.to == [coordinator_a.email]
    assert d7.subject == f"Visit D7 (day 7) from 2026-03-16: {allocation.participant.study_number}"
    assert "2026-03-16 – 2026-03-18 (Asia/Shanghai)" in d7.body
    assert allocation.participant.name not in d7.body + d7.subject
    assert allocation.participant.mrn not in d7.body + d7.subject


def test_a_recorded_visit_sends_no_reminder(allocation, coordinator_a):
    site = allocation.participant.site
    with time_machine.travel(site_time(site, 2026, 3, 10, 23, 50), tick=False):
        record(allocation, "D0", coordinator_a, visit_date=datetime.date(2026, 3, 10))
        participant_visits_stop(participant=allocation.participant, reason="Investigator decision")
    with time_machine.travel(site_time(site, 2026, 4, 20, 8, 0), tick=False):
        assert visit_reminders_dispatch() == 0
    assert mail.outbox == []
