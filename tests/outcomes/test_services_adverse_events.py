"""Adverse-event, SAE-clock and end-of-study services on the database (in-process alert
dispatch with locmem mail; the real-worker delivery is in test_tasks_sae.py)."""

import datetime

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError

from dosing.models import Administration, DoseStatus, Reminder, ReminderStatus, ScheduledDose
from dosing.services import dose_record
from enrollment.services import withdrawal_record
from outcomes.models import (
    AdverseEvent,
    AlertKind,
    AlertStatus,
    CausalityAssessment,
    EndOfStudy,
    EndReason,
    InterventionRelatedness,
    SaeAlert,
    ScheduledVisit,
    VisitStatus,
)
from outcomes.services import (
    adverse_event_record,
    adverse_event_update,
    causality_sign,
    participant_study_end,
    sae_alerts_dispatch,
    sae_report_mark,
    visit_record,
)
from tests.factories import PASSWORD, user_with_role
from tests.outcomes.ae_helpers import randomized_to, site_time
from trialsite.core.models import Role

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _locmem_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def allocated(arm, site, coordinator, investigator, administrator):
    # Randomized 2026-03-10 10:00 at the site (Shanghai): day 0 is 2026-03-10.
    return randomized_to(
        arm,
        site=site,
        coordinator=coordinator,
        investigator=investigator,
        administrator=administrator,
        at=site_time(site, 2026, 3, 10, 10, 0),
    )


@pytest.fixture
def msc(protocol, site_a, coordinator_a, investigator_a, administrator):
    return allocated("MSC", site_a, coordinator_a, investigator_a, administrator)


@pytest.fixture
def on_day_2(site_a):
    with time_machine.travel(site_time(site_a, 2026, 3, 12, 15, 0), tick=False) as traveller:
        yield traveller


def event(**changes):
    values = {
        "term": "Fever",
        "onset_date": datetime.date(2026, 3, 11),
        "end_date": None,
        "grade": 2,
        "death_date": None,
        "serious": False,
        "criteria": set(),
        "action_taken": "none",
        "outcome": "recovering",
    }
    return values | changes


SERIOUS = {"grade": 3, "serious": True, "criteria": {"hospitalisation"}}


def nothing_written():
    return (
        AdverseEvent.objects.count(),
        SaeAlert.objects.count(),
        EndOfStudy.objects.count(),
    ) == (0, 0, 0)


# --- Recording --------------------------------------------------------------------------------


def test_a_non_serious_event_is_recorded_without_alerts(msc, coordinator_a, on_day_2):
    adverse_event = adverse_event_record(participant=msc.participant, user=coordinator_a, **event())
    assert adverse_event.history.count() == 1
    assert (adverse_event.serious, adverse_event.sae_clock_started_at) == (False, None)
    assert not SaeAlert.objects.exists()


def test_a_serious_event_starts_its_clock_with_one_alert_now_and_one_at_24_hours(
    msc, coordinator_a, on_day_2
):
    adverse_event = adverse_event_record(
        participant=msc.participant, user=coordinator_a, **event(**SERIOUS)
    )
    now = adverse_event.sae_clock_started_at
    assert now == site_time(msc.participant.site, 2026, 3, 12, 15, 0)
    alerts = {a.kind: a.due_at for a in SaeAlert.objects.filter(adverse_event=adverse_event)}
    assert alerts == {
        AlertKind.IMMEDIATE: now,
        AlertKind.FOLLOW_UP: now + datetime.timedelta(hours=24),
    }


@pytest.mark.parametrize(
    "changes,field,message",
    [
        (
            {"end_date": datetime.date(2026, 3, 10)},
            "end_date",
            "The event cannot end before its onset (2026-03-11).",
        ),
        (
            {"onset_date": datetime.date(2026, 3, 9)},
            "onset_date",
            "The onset is before randomization (2026-03-10): outside the study.",
        ),
        (
            {"onset_date": datetime.date(2026, 3, 13)},
            "onset_date",
            "The onset is in the future (today at the site is 2026-03-12).",
        ),
        (
            {"grade": 5, "serious": True, "criteria": {"death"}},
            "death_date",
            "A grade 5 event is a death: give the date of death.",
        ),
        (
            {"serious": True},
            "serious",
            "A serious event needs at least one seriousness criterion.",
        ),
    ],
)
def test_bad_input_is_refused_at_its_field_and_nothing_is_written(
    msc, coordinator_a, on_day_2, changes, field, message
):
    with pytest.raises(ValidationError) as refused:
        adverse_event_record(participant=msc.participant, user=coordinator_a, **event(**changes))
    assert refused.value.message_dict == {field: [message]}
    assert nothing_written()


