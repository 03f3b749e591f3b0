"""Writes of dosing: the schedule at randomization, dose records, overdue marking, and the
reminder outbox (dispatch, resend, cancel).

Doses and administrations are trial data: audited, each change with a reason. Reminders are
delivery state: every status move is a conditional UPDATE whose row count is the claim.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from arms.models import Arm
from enrollment.models import Participant
from trialsite.core.audit import audited_bulk_create, audited_save
from trialsite.core.clock import site_time_text
from trialsite.core.languages import emails_by_language
from trialsite.core.models import Role, RoleAssignment

from . import rules
from .models import (
    OPEN_DOSE_STATUSES,
    Administration,
    AdministrationOutcome,
    DoseStatus,
    Reminder,
    ReminderKind,
    ReminderStatus,
    ScheduledDose,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
AMOUNT_PLACES = Decimal("0.0001")
DISPATCH_BATCH = 500
# One cycle stops claiming new rows after this long: well inside the task's soft time limit.
CYCLE_BUDGET_SECONDS = max(10, settings.CELERY_TASK_SOFT_TIME_LIMIT // 2)
# A claim older than this belongs to a worker that died mid-send (a live one finishes or is
# killed by Celery's hard time limit first); its row goes back to the queue.
CLAIM_LEASE = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
# One send may take at most this long (an SMTP server that hangs must not outlive the lease).
SEND_TIMEOUT_SECONDS = 30
# Roles a reminder goes to: the site's staff before a dose, its investigators when overdue.
RECIPIENT_ROLES = {
    ReminderKind.LEAD: (Role.COORDINATOR, Role.INVESTIGATOR),
    ReminderKind.OVERDUE: (Role.INVESTIGATOR,),
}


# --- The schedule -----------------------------------------------------------------------------


def _screening_values(participant: Participant, *keys: str) -> list[Decimal | None]:
    screening = participant.screenings.order_by("-screening_date", "-recorded_at").first()
    answers = (screening.answers or {}) if screening else {}
    return [_decimal_or_none(answers.get(key)) for key in keys]


def _decimal_or_none(value) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


@transaction.atomic
def participant_dosing_schedule_create(
    *,
    participant: Participant,
    arm: Arm,
    randomized_at: datetime,
    user,
    egfr: Decimal | None = None,
    weight_kg: Decimal | None = None,
) -> list[ScheduledDose]:
    """Every dose of the arm and its reminders, in the caller's (allocation's) transaction.

    Idempotent: a participant who already has doses gets them back, nothing new. The weight
    and eGFR default to the latest screening's answers (`weight_kg`, `egfr`).
    """
    existing = list(ScheduledDose.objects.filter(participant=participant))
    if existing:
        return existing
    schedules = list(arm.dose_schedules.order_by("pk"))
    if not schedules:
        return []
    if weight_kg is None or egfr is None:
        screened_weight, screened_egfr = _screening_values(participant, "weight_kg", "egfr")
        weight_kg = screened_weight if weight_kg is None else weight_kg
        egfr = screened_egfr if egfr is None else egfr
    if weight_kg is None and any(s.per_kg for s in schedules):
        raise ValidationError(
            {"weight_kg": _("The dose is per kg body weight, and no screening weight is recorded.")}
        )
    zone = participant.site.zone
    lead_hours = list(arm.protocol.reminder_lead_hours)
    now = timezone.now()
    plans = [
        (schedule, plan)
        for schedule in schedules
        for plan in rules.dose_plan(
            schedule, randomized_at=randomized_at, zone=zone, weight_kg=weight_kg, egfr=egfr
        )
    ]
    # One INSERT for the doses and one for their history: a Paxlovid course is ten doses.
    doses = audited_bulk_create(
        [
            ScheduledDose(
                participant=participant,
                schedule=schedule,
                sequence=plan.sequence,
                study_day=plan.study_day,
                due_at=plan.due_at,
                window_start=plan.window_start,
                window_end=plan.window_end,
                randomized_at=randomized_at,
                # kg (2 places) x amount per kg (4 places): kept to the field's 4 places.
                planned_amount=plan.amount.quantize(AMOUNT_PLACES),
                amount_unit=plan.amount_unit,
                amount_note=plan.amount_note,
            )
            for schedule, plan in plans
        ],
        user=user,
    )
    reminders: list[Reminder] = []
    for dose, (_schedule, plan) in zip(doses, plans, strict=True):
        for lead, send_at in rules.reminder_times(plan.due_at, lead_hours, not_before=now):
            reminders.append(
                Reminder(
                    scheduled_dose=dose,
                    participant=participant,
                    kind=ReminderKind.LEAD,
                    lead_hours=lead,
                    due_at=send_at,
                )
            )
        reminders.append(
            Reminder(
                scheduled_dose=dose,
                participant=participant,
                kind=ReminderKind.OVERDUE,
                lead_hours=0,
                # The first instant after the window: the dose is overdue from then.
                due_at=plan.window_end + timedelta(microseconds=1),
            )
        )
    # Their constraints are the database's to hold, as the doses' are (audited_bulk_create).
    for reminder in reminders:
        reminder.full_clean(
            exclude=["scheduled_dose", "participant"],
            validate_unique=False,
            validate_constraints=False,
        )
    Reminder.objects.bulk_create(reminders)
    return doses


# --- Recording ------------------------------------------------------------------------------


@dataclass
class _Record:
    outcome: str
    given_at: datetime | None
    amount: Decimal | None
    route: str
    lot_number: str
    given_by: object
    infusion_reaction: bool
    not_given_reason: str


def _site_time(moment: datetime, dose: ScheduledDose) -> str:
    return site_time_text(moment, dose.participant.site)


def _given_at_errors(dose: ScheduledDose, given_at: datetime) -> str | None:
    if given_at > timezone.now():
        return _("The time given cannot be in the future.")
    if dose.randomized_at and rules.given_before_randomization(given_at, dose.randomized_at):
        return _("The dose cannot have been given before randomization (%(when)s).") % {
            "when": _site_time(dose.randomized_at, dose)
        }
    return None


def _amount_error(dose: ScheduledDose, amount: Decimal) -> str | None:
    schedule = dose.schedule
    limits = {
        "planned": dose.planned_amount,
        "min_fraction": schedule.amount_min_fraction,
        "max_fraction": schedule.amount_max_fraction,
    }
    if rules.amount_is_plausible(amount, **limits):
        return None
    low, high = rules.plausible_amount_range(
        dose.planned_amount, **{k: v for k, v in limits.items() if k != "planned"}
    )
    return _(
        "Not plausible for a planned %(planned)s: the amount given must be between %(low)s "
        "and %(high)s %(unit)s. Check the number typed."
    ) % {
        "planned": dose.amount_display,
        "low": rules.scientific(low),
        "high": rules.scientific(high),
        "unit": dose.amount_unit,
    }


def _validate_record(dose: ScheduledDose, r: _Record) -> dict[str, str]:
    errors: dict[str, str] = {}
    if r.outcome == AdministrationOutcome.GIVEN:
        if r.given_at is None:
            errors["given_at"] = _("Give the date and time the dose was given.")
        elif problem := _given_at_errors(dose, r.given_at):
            errors["given_at"] = problem
        if r.amount is None or r.amount <= 0:
            errors["amount"] = _("Give the amount given.")
        elif problem := _amount_error(dose, r.amount):
            errors["amount"] = problem
        if not r.lot_number.strip():
            errors["lot_number"] = _("Give the lot or batch number.")
    elif r.outcome == AdministrationOutcome.NOT_GIVEN:
        if not r.not_given_reason.strip():
            errors["not_given_reason"] = _("Give the reason the dose was not given.")
    else:
        errors["outcome"] = _("Choose given or not given.")
    return errors


FAR_OUTSIDE_WINDOW = "far_outside_window"


def _outside_window_errors(
    dose: ScheduledDose, given_at: datetime, *, confirmed: bool, reason: str
) -> dict[str, ValidationError]:
    """A time far outside the window is kept only when the recorder confirms it with a
    reason: it is more often a wrong date, or the wrong dose, than a late one."""
    far = rules.far_outside_window(
        given_at,
        window_start=dose.window_start,
        window_end=dose.window_end,
        far_hours=dose.schedule.far_outside_window_hours,
    )
    if not far:
        return {}
    if not confirmed:
        message = _(
            "This is %(hours)s h outside the dose's window (%(start)s to %(end)s). If the time "
            "is right, tick the confirmation and give the reason."
        ) % {
            "hours": rules.deviation_hours(given_at, dose.window_start, dose.window_end),
            "start": _site_time(dose.window_start, dose),
            "end": _site_time(dose.window_end, dose),
        }
        return {"given_at": ValidationError(message, code=FAR_OUTSIDE_WINDOW)}
    if not reason:
        return {
            "outside_window_reason": ValidationError(
                _("Give the reason the dose was given so far outside its window."),
                code=FAR_OUTSIDE_WINDOW,
            )
        }
    return {}


def _cancel_pending(queryset, reason: str) -> int:
    return queryset.filter(status=ReminderStatus.PENDING).update(
        status=ReminderStatus.CANCELLED, cancelled_reason=reason[:200]
    )


@transaction.atomic
def dose_record(
    *,
    dose: ScheduledDose,
    user,
    outcome: str,
    given_at: datetime | None = None,
    amount: Decimal | None = None,
    route: str = "",
    lot_number: str = "",
    given_by=None,
    infusion_reaction: bool = False,
    not_given_reason: str = "",
    confirm_outside_window: bool = False,
    outside_window_reason: str = "",
    submission_token: UUID | None = None,
) -> Administration:
    """Record a dose once: given (outside the window = deviation, in hours) or not given.
    A time in the future or before randomization, or an implausible amount, is refused; a
    time far outside the window needs a confirmed reason. Its pending reminders are
    cancelled. Idempotent per submission token."""
    if submission_token and (
        existing := Administration.objects.filter(submission_token=submission_token).first()
    ):
        return existing
    # Lock the dose row (PostgreSQL; SQLite's IMMEDIATE transaction already holds the write
    # lock) so that overdue marking and a second recorder wait for this one.
    dose = (
        ScheduledDose.objects.select_for_update()
        .select_related("schedule", "participant__site")
        .get(pk=dose.pk)
    )
    if dose.status not in OPEN_DOSE_STATUSES:
        if dose.status == DoseStatus.STOPPED:
            raise ValidationError(_("This dose was stopped: the participant withdrew."))
        raise ValidationError(
            _("This dose is already recorded; correct the record, with a reason, instead.")
        )
    record = _Record(
        outcome=outcome,
        given_at=given_at,
        amount=amount,
        route=(route or dose.schedule.route).strip(),
        lot_number=lot_number.strip(),
        given_by=given_by or user,
        infusion_reaction=infusion_reaction,
        not_given_reason=not_given_reason.strip(),
    )
    errors: dict = _validate_record(dose, record)
    given = outcome == AdministrationOutcome.GIVEN
    outside_window_reason = outside_window_reason.strip()
    if given and given_at is not None and "given_at" not in errors:
        errors |= _outside_window_errors(
            dose, given_at, confirmed=confirm_outside_window, reason=outside_window_reason
        )
    if errors:
        raise ValidationError(errors)
    far = given and rules.far_outside_window(
        given_at,
        window_start=dose.window_start,
        window_end=dose.window_end,
        far_hours=dose.schedule.far_outside_window_hours,
    )
    administration = audited_save(
        Administration(
            scheduled_dose=dose,
            outcome=outcome,
            given_at=given_at if given else None,
            amount=amount if given else None,
            amount_unit=dose.amount_unit if given else "",
            route=record.route if given else "",
            lot_number=record.lot_number if given else "",
            given_by=record.given_by if given else None,
            infusion_reaction=infusion_reaction if given else False,
            not_given_reason="" if given else record.not_given_reason,
            deviation_hours=(
                rules.deviation_hours(given_at, dose.window_start, dose.window_end)
                if given
                else None
            ),
            outside_window_reason=outside_window_reason if far else "",
            recorded_by=user,
            submission_token=submission_token,
        ),
        user=user,
    )
    dose.status = DoseStatus.GIVEN if given else DoseStatus.NOT_GIVEN
    audited_save(dose, user=user, reason=_("Administration recorded"))
    _cancel_pending(Reminder.objects.filter(scheduled_dose=dose), _("Dose recorded"))
    return administration


CORRECTABLE = frozenset(
    {
        "given_at",
        "amount",
        "route",
        "lot_number",
        "given_by",
        "infusion_reaction",
        "not_given_reason",
    }
)


def _record_in_force(administration: Administration) -> Administration:
    administration = (
        Administration.objects.select_for_update()
        .select_related("scheduled_dose__schedule", "scheduled_dose__participant__site")
        .get(pk=administration.pk)
    )
    if administration.is_void:
        raise ValidationError(_("This record was voided; record the dose again instead."))
    return administration


@transaction.atomic
def administration_correct(
    *,
    administration: Administration,
    user,
    reason: str,
    confirm_outside_window: bool = False,
    outside_window_reason: str = "",
    **changes,
) -> Administration:
    """Correct a record in force, under the same checks as recording it; the audit trail
    keeps the old values and the reason."""
    unknown = set(changes) - CORRECTABLE
    if unknown:
        raise ValueError(f"not correctable: {sorted(unknown)}")
    administration = _record_in_force(administration)
    dose = administration.scheduled_dose
    moved = "given_at" in changes and changes["given_at"] != administration.given_at
    for key, value in changes.items():
        setattr(administration, key, value.strip() if isinstance(value, str) else value)
    record = _Record(
        outcome=administration.outcome,
        given_at=administration.given_at,
        amount=administration.amount,
        route=administration.route,
        lot_number=administration.lot_number,
        given_by=administration.given_by,
        infusion_reaction=administration.infusion_reaction,
        not_given_reason=administration.not_given_reason,
    )
    errors: dict = _validate_record(dose, record)
    given = administration.outcome == AdministrationOutcome.GIVEN
    outside_window_reason = outside_window_reason.strip()
    # A time already confirmed stays confirmed when only the lot or the amount is corrected.
    if given and moved and "given_at" not in errors:
        errors |= _outside_window_errors(
            dose,
            administration.given_at,
            confirmed=confirm_outside_window,
            reason=outside_window_reason,
        )
    if errors:
        raise ValidationError(errors)
    if given:
        administration.deviation_hours = rules.deviation_hours(
            administration.given_at, dose.window_start, dose.window_end
        )
        if moved:
            far = rules.far_outside_window(
                administration.given_at,
                window_start=dose.window_start,
                window_end=dose.window_end,
                far_hours=dose.schedule.far_outside_window_hours,
            )
            administration.outside_window_reason = outside_window_reason if far else ""
    return audited_save(administration, user=user, reason=reason)


@transaction.atomic
def administration_void(*, administration: Administration, user, reason: str) -> Administration:
    """Void a wrong record: it stays, with who voided it and why, and the dose is open for
    recording again (overdue if its window has closed, stopped if the participant withdrew).
    A second void of the same record is refused."""
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": _("Give the reason for voiding this record.")})
    administration = _record_in_force(administration)
    dose = ScheduledDose.objects.select_for_update().get(pk=administration.scheduled_dose_id)
    now = timezone.now()
    administration.voided_at = now
    administration.voided_by = user
    administration.void_reason = reason
    audited_save(administration, user=user, reason=reason)
    if rules.is_overdue(now=now, window_end=dose.window_end):
        dose.status = DoseStatus.OVERDUE
    elif dose.participant.withdrawals.exists():
        dose.status = DoseStatus.STOPPED
    else:
        dose.status = DoseStatus.SCHEDULED
    audited_save(dose, user=user, reason=_("Record voided: %(reason)s") % {"reason": reason})
    if dose.status == DoseStatus.SCHEDULED:
        # The reminders the record cancelled, where they still lie ahead.
        Reminder.objects.filter(
            scheduled_dose=dose, status=ReminderStatus.CANCELLED, due_at__gte=now
        ).update(status=ReminderStatus.PENDING, cancelled_reason="", next_attempt_at=None)
    return administration


def doses_mark_overdue(*, now: datetime | None = None) -> int:
    """Doses with no record by the end of their window become overdue. Idempotent: each
    dose is re-read under the lock and changed only if it is still merely scheduled."""
    now = now or timezone.now()
    marked = 0
    candidates = ScheduledDose.objects.filter(status=DoseStatus.SCHEDULED, window_end__lt=now)
    for pk in candidates.values_list("pk", flat=True):
        with transaction.atomic():
            dose = (
                ScheduledDose.objects.select_for_update()
                .filter(pk=pk, status=DoseStatus.SCHEDULED)
                .first()
            )
            if dose is None:
                continue
            dose.status = DoseStatus.OVERDUE
            audited_save(dose, reason=_("No record by the end of the window"))
            marked += 1
    return marked


@transaction.atomic
def participant_reminders_cancel(*, participant: Participant, reason: str) -> int:
    """Withdrawal: every pending reminder of the participant is cancelled, and doses not yet
    past their window are stopped. Returns the number of reminders cancelled. Idempotent."""
    now = timezone.now()
    for dose in ScheduledDose.objects.select_for_update().filter(
        participant=participant, status=DoseStatus.SCHEDULED, window_end__gte=now
    ):
        dose.status = DoseStatus.STOPPED
        audited_save(dose, reason=reason or _("Participant withdrew"))
    return _cancel_pending(Reminder.objects.filter(participant=participant), reason)


# --- The outbox -----------------------------------------------------------------------------


@dataclass
class DispatchResult:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    cancelled: int = 0
    lost_claims: int = 0  # another worker claimed the row first
    recovered: int = 0  # stale claims of dead workers put back
    sent_ids: list[int] = field(default_factory=list)


class NoRecipients(Exception):
    pass


def reminder_link(reminder: Reminder) -> str:
    path = reverse("dosing:dose_record", kwargs={"pk": reminder.scheduled_dose_id})
    return settings.SITE_URL.rstrip("/") + path


def reminder_message(reminder: Reminder) -> tuple[str, str]:
    """Subject and body, in the active language. The participant is their study number only:
    never name or MRN."""
    dose = reminder.scheduled_dose
    site = reminder.participant.site
    context = {
        "reminder": reminder,
        "study_number": reminder.participant.study_number,
        "site": site,
        "product": dose.schedule.localized_product(),
        "route": dose.schedule.localized_route(),
        "dose_number": dose.sequence,
        "dose_count": dose.schedule.dose_count,
        "study_day": dose.study_day,
        "amount": dose.amount_display,
        "due_local": timezone.localtime(dose.due_at, site.zone),
        "window_start": timezone.localtime(dose.window_start, site.zone),
        "window_end": timezone.localtime(dose.window_end, site.zone),
        "link": reminder_link(reminder),
        "overdue": reminder.kind == ReminderKind.OVERDUE,
    }
    # Templates show datetimes in the active zone: the site's, not the server's.
    with timezone.override(site.zone):
        subject = render_to_string("dosing/email/reminder_subject.txt", context).strip()
        body = render_to_string("dosing/email/reminder_body.txt", context)
    return " ".join(subject.split()), body


def _recipients(site, kind: str, cache: dict) -> dict[str, list[str]]:
    """The site's staff who get this kind of reminder, grouped by the language they read."""
    key = (site.pk, kind)
    if key not in cache:
        cache[key] = emails_by_language(
            RoleAssignment.objects.filter(site=site, role__in=RECIPIENT_ROLES[kind]), site=site
        )
    return cache[key]


