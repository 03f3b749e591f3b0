"""Writes of outcomes: the visit schedule and visit records, adverse events and end of study.

Visits and their records are trial data: audited, each change with a reason. Visit reminders
are delivery state: every status move is a conditional UPDATE whose row count is the claim.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.db.models import F, Max, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy

from arms.models import Allocation
from dosing.models import Administration
from dosing.rules import retry_delay
from dosing.services import NoRecipients, participant_reminders_cancel
from enrollment.models import Participant
from trialsite.core.access import access_for
from trialsite.core.audit import REASON_REQUIRED, audited_bulk_create, audited_save
from trialsite.core.clock import site_time_text, site_today
from trialsite.core.models import Protocol, Role, RoleAssignment
from trialsite.core.signatures import (
    SignatureStatus,
    signature_bind,
    signature_hash_matches,
    signature_invalidate,
    signature_is_valid,
    signature_verify,
)

from . import rules
from .models import (
    MEASURED_FIELDS,
    OPEN_VISIT_STATUSES,
    AdverseEvent,
    AlertKind,
    AlertStatus,
    CausalityAssessment,
    EndOfStudy,
    EndReason,
    InterventionRelatedness,
    Relatedness,
    SaeAlert,
    ScheduledVisit,
    VisitDefinition,
    VisitRecord,
    VisitReminder,
    VisitReminderStatus,
    VisitStatus,
    VitalStatus,
)
from .selectors import participant_interventions

log = logging.getLogger(__name__)

# --- Visits ---------------------------------------------------------------------------------

VISIT_REMINDER_MAX_ATTEMPTS = 5
VISIT_REMINDER_SEND_TIMEOUT = 30


def _visit_windows(participant: Participant, randomized_at: datetime, protocol: Protocol):
    day_zero = rules.study_day_zero(randomized_at, participant.site.zone)
    for definition in VisitDefinition.objects.filter(protocol=protocol).order_by("study_day"):
        window = rules.visit_window(
            day_zero, study_day=definition.study_day, window_days=definition.window_days
        )
        yield definition, window, day_zero


@transaction.atomic
def participant_visits_create(
    *, participant: Participant, randomized_at: datetime, protocol: Protocol, user
) -> list[ScheduledVisit]:
    """Every follow-up visit of the protocol and its reminder, in the caller's (allocation's)
    transaction. Idempotent: a participant who already has visits gets them back."""
    existing = list(ScheduledVisit.objects.filter(participant=participant))
    if existing:
        return existing
    windows = list(_visit_windows(participant, randomized_at, protocol))
    # One INSERT for the visits and one for their history, as for the doses.
    visits = audited_bulk_create(
        [
            ScheduledVisit(
                participant=participant,
                definition=definition,
                study_day=definition.study_day,
                due_on=window.due_on,
                window_start=window.window_start,
                window_end=window.window_end,
            )
            for definition, window, _day_zero in windows
        ],
        user=user,
        reason=_("Visit schedule created at randomization"),
    )
    reminders = [
        VisitReminder(
            scheduled_visit=visit,
            due_at=rules.reminder_at(window.window_start, participant.site.zone),
        )
        for visit, (_definition, window, day_zero) in zip(visits, windows, strict=True)
        if rules.needs_reminder(window, day_zero)
    ]
    VisitReminder.objects.bulk_create(reminders)
    return visits


def _pending_reminders_cancel(visits, reason: str) -> int:
    return VisitReminder.objects.filter(
        scheduled_visit__in=visits, status=VisitReminderStatus.PENDING
    ).update(status=VisitReminderStatus.CANCELLED, cancelled_reason=reason[:200])


@transaction.atomic
def participant_visits_stop(*, participant: Participant, reason: str, user=None) -> int:
    """Off study: every visit still ahead (its window not yet closed at the site) becomes
    "not required" with the reason, and its reminder is cancelled. Visits already recorded,
    and visits whose window has closed (missed), stay as they are. Idempotent."""
    reason = (reason or "").strip() or _("Off study")
    today = site_today(participant.site)
    ahead = list(
        ScheduledVisit.objects.select_for_update().filter(
            participant=participant, status__in=OPEN_VISIT_STATUSES, window_end__gte=today
        )
    )
    for visit in ahead:
        visit.status = VisitStatus.NOT_REQUIRED
        visit.stopped_reason = reason[:200]
        audited_save(visit, user=user, reason=reason)
    _pending_reminders_cancel(ahead, reason)
    return len(ahead)


def visits_mark_missed(*, now: datetime | None = None) -> int:
    """Visits with no record once their window has closed at the site become missed.
    Idempotent: each visit is re-read under its lock and changed only if still due."""
    now = now or timezone.now()
    # No site's date is more than a day ahead of UTC's, so no window after UTC's today can
    # have closed anywhere; the rule decides per site below.
    candidates = ScheduledVisit.objects.filter(
        status=VisitStatus.DUE, window_end__lte=now.astimezone(UTC).date()
    ).select_related("participant__site")
    marked = 0
    for visit in candidates.iterator():
        if not rules.window_closed(now, visit.participant.site.zone, visit.window_end):
            continue
        with transaction.atomic():
            locked = (
                ScheduledVisit.objects.select_for_update()
                .filter(pk=visit.pk, status=VisitStatus.DUE)
                .first()
            )
            if locked is None:
                continue
            locked.status = VisitStatus.MISSED
            audited_save(locked, reason=_("No record by the end of the window"))
            marked += 1
    return marked


def _dates_errors(
    visit: ScheduledVisit,
    *,
    visit_date: date,
    discharged_on: date | None,
    vital_status: str,
    date_of_death: date | None,
) -> dict[str, str]:
    participant = visit.participant
    day_zero = rules.study_day_zero(participant.allocation.randomized_at, participant.site.zone)
    study_end = ScheduledVisit.objects.filter(participant=participant).aggregate(
        end=Max("window_end")
    )["end"]
    today = site_today(participant.site)
    errors: dict[str, str] = {}
    error = rules.visit_date_error(visit_date, day_zero=day_zero, study_end=study_end, today=today)
    if error:
        errors["visit_date"] = error
    for name, value in (("discharged_on", discharged_on), ("date_of_death", date_of_death)):
        if value is None:
            continue
        if value > today:
            errors[name] = _("This date is in the future (today at the site is %(today)s).") % {
                "today": today.isoformat()
            }
        elif value < day_zero:
            errors[name] = _("This date is before randomization (%(day_zero)s).") % {
                "day_zero": day_zero.isoformat()
            }
    if vital_status == VitalStatus.DEAD and date_of_death is None:
        errors["date_of_death"] = _("Give the date of death.")
    elif vital_status == VitalStatus.ALIVE and date_of_death is not None:
        errors["date_of_death"] = _("A date of death is for a participant who died.")
    return errors


def _visit_values(
    visit: ScheduledVisit,
    *,
    measurements: dict,
    visit_date: date,
    discharged_on: date | None,
    vital_status: str,
    date_of_death: date | None,
) -> dict:
    """The measured fields as stored (FiO2 a fraction, blank choices empty), or a
    ValidationError naming every field outside its range or dates outside the study."""
    values = {name: measurements.get(name) for name in MEASURED_FIELDS}
    for name in MEASURED_FIELDS:
        values[f"{name}_not_done"] = bool(measurements.get(f"{name}_not_done"))
        values[f"{name}_not_done_reason"] = (
            measurements.get(f"{name}_not_done_reason") or ""
        ).strip()
    errors = rules.measurement_problems(values)
    errors.update(
        _dates_errors(
            visit,
            visit_date=visit_date,
            discharged_on=discharged_on,
            vital_status=vital_status,
            date_of_death=date_of_death,
        )
    )
    if errors:
        raise ValidationError(errors)
    if values["fio2"] is not None:
        values["fio2"] = rules.normalise_fio2(Decimal(values["fio2"]))
    for name in ("respiratory_support", "chest_ct"):
        values[name] = values[name] or ""
    return values


def _visit_done(visit: ScheduledVisit, visit_date: date, *, user, reason: str) -> None:
    window = rules.VisitWindow(visit.due_on, visit.window_start, visit.window_end)
    outside = rules.days_outside_window(visit_date, window)
    visit.days_outside_window = outside
    visit.status = VisitStatus.DONE if outside is None else VisitStatus.DONE_OUT_OF_WINDOW
    audited_save(visit, user=user, reason=reason)


@transaction.atomic
def visit_record(
    *,
    scheduled_visit: ScheduledVisit,
    user,
    visit_date: date,
    vital_status: str,
    measurements: dict,
    discharged_on: date | None = None,
    date_of_death: date | None = None,
) -> VisitRecord:
    """The findings of one visit, and the visit done (in or out of its window), in one
    transaction. `measurements` holds each measured field, its `_not_done` and its
    `_not_done_reason`; FiO2 may be a fraction or a percentage and is kept as a fraction.
    Refused whole, nothing written, when any value is outside its range."""
    # Only the visit row is locked: PostgreSQL refuses FOR UPDATE on the outer join to the
    # allocation.
    visit = (
        ScheduledVisit.objects.select_for_update(of=("self",))
        .select_related("participant__site", "participant__allocation", "definition")
        .get(pk=scheduled_visit.pk)
    )
    if hasattr(visit, "record"):
        raise ValidationError(_("This visit is already recorded."))
    if visit.status == VisitStatus.NOT_REQUIRED:
        raise ValidationError(_("This visit is no longer required: the participant is off study."))
    values = _visit_values(
        visit,
        measurements=measurements,
        visit_date=visit_date,
        discharged_on=discharged_on,
        vital_status=vital_status,
        date_of_death=date_of_death,
    )
    record = audited_save(
        VisitRecord(
            scheduled_visit=visit,
            visit_date=visit_date,
            discharged_on=discharged_on,
            vital_status=vital_status,
            date_of_death=date_of_death,
            recorded_by=user,
            **values,
        ),
        user=user,
        reason=_("Visit recorded"),
    )
    _visit_done(
        visit, visit_date, user=user, reason=_("Visit recorded on %(date)s") % {"date": visit_date}
    )
    _pending_reminders_cancel([visit], _("Visit recorded"))
    if vital_status == VitalStatus.DEAD:
        participant_death_end(
            participant=visit.participant,
            user=user,
            died_on=date_of_death,
            details=_("Death recorded at the %(visit)s visit")
            % {"visit": visit.definition.localized_name()},
        )
    return record


CORRECTED_FIELDS = (
    "visit_date",
    "discharged_on",
    "vital_status",
    "date_of_death",
    *MEASURED_FIELDS,
    *(f"{name}_not_done" for name in MEASURED_FIELDS),
    *(f"{name}_not_done_reason" for name in MEASURED_FIELDS),
)


@transaction.atomic
def visit_record_correct(
    *,
    record: VisitRecord,
    user,
    reason: str,
    visit_date: date,
    vital_status: str,
    measurements: dict,
    discharged_on: date | None = None,
    date_of_death: date | None = None,
) -> VisitRecord:
    """A correction of a recorded visit, with its reason, checked as the first record was:
    the record and the visit's status (a new date may move it in or out of its window) in
    one transaction, each change in the audit trail. A death recorded by the correction ends
    the study; a death that already ended it is not undone here (the end of study stands
    until the trial administrator reviews it)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Give the reason for the change.")})
    visit = (
        ScheduledVisit.objects.select_for_update(of=("self",))
        .select_related("participant__site", "participant__allocation", "definition")
        .get(pk=record.scheduled_visit_id)
    )
    record = VisitRecord.objects.select_for_update().get(pk=record.pk)
    values = _visit_values(
        visit,
        measurements=measurements,
        visit_date=visit_date,
        discharged_on=discharged_on,
        vital_status=vital_status,
        date_of_death=date_of_death,
    )
    values.update(
        visit_date=visit_date,
        discharged_on=discharged_on,
        vital_status=vital_status,
        date_of_death=date_of_death,
    )
    if record.vital_status == VitalStatus.DEAD and vital_status != VitalStatus.DEAD:
        raise ValidationError(
            {
                "vital_status": _(
                    "This visit recorded a death, which ended the study: a death is not "
                    "undone by a correction. Ask the trial administrator."
                )
            }
        )
    changed = {name for name in CORRECTED_FIELDS if getattr(record, name) != values[name]}
    if not changed:
        raise ValidationError(
            {NON_FIELD_ERRORS: _("Nothing was changed: the record stays as it was.")}
        )
    for name in changed:
        setattr(record, name, values[name])
    audited_save(record, user=user, reason=reason)
    if "visit_date" in changed:
        _visit_done(visit, visit_date, user=user, reason=reason)
    if vital_status == VitalStatus.DEAD and "vital_status" in changed:
        participant_death_end(
            participant=visit.participant,
            user=user,
            died_on=date_of_death,
            details=_("Death recorded at the %(visit)s visit")
            % {"visit": visit.definition.localized_name()},
        )
    return record