def test_another_sites_coordinator_records_nothing(msc, coordinator_b, on_day_2):
    with pytest.raises(ValidationError) as refused:
        adverse_event_record(participant=msc.participant, user=coordinator_b, **event())
    assert refused.value.messages == [
        "Only a coordinator or investigator of the participant's site can record it."
    ]
    assert nothing_written()


def test_the_same_form_sent_twice_records_one_event(msc, coordinator_a, on_day_2):
    import uuid

    token = uuid.uuid4()
    first = adverse_event_record(
        participant=msc.participant, user=coordinator_a, submission_token=token, **event()
    )
    again = adverse_event_record(
        participant=msc.participant, user=coordinator_a, submission_token=token, **event()
    )
    assert first.pk == again.pk and AdverseEvent.objects.count() == 1


# --- Grade 5 and the end of study ------------------------------------------------------------


def _given_first_infusion(allocation, user, *, reaction=False):
    dose = ScheduledDose.objects.filter(participant=allocation.participant).order_by("due_at")[0]
    site = allocation.participant.site
    with time_machine.travel(site_time(site, 2026, 3, 11, 9, 30), tick=False):
        return dose_record(
            dose=dose,
            user=user,
            outcome="given",
            given_at=site_time(site, 2026, 3, 11, 9, 0),
            amount=dose.planned_amount,
            route="intravenous",
            lot_number="LOT-1",
            infusion_reaction=reaction,
        )


def test_a_grade_5_event_ends_the_study_stops_what_is_planned_and_keeps_the_records(
    msc, coordinator_a, site_a
):
    given = _given_first_infusion(msc, coordinator_a)
    with time_machine.travel(site_time(site_a, 2026, 3, 12, 15, 0), tick=False):
        adverse_event = adverse_event_record(
            participant=msc.participant,
            user=coordinator_a,
            **event(
                term="Respiratory failure",
                grade=5,
                death_date=datetime.date(2026, 3, 12),
                serious=True,
                criteria={"death"},
                outcome="fatal",
            ),
        )
    end = EndOfStudy.objects.get(participant=msc.participant)
    assert (end.reason, end.ended_on, end.adverse_event) == (
        EndReason.DIED,
        datetime.date(2026, 3, 12),
        adverse_event,
    )
    doses = ScheduledDose.objects.filter(participant=msc.participant).order_by("due_at")
    assert [d.status for d in doses] == [DoseStatus.GIVEN, DoseStatus.STOPPED]
    assert Administration.objects.get(pk=given.pk).voided_at is None  # kept as it was
    assert not Reminder.objects.filter(
        participant=msc.participant, status=ReminderStatus.PENDING
    ).exists()
    visits = dict(
        ScheduledVisit.objects.filter(participant=msc.participant).values_list(
            "study_day", "status"
        )
    )
    assert visits[7] == visits[28] == VisitStatus.NOT_REQUIRED
    assert SaeAlert.objects.filter(adverse_event=adverse_event).count() == 2  # death is an SAE


def test_a_grade_5_event_after_another_end_of_study_is_refused_whole(msc, coordinator_a, on_day_2):
    participant_study_end(
        participant=msc.participant,
        user=coordinator_a,
        reason=EndReason.LOST,
        ended_on=datetime.date(2026, 3, 12),
    )
    with pytest.raises(ValidationError) as refused:
        adverse_event_record(
            participant=msc.participant,
            user=coordinator_a,
            **event(
                grade=5, death_date=datetime.date(2026, 3, 12), serious=True, criteria={"death"}
            ),
        )
    number = msc.participant.study_number
    assert refused.value.messages == [
        f"The study of {number} already ended on 2026-03-12 (Lost to follow-up)."
    ]
    assert (AdverseEvent.objects.count(), SaeAlert.objects.count()) == (0, 0)