def _channel():
    return import_string(settings.DOSING_REMINDER_CHANNEL)()


def _recover_stale_claims(now: datetime) -> int:
    """Rows left in `sending` by a worker that died: back to the queue (or failed when out of
    attempts). The one case in which a message may go out twice: the worker had handed it to
    the mail server and died before marking it sent. The row's `interrupted` count says so."""
    stale = Reminder.objects.filter(status=ReminderStatus.SENDING, claimed_at__lt=now - CLAIM_LEASE)
    note = _("Interrupted: the worker stopped while sending; it may have been delivered.")
    failed = stale.filter(attempts__gte=MAX_ATTEMPTS).update(
        status=ReminderStatus.FAILED, interrupted=F("interrupted") + 1, last_error=note
    )
    retried = stale.update(
        status=ReminderStatus.PENDING,
        interrupted=F("interrupted") + 1,
        next_attempt_at=None,
        last_error=note,
    )
    return failed + retried


def _finish(pk: int, token: str, **values) -> int:
    """Move a row this worker claimed; a reclaimed row (another token) is left alone."""
    return Reminder.objects.filter(pk=pk, status=ReminderStatus.SENDING, claimed_by=token).update(
        **values
    )


def reminders_dispatch(
    *, now: datetime | None = None, worker: str = "", limit: int = DISPATCH_BATCH
) -> DispatchResult:
    """Send every due reminder once. Each row is claimed with a conditional UPDATE before it
    is sent, so two workers, a redelivered task or a second beat never send it twice.
    Idempotent: a second call at the same instant sends nothing."""
    now = now or timezone.now()
    result = DispatchResult(recovered=_recover_stale_claims(now))
    channel = _channel()
    recipients_cache: dict = {}
    started = time.monotonic()
    while True:
        batch = list(
            Reminder.objects.filter(status=ReminderStatus.PENDING, due_at__lte=now)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .order_by("due_at", "pk")
            .values_list("pk", flat=True)[:limit]
        )
        for pk in batch:
            _dispatch_one(
                pk, now=now, worker=worker, channel=channel, cache=recipients_cache, result=result
            )
        # Rows handled leave `pending` (or wait for a later retry), so the next batch is new
        # ones. A cycle stops well inside the task's soft time limit; the beat's next tick
        # carries on.
        if len(batch) < limit or time.monotonic() - started > CYCLE_BUDGET_SECONDS:
            return result