def visit_reminder_link(reminder: VisitReminder) -> str:
    path = reverse("outcomes:visit_record", kwargs={"pk": reminder.scheduled_visit_id})
    return settings.SITE_URL.rstrip("/") + path


def visit_reminder_message(reminder: VisitReminder) -> tuple[str, str]:
    """Subject and body. The participant is their study number only: never name or MRN."""
    visit = reminder.scheduled_visit
    context = {
        "study_number": visit.participant.study_number,
        "site": visit.participant.site,
        "visit": visit,
        "link": visit_reminder_link(reminder),
    }
    subject = render_to_string("outcomes/email/visit_reminder_subject.txt", context)
    body = render_to_string("outcomes/email/visit_reminder_body.txt", context)
    return " ".join(subject.split()), body


def _coordinators(site_id: int, cache: dict) -> list[str]:
    if site_id not in cache:
        cache[site_id] = sorted(
            set(
                RoleAssignment.objects.filter(
                    site_id=site_id, role=Role.COORDINATOR, user__is_active=True
                )
                .exclude(user__email="")
                .values_list("user__email", flat=True)
            )
        )
    return cache[site_id]


def visit_reminders_dispatch(*, now: datetime | None = None) -> int:
    """Send every due visit reminder once, to the site's coordinators. Each row is claimed by
    a conditional UPDATE (pending -> sent, with its time) before it is sent; a failed send
    puts it back with the attempt counted and a later retry. At most once: a worker killed
    mid-send leaves the row sent. Idempotent: a second call sends nothing."""
    now = now or timezone.now()
    channel = import_string(settings.DOSING_REMINDER_CHANNEL)()
    cache: dict = {}
    sent = 0
    due = VisitReminder.objects.filter(status=VisitReminderStatus.PENDING, due_at__lte=now).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    for pk in list(due.values_list("pk", flat=True)):
        claimed = VisitReminder.objects.filter(pk=pk, status=VisitReminderStatus.PENDING).update(
            status=VisitReminderStatus.SENT,
            sent_at=timezone.now(),
            claimed_at=timezone.now(),
            attempts=F("attempts") + 1,
        )
        if not claimed:
            continue
        reminder = VisitReminder.objects.select_related(
            "scheduled_visit__participant__site", "scheduled_visit__definition"
        ).get(pk=pk)
        visit = reminder.scheduled_visit
        if visit.status not in OPEN_VISIT_STATUSES:
            VisitReminder.objects.filter(pk=pk).update(
                status=VisitReminderStatus.CANCELLED,
                sent_at=None,
                cancelled_reason=_("Visit closed"),
            )
            continue
        try:
            recipients = _coordinators(visit.participant.site_id, cache)
            if not recipients:
                raise RuntimeError(_("No coordinator with an e-mail address at the site."))
            subject, body = visit_reminder_message(reminder)
            channel.send(
                subject=subject,
                body=body,
                recipients=recipients,
                headers={"X-Visit-Reminder-Id": str(pk)},
                timeout=VISIT_REMINDER_SEND_TIMEOUT,
            )
        except Exception as exc:  # noqa: BLE001 - any failure of the outside world retries
            log.warning("visit reminder %s failed: %s", pk, exc)
            failed = reminder.attempts >= VISIT_REMINDER_MAX_ATTEMPTS
            VisitReminder.objects.filter(pk=pk).update(
                status=VisitReminderStatus.FAILED if failed else VisitReminderStatus.PENDING,
                sent_at=None,
                last_error=f"{type(exc).__name__}: {exc}"[:2000],
                next_attempt_at=timezone.now() + retry_delay(reminder.attempts),
            )
            continue
        VisitReminder.objects.filter(pk=pk).update(recipients=", ".join(recipients))
        sent += 1
    return sent