def test_one_end_of_study_per_participant(msc, coordinator_a, on_day_2):
    participant_study_end(
        participant=msc.participant,
        user=coordinator_a,
        reason=EndReason.INVESTIGATOR,
        ended_on=datetime.date(2026, 3, 12),
        details="Transferred to another hospital's ICU",
    )
    with pytest.raises(ValidationError) as refused:
        participant_study_end(
            participant=msc.participant,
            user=coordinator_a,
            reason=EndReason.LOST,
            ended_on=datetime.date(2026, 3, 12),
        )
    assert refused.value.messages == [
        f"The study of {msc.participant.study_number} already ended on 2026-03-12 "
        "(Investigator decision)."
    ]
    assert EndOfStudy.objects.count() == 1


def test_completed_before_day_28_is_refused_and_nothing_stops(msc, coordinator_a, on_day_2):
    with pytest.raises(ValidationError) as refused:
        participant_study_end(
            participant=msc.participant,
            user=coordinator_a,
            reason=EndReason.COMPLETED,
            ended_on=datetime.date(2026, 3, 12),
        )
    assert refused.value.message_dict == {
        "ended_on": ["Completed means day 28 was reached: day 28 is 2026-04-07."]
    }
    assert not EndOfStudy.objects.exists()
    assert not ScheduledDose.objects.filter(status=DoseStatus.STOPPED).exists()


def test_a_withdrawal_from_follow_up_ends_the_study_treatment_only_does_not(
    protocol, site_a, coordinator_a, investigator_a, administrator
):
    first = allocated("MSC", site_a, coordinator_a, investigator_a, administrator)
    second = allocated("PAX", site_a, coordinator_a, investigator_a, administrator)
    with time_machine.travel(site_time(site_a, 2026, 3, 12, 15, 0), tick=False):
        for allocation, scope in ((first, "treatment"), (second, "follow_up")):
            withdrawal_record(
                participant=allocation.participant,
                user=coordinator_a,
                scope=scope,
                withdrawn_on=datetime.date(2026, 3, 12),
                reason="Family request",
            )
    assert list(EndOfStudy.objects.values_list("participant", "reason", "details")) == [
        (second.participant_id, EndReason.WITHDREW, "Family request")
    ]


# --- Causality --------------------------------------------------------------------------------


@pytest.fixture
def serious_event(msc, coordinator_a, on_day_2):
    return adverse_event_record(participant=msc.participant, user=coordinator_a, **event(**SERIOUS))


def test_the_investigator_signs_relatedness_to_each_infusion(serious_event, investigator_a):
    doses = list(
        ScheduledDose.objects.filter(participant=serious_event.participant).order_by("sequence")
    )
    assessment = causality_sign(
        adverse_event=serious_event,
        user=investigator_a,
        password=PASSWORD,
        expected=False,
        relatedness={f"dose-{doses[0].pk}": "possible", f"dose-{doses[1].pk}": "not_related"},
    )
    assert (assessment.signer, assessment.printed_name) == (
        investigator_a,
        investigator_a.get_full_name(),
    )
    assert assessment.meaning == (
        "I have assessed how this adverse event relates to each study intervention."
    )
    assert list(
        InterventionRelatedness.objects.order_by("pk").values_list(
            "scheduled_dose", "relatedness", "label"
        )
    ) == [
        (doses[0].pk, "possible", "UC-MSC suspension, infusion 1 (day 1)"),
        (doses[1].pk, "not_related", "UC-MSC suspension, infusion 2 (day 4)"),
    ]


def test_a_paxlovid_event_is_assessed_against_the_course(
    protocol, site_a, coordinator_a, investigator_a, administrator, on_day_2
):
    pax = allocated("PAX", site_a, coordinator_a, investigator_a, administrator)
    adverse_event = adverse_event_record(participant=pax.participant, user=coordinator_a, **event())
    course = ScheduledDose.objects.filter(participant=pax.participant).first()
    causality_sign(
        adverse_event=adverse_event,
        user=investigator_a,
        password=PASSWORD,
        expected=True,
        relatedness={f"course-{course.schedule_id}": "probable"},
    )
    row = InterventionRelatedness.objects.get()
    assert (row.scheduled_dose, row.relatedness) == (None, "probable")
    assert row.label == "Nirmatrelvir + ritonavir (Paxlovid), the course"


