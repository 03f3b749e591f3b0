"""Writes of outcomes: the visit schedule and visit records.

Visits and their records are trial data: audited, each change with a reason. Visit reminders
are delivery state: every status move is a conditional UPDATE whose row count is the claim.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from dosing.rules import retry_delay
from enrollment.models import Participant
from trialsite.core.audit import audited_save
from trialsite.core.clock import site_today
from trialsite.core.models import Protocol, Role, RoleAssignment

from . import rules
from .models import (
    MEASURED_FIELDS,
    OPEN_VISIT_STATUSES,
    ScheduledVisit,
    VisitDefinition,
    VisitRecord,
    VisitReminder,
    VisitReminderStatus,
    VisitStatus,
    VitalStatus,
)

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
    visits = []
    reminders = []
    for definition, window, day_zero in _visit_windows(participant, randomized_at, protocol):
        visit = audited_save(
            ScheduledVisit(
                participant=participant,
                definition=definition,
                study_day=definition.study_day,
                due_on=window.due_on,
                window_start=window.window_start,
                window_end=window.window_end,
            ),
            user=user,
            reason=_("Visit schedule created at randomization"),
        )
        visits.append(visit)
        if rules.needs_reminder(window, day_zero):
            reminders.append(
                VisitReminder(
                    scheduled_visit=visit,
                    due_at=rules.reminder_at(window.window_start, participant.site.zone),
                )
            )
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


def _measurement_errors(values: dict) -> dict[str, str]:
    errors: dict[str, str] = {}
    ranges = {
        "who_score": (rules.WHO_MIN, rules.WHO_MAX, _("The WHO score"), ""),
        "spo2": (rules.SPO2_MIN, rules.SPO2_MAX, _("SpO2"), "%"),
        "pao2": (rules.PAO2_MIN, rules.PAO2_MAX, _("PaO2"), "mmHg"),
    }
    for name, (low, high, label, unit) in ranges.items():
        error = rules.range_error(values.get(name), low, high, label=label, unit=unit)
        if error:
            errors[name] = error
    fio2 = values.get("fio2")
    if fio2 is not None and rules.normalise_fio2(Decimal(fio2)) is None:
        errors["fio2"] = _(
            "FiO2 must be a fraction from 0.21 to 1.0, or a percentage from 21 to 100."
        )
    for name in ("lymphocytes", "crp", "il6"):
        value = values.get(name)
        if value is not None and value < 0:
            errors[name] = _("A count or a concentration cannot be negative.")
    for name in MEASURED_FIELDS:
        value = values.get(name)
        blank = value is None or value == ""
        reason = (values.get(f"{name}_not_done_reason") or "").strip()
        if values.get(f"{name}_not_done"):
            if not blank:
                errors.setdefault(
                    name, _('Either a value or "not done": leave the value empty if not done.')
                )
            if not reason:
                errors[f"{name}_not_done_reason"] = _("Say why it was not done.")
        elif reason:
            errors[f"{name}_not_done"] = _('Tick "not done" for a reason to be kept.')
    return errors


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
    visit = (
        ScheduledVisit.objects.select_for_update()
        .select_related("participant__site", "participant__allocation", "definition")
        .get(pk=scheduled_visit.pk)
    )
    if hasattr(visit, "record"):
        raise ValidationError(_("This visit is already recorded."))
    if visit.status == VisitStatus.NOT_REQUIRED:
        raise ValidationError(_("This visit is no longer required: the participant is off study."))
    values = {name: measurements.get(name) for name in MEASURED_FIELDS}
    for name in MEASURED_FIELDS:
        values[f"{name}_not_done"] = bool(measurements.get(f"{name}_not_done"))
        values[f"{name}_not_done_reason"] = (
            measurements.get(f"{name}_not_done_reason") or ""
        ).strip()
    errors = _measurement_errors(values)
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
    window = rules.VisitWindow(visit.due_on, visit.window_start, visit.window_end)
    outside = rules.days_outside_window(visit_date, window)
    visit.days_outside_window = outside
    visit.status = VisitStatus.DONE if outside is None else VisitStatus.DONE_OUT_OF_WINDOW
    audited_save(visit, user=user, reason=_("Visit recorded on %(date)s") % {"date": visit_date})
    _pending_reminders_cancel([visit], _("Visit recorded"))
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