# --- Adverse events and end of study ---------------------------------------------------------
#
# Adverse events, their causality and the SAE reporting clock are trial data (audited, each
# change with a reason). The SAE alerts are delivery state: every status move is a
# conditional UPDATE whose row count is the claim, as dosing's reminders.

AE_WRITERS = (Role.COORDINATOR, Role.INVESTIGATOR)
CAUSALITY_MEANING = _lazy(
    "I have assessed how this adverse event relates to each study intervention."
)
END_OF_STUDY_MEANING = _lazy("I confirm how and when this participant's study ended.")
ALERT_MAX_ATTEMPTS = 5
ALERT_SEND_TIMEOUT_SECONDS = 30
# A claim older than this belongs to a worker that died mid-send: back to the queue.
ALERT_CLAIM_LEASE = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)


def _require_site_role(participant: Participant, user, roles, message) -> None:
    if participant.site_id not in (access_for(user).site_ids(*roles) or ()):
        raise ValidationError(message)


def _day_zero(participant: Participant) -> date:
    allocation = Allocation.objects.filter(participant=participant).first()
    if allocation is None:
        raise ValidationError(
            _("%(number)s is not randomized: the study's records start at randomization.")
            % {"number": participant.study_number}
        )
    return rules.study_day_zero(allocation.randomized_at, participant.site.zone)