def test_a_wrong_password_or_a_coordinator_signs_nothing(
    serious_event, investigator_a, coordinator_a
):
    doses = ScheduledDose.objects.filter(participant=serious_event.participant)
    relatedness = {f"dose-{d.pk}": "unlikely" for d in doses}
    with pytest.raises(ValidationError) as refused:
        causality_sign(
            adverse_event=serious_event,
            user=investigator_a,
            password="wrong",
            expected=False,
            relatedness=relatedness,
        )
    assert refused.value.message_dict == {"password": ["The password is not correct."]}
    with pytest.raises(ValidationError) as refused:
        causality_sign(
            adverse_event=serious_event,
            user=coordinator_a,
            password=PASSWORD,
            expected=False,
            relatedness=relatedness,
        )
    assert refused.value.messages == [
        "Only an investigator of the participant's site can sign the causality assessment."
    ]
    assert not CausalityAssessment.objects.exists()
    assert not InterventionRelatedness.objects.exists()


def test_each_infusion_must_be_assessed(serious_event, investigator_a):
    dose = ScheduledDose.objects.filter(participant=serious_event.participant).first()
    with pytest.raises(ValidationError) as refused:
        causality_sign(
            adverse_event=serious_event,
            user=investigator_a,
            password=PASSWORD,
            expected=False,
            relatedness={f"dose-{dose.pk}": "possible"},
        )
    (field,) = refused.value.message_dict
    assert field.startswith("related_dose-")
    assert refused.value.message_dict[field] == ["Assess the relatedness to this intervention."]
    assert not CausalityAssessment.objects.exists()


# --- The SAE clock ----------------------------------------------------------------------------


def test_the_immediate_alert_goes_once_to_the_investigators_by_study_number_only(
    serious_event, investigator_a, coordinator_a
):
    investigator_a.email, coordinator_a.email = "bob@she.test", "alice@she.test"
    investigator_a.save(update_fields=["email"])
    coordinator_a.save(update_fields=["email"])
    assert sae_alerts_dispatch().sent == 1
    assert sae_alerts_dispatch().sent == 0
    (message,) = mail.outbox
    number = serious_event.participant.study_number
    assert message.to == ["bob@she.test"]
    assert message.subject == f"Serious adverse event: {number}"
    assert "Report due: 2026-03-13 15:00 UTC+08:00" in message.body
    assert serious_event.participant.name not in message.body + message.subject
    assert serious_event.participant.mrn not in message.body


def test_the_follow_up_goes_at_24_hours_unless_reported_first(
    protocol, site_a, coordinator_a, investigator_a, administrator
):
    investigator_a.email = "bob@she.test"
    investigator_a.save(update_fields=["email"])
    first = allocated("MSC", site_a, coordinator_a, investigator_a, administrator)
    second = allocated("MSC", site_a, coordinator_a, investigator_a, administrator)
    recorded = site_time(site_a, 2026, 3, 12, 15, 0)
    with time_machine.travel(recorded, tick=False):
        late, reported = (
            adverse_event_record(participant=a.participant, user=coordinator_a, **event(**SERIOUS))
            for a in (first, second)
        )
        assert sae_alerts_dispatch().sent == 2
    with time_machine.travel(recorded + datetime.timedelta(hours=23), tick=False):
        sae_report_mark(
            adverse_event=reported, user=coordinator_a, reported_on=datetime.date(2026, 3, 13)
        )
    just_before = recorded + datetime.timedelta(hours=23, minutes=59)
    assert sae_alerts_dispatch(now=just_before).sent == 0
    assert sae_alerts_dispatch(now=recorded + datetime.timedelta(hours=24)).sent == 1
    kinds = dict(
        SaeAlert.objects.filter(kind=AlertKind.FOLLOW_UP).values_list("adverse_event", "status")
    )
    assert kinds == {late.pk: AlertStatus.SENT, reported.pk: AlertStatus.CANCELLED}
    assert mail.outbox[-1].subject == (
        f"SAE not yet reported after 24 hours: {late.participant.study_number}"
    )