def _dispatch_one(pk: int, *, now, worker: str, channel, cache: dict, result) -> None:
    token = f"{worker or 'dispatch'}/{uuid.uuid4().hex[:12]}"
    claimed = Reminder.objects.filter(pk=pk, status=ReminderStatus.PENDING).update(
        status=ReminderStatus.SENDING,
        claimed_by=token,
        claimed_at=timezone.now(),
        attempts=F("attempts") + 1,
    )
    if not claimed:
        result.lost_claims += 1
        return
    reminder = Reminder.objects.select_related("scheduled_dose__schedule", "participant__site").get(
        pk=pk
    )
    dose = reminder.scheduled_dose
    if dose.status not in OPEN_DOSE_STATUSES:
        _finish(pk, token, status=ReminderStatus.CANCELLED, cancelled_reason=_("Dose closed"))
        result.cancelled += 1
        return
    if reminder.kind == ReminderKind.LEAD and now > dose.window_end:
        # After an outage: "due in 1 h" for a closed window would mislead; the overdue
        # alert speaks for this dose now.
        _finish(
            pk,
            token,
            status=ReminderStatus.CANCELLED,
            cancelled_reason=_("The window closed before it could be sent"),
        )
        result.cancelled += 1
        return
    try:
        by_language = _recipients(reminder.participant.site, reminder.kind, cache)
        if not by_language:
            raise NoRecipients(_("No staff with an e-mail address at the site."))
        # One message per language, each reader's own. A failure of a later one sends the
        # earlier ones again at the retry: a reminder twice, never a reminder lost.
        for language, emails in by_language.items():
            with translation.override(language):
                subject, body = reminder_message(reminder)
            channel.send(
                subject=subject,
                body=body,
                recipients=emails,
                headers={"X-Reminder-Id": str(pk), "X-Reminder-Claim": token},
                timeout=SEND_TIMEOUT_SECONDS,
            )
        recipients = [email for emails in by_language.values() for email in emails]
    except Exception as exc:  # noqa: BLE001 - any failure of the outside world retries
        log.warning("reminder %s attempt %s failed: %s", pk, reminder.attempts, exc)
        error = f"{type(exc).__name__}: {exc}"[:2000]
        if reminder.attempts >= MAX_ATTEMPTS:
            _finish(pk, token, status=ReminderStatus.FAILED, last_error=error)
            result.failed += 1
        else:
            _finish(
                pk,
                token,
                status=ReminderStatus.PENDING,
                last_error=error,
                next_attempt_at=timezone.now() + rules.retry_delay(reminder.attempts),
            )
            result.retrying += 1
        return
    _finish(
        pk,
        token,
        status=ReminderStatus.SENT,
        sent_at=timezone.now(),
        recipients=", ".join(recipients),
    )
    result.sent += 1
    result.sent_ids.append(pk)


def reminder_resend(*, reminder: Reminder, user) -> Reminder:
    """A failed reminder goes back to the queue for the next dispatch (within a minute).
    Idempotent: a second click finds it no longer failed and changes nothing."""
    moved = Reminder.objects.filter(pk=reminder.pk, status=ReminderStatus.FAILED).update(
        status=ReminderStatus.PENDING,
        attempts=0,
        next_attempt_at=None,
        last_error=_("Resent by %(user)s") % {"user": user.get_username()},
    )
    if not moved:
        raise ValidationError(_("Only a failed reminder can be sent again."))
    reminder.refresh_from_db()
    return reminder