def _criteria_fields(criteria) -> dict[str, bool]:
    return {f"criterion_{code}": code in criteria for code, _label in rules.SERIOUSNESS_CRITERIA}


def _check_adverse_event(participant: Participant, values: dict) -> None:
    problems = rules.adverse_event_problems(
        onset=values["onset_date"],
        end=values["end_date"],
        grade=values["grade"],
        death_date=values["death_date"],
        serious=values["serious"],
        criteria=set(values["criteria"]),
        day_zero=_day_zero(participant),
        today=site_today(participant.site),
    )
    if problems:
        raise ValidationError(problems)


def _reaction_to_report(participant: Participant, administration: Administration | None):
    if administration is None:
        return None
    dose = administration.scheduled_dose
    if (
        dose.participant_id != participant.pk
        or not administration.infusion_reaction
        or administration.is_void
    ):
        raise ValidationError(
            _("That dose record is not an infusion reaction of %(number)s in force.")
            % {"number": participant.study_number}
        )
    return administration


def _start_sae_clock(adverse_event: AdverseEvent, now: datetime) -> None:
    """The investigators hear at once, and again when the report is 24 hours late."""
    adverse_event.sae_clock_started_at = now
    for kind, due_at in (
        (AlertKind.IMMEDIATE, now),
        (AlertKind.FOLLOW_UP, rules.sae_report_due(now)),
    ):
        SaeAlert.objects.get_or_create(
            adverse_event=adverse_event, kind=kind, defaults={"due_at": due_at}
        )