def test_a_report_is_recorded_once_for_a_serious_event_only(
    serious_event, msc, coordinator_a, on_day_2
):
    sae_report_mark(
        adverse_event=serious_event, user=coordinator_a, reported_on=datetime.date(2026, 3, 12)
    )
    with pytest.raises(ValidationError) as refused:
        sae_report_mark(
            adverse_event=serious_event, user=coordinator_a, reported_on=datetime.date(2026, 3, 12)
        )
    assert refused.value.messages == ["This event was already recorded as reported on 2026-03-12."]
    plain = adverse_event_record(participant=msc.participant, user=coordinator_a, **event())
    with pytest.raises(ValidationError) as refused:
        sae_report_mark(
            adverse_event=plain, user=coordinator_a, reported_on=datetime.date(2026, 3, 12)
        )
    assert refused.value.messages == [
        "Only a serious adverse event is reported to the sponsor and ethics committee."
    ]


def test_an_event_made_serious_later_starts_its_clock_then(msc, coordinator_a, site_a):
    with time_machine.travel(site_time(site_a, 2026, 3, 12, 9, 0), tick=False):
        adverse_event = adverse_event_record(
            participant=msc.participant, user=coordinator_a, **event()
        )
    later = site_time(site_a, 2026, 3, 12, 18, 0)
    with time_machine.travel(later, tick=False):
        values = event(**SERIOUS)
        criteria = values.pop("criteria")
        adverse_event_update(
            adverse_event=adverse_event,
            user=coordinator_a,
            reason="Admitted to the ICU",
            criteria=criteria,
            **values,
        )
    adverse_event.refresh_from_db()
    assert adverse_event.sae_clock_started_at == later
    assert SaeAlert.objects.filter(adverse_event=adverse_event).count() == 2
    assert adverse_event.history.first().history_change_reason == "Admitted to the ICU"


def test_investigators_without_mail_leave_the_alert_to_retry(serious_event, investigator_a):
    investigator_a.email = ""
    investigator_a.save(update_fields=["email"])
    result = sae_alerts_dispatch()
    assert (result.sent, result.retrying) == (0, 1)
    alert = SaeAlert.objects.get(kind=AlertKind.IMMEDIATE)
    assert alert.status == AlertStatus.PENDING
    assert alert.last_error == ("NoRecipients: No investigator with an e-mail address at the site.")


def test_another_sites_investigator_records_no_report(serious_event, site_b):
    outsider = user_with_role(Role.INVESTIGATOR, site_b, username="dora")
    with pytest.raises(ValidationError) as refused:
        sae_report_mark(
            adverse_event=serious_event, user=outsider, reported_on=datetime.date(2026, 3, 12)
        )
    assert refused.value.messages == [
        "Only a coordinator or investigator of the participant's site can record it."
    ]
    serious_event.refresh_from_db()
    assert serious_event.reported_on is None
    assert not SaeAlert.objects.filter(status=AlertStatus.CANCELLED).exists()


def test_a_death_recorded_at_a_visit_ends_the_study(msc, coordinator_a, on_day_2):
    day_1 = ScheduledVisit.objects.get(participant=msc.participant, study_day=1)
    visit_record(
        scheduled_visit=day_1,
        user=coordinator_a,
        visit_date=datetime.date(2026, 3, 11),
        vital_status="dead",
        date_of_death=datetime.date(2026, 3, 11),
        measurements={},
    )
    end = EndOfStudy.objects.get(participant=msc.participant)
    assert (end.reason, end.ended_on, end.adverse_event) == (
        EndReason.DIED,
        datetime.date(2026, 3, 11),
        None,
    )
    assert end.details == f"Death recorded at the {day_1.definition.name} visit"
    # The same death reported as a grade 5 event later keeps the one end of study.
    adverse_event_record(
        participant=msc.participant,
        user=coordinator_a,
        **event(grade=5, death_date=datetime.date(2026, 3, 11), serious=True, criteria={"death"}),
    )
    assert EndOfStudy.objects.count() == 1