def participant_death_end(
    *,
    participant: Participant,
    user,
    died_on: date,
    details: str = "",
    adverse_event: AdverseEvent | None = None,
) -> EndOfStudy:
    """A death recorded on any form (an adverse event, a visit) ends the study, in the
    caller's transaction. Idempotent: a death already ending the study is returned."""
    ended = EndOfStudy.objects.filter(participant=participant).first()
    if ended is not None and ended.reason == EndReason.DIED:
        return ended
    return participant_study_end(
        participant=participant,
        user=user,
        reason=EndReason.DIED,
        ended_on=died_on,
        details=details,
        adverse_event=adverse_event,
    )


def _end_study_on_death(adverse_event: AdverseEvent, user) -> None:
    participant_death_end(
        participant=adverse_event.participant,
        user=user,
        died_on=adverse_event.death_date,
        details=adverse_event.term,
        adverse_event=adverse_event,
    )


def adverse_event_record(
    *,
    participant: Participant,
    user,
    term: str,
    onset_date: date,
    end_date: date | None,
    grade: int,
    death_date: date | None,
    serious: bool,
    criteria: Collection[str],
    action_taken: str,
    outcome: str,
    administration: Administration | None = None,
    submission_token: UUID | None = None,
) -> AdverseEvent:
    """Records one adverse event of a randomized participant. A serious one starts the
    reporting clock and its two alerts; a grade 5 one ends the study, in this transaction.
    Idempotent per submission token: a resent form returns the event already recorded."""
    _require_site_role(
        participant,
        user,
        AE_WRITERS,
        _("Only a coordinator or investigator of the participant's site can record it."),
    )
    if submission_token is not None:
        existing = AdverseEvent.objects.filter(submission_token=submission_token).first()
        if existing is not None:
            return existing
    values = {
        "term": term.strip(),
        "onset_date": onset_date,
        "end_date": end_date,
        "grade": grade,
        "death_date": death_date,
        "serious": serious,
        "criteria": set(criteria),
        "action_taken": action_taken,
        "outcome": outcome,
    }
    with transaction.atomic():
        Participant.objects.select_for_update().filter(pk=participant.pk).first()
        _check_adverse_event(participant, values)
        adverse_event = AdverseEvent(
            participant=participant,
            administration=_reaction_to_report(participant, administration),
            recorded_by=user,
            submission_token=submission_token,
            **{k: v for k, v in values.items() if k != "criteria"},
            **_criteria_fields(values["criteria"]),
        )
        now = timezone.now()
        adverse_event.recorded_at = now
        if serious:
            adverse_event.sae_clock_started_at = now
        audited_save(adverse_event, user=user)
        if serious:
            _start_sae_clock(adverse_event, now)
        if grade == rules.FATAL_GRADE:
            _end_study_on_death(adverse_event, user)
    return adverse_event


def adverse_event_update(
    *, adverse_event: AdverseEvent, user, reason: str, criteria: Collection[str], **fields
) -> AdverseEvent:
    """Changes an adverse event (its end, outcome, grade...) under the same checks as when it
    was recorded, with the reason in the audit trail. Made serious, it starts the clock;
    made grade 5, it ends the study."""
    participant = adverse_event.participant
    _require_site_role(
        participant,
        user,
        AE_WRITERS,
        _("Only a coordinator or investigator of the participant's site can change it."),
    )
    if not (reason or "").strip():
        raise ValidationError({"reason": REASON_REQUIRED})
    with transaction.atomic():
        Participant.objects.select_for_update().filter(pk=participant.pk).first()
        adverse_event = AdverseEvent.objects.select_for_update().get(pk=adverse_event.pk)
        was_serious, was_fatal = adverse_event.serious, adverse_event.grade == rules.FATAL_GRADE
        values = {
            name: fields.get(name, getattr(adverse_event, name))
            for name in ("term", "onset_date", "end_date", "grade", "death_date", "serious")
        }
        values |= {
            "criteria": set(criteria),
            "action_taken": fields.get("action_taken", adverse_event.action_taken),
            "outcome": fields.get("outcome", adverse_event.outcome),
        }
        _check_adverse_event(participant, values)
        if was_serious and not values["serious"]:
            raise ValidationError(
                {"serious": _("A serious event stays serious: its reporting clock has started.")}
            )
        for name, value in values.items():
            if name != "criteria":
                setattr(adverse_event, name, value)
        for name, value in _criteria_fields(values["criteria"]).items():
            setattr(adverse_event, name, value)
        now = timezone.now()
        if adverse_event.serious and not was_serious:
            adverse_event.sae_clock_started_at = now
        audited_save(adverse_event, user=user, reason=reason)
        _causality_invalidate_if_changed(adverse_event, user=user, reason=reason)
        if adverse_event.serious and not was_serious:
            _start_sae_clock(adverse_event, now)
        if adverse_event.grade == rules.FATAL_GRADE and not was_fatal:
            _end_study_on_death(adverse_event, user)
    return adverse_event


def _causality_invalidate_if_changed(adverse_event: AdverseEvent, *, user, reason: str) -> None:
    """In the caller's transaction: a signed causality whose event changed in what it
    assessed is invalidated, with the change's reason, and asks to be signed again."""
    assessment = (
        CausalityAssessment.objects.select_for_update()
        .filter(adverse_event=adverse_event, signature_status=SignatureStatus.VALID)
        .first()
    )
    if assessment is None:
        return
    assessment.adverse_event = adverse_event
    if not signature_hash_matches(assessment):
        signature_invalidate(
            record=assessment,
            user=user,
            reason=_("The adverse event changed after signing: %(reason)s") % {"reason": reason},
        )


def causality_sign(
    *,
    adverse_event: AdverseEvent,
    user,
    password: str,
    expected: bool,
    relatedness: dict[str, str],
) -> CausalityAssessment:
    """An investigator of the participant's site assesses the event against each study
    intervention of the arm and signs with their password. One assessment per event; one
    whose signature was invalidated (the event changed since) is assessed and signed again,
    the earlier signature kept with it."""
    participant = adverse_event.participant
    _require_site_role(
        participant,
        user,
        (Role.INVESTIGATOR,),
        _("Only an investigator of the participant's site can sign the causality assessment."),
    )
    # Before the password: an assessment that cannot be signed costs no attempt at the lock-out.
    if signature_is_valid(CausalityAssessment.objects.filter(adverse_event=adverse_event).first()):
        raise ValidationError(_("The causality of this adverse event is already signed."))
    found = participant_interventions(participant)
    missing = {
        f"related_{i.key}": _("Assess the relatedness to this intervention.")
        for i in found
        if relatedness.get(i.key) not in Relatedness.values
    }
    if missing:
        raise ValidationError(missing)
    # Outside the transaction: a wrong password must stay counted when the signing fails.
    signature_verify(user=user, password=password)
    with transaction.atomic():
        adverse_event = AdverseEvent.objects.select_for_update().get(pk=adverse_event.pk)
        assessment = (
            CausalityAssessment.objects.select_for_update()
            .filter(adverse_event=adverse_event)
            .first()
        )
        if assessment is not None:
            assessment.adverse_event = adverse_event
            if signature_is_valid(assessment):
                raise ValidationError(_("The causality of this adverse event is already signed."))
        signing_again = assessment is not None
        if assessment is None:
            assessment = CausalityAssessment(adverse_event=adverse_event)
        assessment.expected = expected
        earlier = (
            {(r.schedule_id, r.scheduled_dose_id): r for r in assessment.relatedness.all()}
            if signing_again
            else {}
        )
        rows, changed = [], []
        for intervention in found:
            row = earlier.pop((intervention.schedule_id, intervention.dose_id), None)
            if row is None:
                row = InterventionRelatedness(
                    schedule_id=intervention.schedule_id, scheduled_dose_id=intervention.dose_id
                )
            values = (intervention.label, relatedness[intervention.key])
            if row.pk is None or (row.label, row.relatedness) != values:
                changed.append(row)
            row.label, row.relatedness = values
            rows.append(row)
        # Rows of interventions no longer offered stay, as assessed, in what is signed.
        signature_bind(
            assessment,
            signer=user,
            signed_at=timezone.now(),
            meaning=str(CAUSALITY_MEANING),
            content_of=lambda signed: rules.causality_content(
                signed, adverse_event, [*rows, *earlier.values()]
            ),
        )
        again = _("Assessed and signed again after the signature was invalidated")
        audited_save(assessment, user=user, reason=again if signing_again else "")
        for row in changed:
            row.assessment = assessment
            audited_save(row, user=user, reason=again if row.pk else "")
    return assessment


def sae_report_mark(*, adverse_event: AdverseEvent, reported_on: date, user) -> AdverseEvent:
    """Records that a serious adverse event was reported to the sponsor and the ethics
    committee: its clock stops and the 24-hour alert, not yet sent, is cancelled."""
    participant = adverse_event.participant
    _require_site_role(
        participant,
        user,
        AE_WRITERS,
        _("Only a coordinator or investigator of the participant's site can record it."),
    )
    with transaction.atomic():
        adverse_event = AdverseEvent.objects.select_for_update().get(pk=adverse_event.pk)
        if not adverse_event.serious:
            raise ValidationError(
                _("Only a serious adverse event is reported to the sponsor and ethics committee.")
            )
        if adverse_event.reported_on is not None:
            raise ValidationError(
                _("This event was already recorded as reported on %(date)s.")
                % {"date": adverse_event.reported_on.isoformat()}
            )
        today = site_today(participant.site)
        if reported_on < adverse_event.onset_date:
            raise ValidationError(
                {
                    "reported_on": _("The report cannot be before the onset (%(onset)s).")
                    % {"onset": adverse_event.onset_date.isoformat()}
                }
            )
        if reported_on > today:
            raise ValidationError(
                {
                    "reported_on": _(
                        "The report date is in the future (today at the site is %(today)s)."
                    )
                    % {"today": today.isoformat()}
                }
            )
        adverse_event.reported_on = reported_on
        adverse_event.reported_by = user
        audited_save(adverse_event, user=user, reason=_("Reported to the sponsor and ethics"))
        SaeAlert.objects.filter(
            adverse_event=adverse_event, kind=AlertKind.FOLLOW_UP, status=AlertStatus.PENDING
        ).update(
            status=AlertStatus.CANCELLED,
            cancelled_reason=_("Reported on %(date)s") % {"date": reported_on.isoformat()},
        )
    return adverse_event


def participant_study_end(
    *,
    participant: Participant,
    user,
    reason: str,
    ended_on: date,
    details: str = "",
    adverse_event: AdverseEvent | None = None,
) -> EndOfStudy:
    """Ends a randomized participant's study once: visits, doses and reminders still planned
    stop, in this transaction; every record already made stays."""
    _require_site_role(
        participant,
        user,
        AE_WRITERS,
        _("Only a coordinator or investigator of the participant's site can end the study."),
    )
    with transaction.atomic():
        Participant.objects.select_for_update().filter(pk=participant.pk).first()
        day_zero = _day_zero(participant)
        ended = EndOfStudy.objects.filter(participant=participant).first()
        if ended is not None:
            raise ValidationError(
                _("The study of %(number)s already ended on %(date)s (%(reason)s).")
                % {
                    "number": participant.study_number,
                    "date": ended.ended_on.isoformat(),
                    "reason": ended.get_reason_display(),
                }
            )
        problems = rules.end_of_study_problems(
            completed=reason == EndReason.COMPLETED,
            ended_on=ended_on,
            day_zero=day_zero,
            today=site_today(participant.site),
        )
        if problems:
            raise ValidationError(problems)
        end = audited_save(
            EndOfStudy(
                participant=participant,
                reason=reason,
                ended_on=ended_on,
                details=details.strip(),
                adverse_event=adverse_event,
                recorded_by=user,
            ),
            user=user,
        )
        why = _("End of study: %(reason)s") % {"reason": end.get_reason_display()}
        participant_reminders_cancel(participant=participant, reason=why)
        participant_visits_stop(participant=participant, user=user, reason=why)
    return end


def end_of_study_sign(*, end: EndOfStudy, user, password: str) -> EndOfStudy:
    """An investigator of the participant's site signs the end of study with their password.
    Once; one whose signature was invalidated (changed since) is signed again, the earlier
    signature kept with it."""
    participant = end.participant
    _require_site_role(
        participant,
        user,
        (Role.INVESTIGATOR,),
        _("Only an investigator of the participant's site can sign the end of study."),
    )
    # Before the password: what cannot be signed costs no attempt at the lock-out.
    if signature_is_valid(end):
        raise ValidationError(_("The end of study is already signed."))
    # Outside the transaction: a wrong password must stay counted when the signing fails.
    signature_verify(user=user, password=password)
    with transaction.atomic():
        end = EndOfStudy.objects.select_for_update().get(pk=end.pk)
        if signature_is_valid(end):
            raise ValidationError(_("The end of study is already signed."))
        signing_again = end.signature_status != SignatureStatus.UNSIGNED
        signature_bind(end, signer=user, signed_at=timezone.now(), meaning=END_OF_STUDY_MEANING)
        audited_save(
            end,
            user=user,
            reason=_("Signed again after the signature was invalidated")
            if signing_again
            else _("Signed by the investigator"),
        )
    return end


# --- The SAE alert outbox -----------------------------------------------------------------


@dataclass
class AlertDispatch:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    cancelled: int = 0
    lost_claims: int = 0
    recovered: int = 0


def sae_link(adverse_event: AdverseEvent) -> str:
    path = reverse("outcomes:ae_list", args=[adverse_event.participant.study_number])
    return settings.SITE_URL.rstrip("/") + path


def sae_alert_message(alert: SaeAlert) -> tuple[str, str]:
    """Subject and body. The participant is their study number only: never name or MRN."""
    adverse_event = alert.adverse_event
    site = adverse_event.participant.site
    context = {
        "follow_up": alert.kind == AlertKind.FOLLOW_UP,
        "study_number": adverse_event.participant.study_number,
        "site": site,
        "adverse_event": adverse_event,
        "criteria": ", ".join(adverse_event.criteria_labels),
        "recorded": site_time_text(adverse_event.sae_clock_started_at, site),
        "due": site_time_text(adverse_event.report_due_at, site),
        "link": sae_link(adverse_event),
    }
    subject = render_to_string("outcomes/ae_alert_subject.txt", context).strip()
    body = render_to_string("outcomes/ae_alert_body.txt", context)
    return " ".join(subject.split()), body


def _investigator_emails(site_id: int, cache: dict) -> list[str]:
    if site_id not in cache:
        cache[site_id] = sorted(
            set(
                RoleAssignment.objects.filter(
                    site_id=site_id, role=Role.INVESTIGATOR, user__is_active=True
                )
                .exclude(user__email="")
                .values_list("user__email", flat=True)
            )
        )
    return cache[site_id]


def _alert_finish(pk: int, token: str, **values) -> int:
    return SaeAlert.objects.filter(pk=pk, status=AlertStatus.SENDING, claimed_by=token).update(
        **values
    )


def sae_alerts_dispatch(*, now: datetime | None = None, worker: str = "") -> AlertDispatch:
    """Sends every due SAE alert once: each row is claimed with a conditional UPDATE before
    it is sent. Idempotent: a second call at the same instant sends nothing."""
    now = now or timezone.now()
    result = AlertDispatch()
    result.recovered = SaeAlert.objects.filter(
        status=AlertStatus.SENDING, claimed_at__lt=now - ALERT_CLAIM_LEASE
    ).update(status=AlertStatus.PENDING, next_attempt_at=None)
    channel = import_string(settings.DOSING_REMINDER_CHANNEL)()
    cache: dict = {}
    due = (
        SaeAlert.objects.filter(status=AlertStatus.PENDING, due_at__lte=now)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by("due_at", "pk")
        .values_list("pk", flat=True)
    )
    for pk in list(due):
        _alert_send(pk, worker=worker, channel=channel, cache=cache, result=result)
    return result


def _alert_send(pk: int, *, worker: str, channel, cache: dict, result: AlertDispatch) -> None:
    token = f"{worker or 'dispatch'}/{uuid.uuid4().hex[:12]}"
    claimed = SaeAlert.objects.filter(pk=pk, status=AlertStatus.PENDING).update(
        status=AlertStatus.SENDING,
        claimed_by=token,
        claimed_at=timezone.now(),
        attempts=F("attempts") + 1,
    )
    if not claimed:
        result.lost_claims += 1
        return
    alert = SaeAlert.objects.select_related("adverse_event__participant__site").get(pk=pk)
    if alert.kind == AlertKind.FOLLOW_UP and alert.adverse_event.reported_on is not None:
        _alert_finish(
            pk, token, status=AlertStatus.CANCELLED, cancelled_reason=_("Reported in time")
        )
        result.cancelled += 1
        return
    try:
        recipients = _investigator_emails(alert.adverse_event.participant.site_id, cache)
        if not recipients:
            raise NoRecipients(_("No investigator with an e-mail address at the site."))
        subject, body = sae_alert_message(alert)
        channel.send(
            subject=subject,
            body=body,
            recipients=recipients,
            headers={"X-SAE-Alert-Id": str(pk), "X-SAE-Alert-Kind": alert.kind},
            timeout=ALERT_SEND_TIMEOUT_SECONDS,
        )
    except Exception as exc:  # noqa: BLE001 - any failure of the outside world retries
        log.warning("SAE alert %s attempt %s failed: %s", pk, alert.attempts, exc)
        error = f"{type(exc).__name__}: {exc}"[:2000]
        if alert.attempts >= ALERT_MAX_ATTEMPTS:
            _alert_finish(pk, token, status=AlertStatus.FAILED, last_error=error)
            result.failed += 1
        else:
            _alert_finish(
                pk,
                token,
                status=AlertStatus.PENDING,
                last_error=error,
                next_attempt_at=timezone.now() + retry_delay(alert.attempts),
            )
            result.retrying += 1
        return
    _alert_finish(
        pk,
        token,
        status=AlertStatus.SENT,
        sent_at=timezone.now(),
        recipients=", ".join(recipients),
    )
    result.sent += 1
