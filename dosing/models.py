from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from arms.models import Arm
from enrollment.models import Participant
from trialsite.core.audit import AuditedModel
from trialsite.core.i18n import localized

from .rules import scientific


class WindowKind(models.TextChoices):
    CALENDAR_DAY = "calendar_day", _("The scheduled day only (site time)")
    HOURS = "hours", _("Hours either side of the due time")


class DoseSchedule(AuditedModel):
    """What an arm receives, on which study days, at what times, in what amount."""

    arm = models.ForeignKey(Arm, on_delete=models.CASCADE, related_name="dose_schedules")
    product = models.CharField(_("product"), max_length=200)
    product_zh = models.CharField(_("product (Chinese)"), max_length=200, blank=True)
    route = models.CharField(_("route"), max_length=40)
    route_zh = models.CharField(_("route (Chinese)"), max_length=40, blank=True)
    study_days = models.JSONField(_("study days"), help_text=_("Day 0 is randomization day."))
    times = models.JSONField(_("times of day (site time)"), help_text=_('e.g. ["08:00", "20:00"]'))
    window_kind = models.CharField(_("window"), max_length=20, choices=WindowKind.choices)
    window_hours = models.PositiveSmallIntegerField(_("window (hours either side)"), default=0)
    amount = models.DecimalField(_("amount"), max_digits=20, decimal_places=4)
    amount_unit = models.CharField(_("unit"), max_length=20)
    per_kg = models.BooleanField(_("per kg body weight"), default=False)
    adjustments = models.JSONField(
        _("dose adjustments"),
        default=list,
        blank=True,
        help_text=_("Conditions that change the amount, e.g. by eGFR."),
    )
    notes = models.TextField(_("notes"), blank=True)
    notes_zh = models.TextField(_("notes (Chinese)"), blank=True)
    amount_min_fraction = models.DecimalField(
        _("lowest plausible amount (x planned)"), max_digits=6, decimal_places=3, default="0.5"
    )
    amount_max_fraction = models.DecimalField(
        _("highest plausible amount (x planned)"), max_digits=6, decimal_places=3, default="2"
    )
    far_outside_window_hours = models.PositiveSmallIntegerField(
        _("hours outside the window that need a confirmed reason"), default=24
    )

    class Meta:
        verbose_name = _("dose schedule")

    def __str__(self) -> str:
        return f"{self.arm.code}: {self.product}"

    def localized_product(self) -> str:
        return localized(self.product, self.product_zh)

    def localized_route(self) -> str:
        return localized(self.route, self.route_zh)

    def localized_notes(self) -> str:
        return localized(self.notes, self.notes_zh)

    @property
    def dose_count(self) -> int:
        return len(self.study_days) * len(self.times)


class DoseStatus(models.TextChoices):
    SCHEDULED = "scheduled", _("Scheduled")
    GIVEN = "given", _("Given")
    NOT_GIVEN = "not_given", _("Not given")
    OVERDUE = "overdue", _("Overdue")
    STOPPED = "stopped", _("Stopped (withdrawn)")


# Doses still waiting for a record: the worklist's "due" and "overdue", what withdrawal stops.
OPEN_DOSE_STATUSES = (DoseStatus.SCHEDULED, DoseStatus.OVERDUE)


class ScheduledDose(AuditedModel):
    """One dose a participant is to receive: when, the window it is on time in, how much.

    Created with the allocation (services.participant_dosing_schedule_create); the status
    moves only through services, each change in the audit trail with its reason.
    """

    participant_path = "participant"

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="scheduled_doses"
    )
    schedule = models.ForeignKey(DoseSchedule, on_delete=models.PROTECT, related_name="+")
    sequence = models.PositiveSmallIntegerField(_("dose number"))
    # The instant the plan was computed from: no dose can have been given before it.
    randomized_at = models.DateTimeField(_("randomized at"), null=True, blank=True)
    study_day = models.PositiveSmallIntegerField(_("study day"))
    due_at = models.DateTimeField(_("due at"))
    window_start = models.DateTimeField(_("window opens"))
    window_end = models.DateTimeField(_("window closes"), help_text=_("Last instant on time."))
    planned_amount = models.DecimalField(_("planned amount"), max_digits=20, decimal_places=4)
    amount_unit = models.CharField(_("unit"), max_length=20)
    amount_note = models.CharField(_("amount note"), max_length=200, blank=True)
    status = models.CharField(
        _("status"), max_length=12, choices=DoseStatus.choices, default=DoseStatus.SCHEDULED
    )

    class Meta:
        ordering = ["participant", "due_at", "schedule", "sequence"]
        verbose_name = _("scheduled dose")
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "schedule", "sequence"], name="scheduled_dose_unique"
            ),
            models.CheckConstraint(
                condition=Q(window_start__lte=F("due_at")) & Q(due_at__lte=F("window_end")),
                name="scheduled_dose_due_inside_window",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in DoseStatus]), name="scheduled_dose_status"
            ),
        ]
        indexes = [models.Index(fields=["status", "window_end"], name="dose_status_window_end")]

    def __str__(self) -> str:
        return f"{self.participant} dose {self.sequence} day {self.study_day}"

    @property
    def amount_display(self) -> str:
        return f"{scientific(self.planned_amount)} {self.amount_unit}"


class AdministrationOutcome(models.TextChoices):
    GIVEN = "given", _("Given")
    NOT_GIVEN = "not_given", _("Not given")


class Administration(AuditedModel):
    """What happened to one scheduled dose: given (when, how much, lot) or not (why).

    Never deleted: a wrong record is voided with its reason and stays, and the dose is open
    for recording again. At most one record of a dose is in force (not voided).
    """

    participant_path = "scheduled_dose__participant"

    scheduled_dose = models.ForeignKey(
        ScheduledDose, on_delete=models.PROTECT, related_name="administrations"
    )
    outcome = models.CharField(_("outcome"), max_length=10, choices=AdministrationOutcome.choices)
    given_at = models.DateTimeField(_("given at"), null=True, blank=True)
    amount = models.DecimalField(
        _("amount given"), max_digits=20, decimal_places=4, null=True, blank=True
    )
    amount_unit = models.CharField(_("unit"), max_length=20, blank=True)
    route = models.CharField(_("route"), max_length=40, blank=True)
    lot_number = models.CharField(_("lot or batch number"), max_length=60, blank=True)
    given_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("given by"),
    )
    infusion_reaction = models.BooleanField(_("infusion reaction"), default=False)
    not_given_reason = models.TextField(_("reason not given"), blank=True)
    deviation_hours = models.DecimalField(
        _("hours outside the window"),
        max_digits=8,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("Empty when on time; a value is a protocol deviation."),
    )
    outside_window_reason = models.TextField(
        _("why given so far outside the window"),
        blank=True,
        help_text=_("Confirmed by the recorder when the time is far outside the window."),
    )
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    recorded_at = models.DateTimeField(_("recorded at"), default=timezone.now)
    submission_token = models.UUIDField(unique=True, null=True, blank=True, editable=False)
    voided_at = models.DateTimeField(_("voided at"), null=True, blank=True)
    voided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("voided by"),
    )
    void_reason = models.TextField(_("why voided"), blank=True)

    class Meta:
        verbose_name = _("administration")
        constraints = [
            models.UniqueConstraint(
                fields=["scheduled_dose"],
                condition=Q(voided_at__isnull=True),
                name="one_administration_in_force_per_scheduled_dose",
                violation_error_message=_("This dose is already recorded."),
            ),
            models.CheckConstraint(
                condition=Q(voided_at__isnull=True, void_reason="")
                | Q(voided_at__isnull=False) & ~Q(void_reason=""),
                name="administration_voided_has_reason",
            ),
            models.CheckConstraint(
                condition=(
                    Q(outcome="given", given_at__isnull=False, amount__isnull=False)
                    & ~Q(lot_number="")
                    | Q(outcome="not_given", given_at__isnull=True, deviation_hours__isnull=True)
                    & ~Q(not_given_reason="")
                ),
                name="administration_given_has_time_amount_lot_else_reason",
            ),
            models.CheckConstraint(
                condition=Q(deviation_hours__isnull=True) | Q(deviation_hours__gt=0),
                name="administration_deviation_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scheduled_dose}: {self.outcome}"

    @property
    def is_deviation(self) -> bool:
        return self.deviation_hours is not None

    @property
    def is_void(self) -> bool:
        return self.voided_at is not None


class ReminderKind(models.TextChoices):
    LEAD = "lead", _("Before the dose")
    OVERDUE = "overdue", _("Overdue alert")


class ReminderStatus(models.TextChoices):
    PENDING = "pending", _("Upcoming")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")


class Reminder(models.Model):
    """One message to send at `due_at`: the outbox row is the schedule, the broker only says
    "go and look". Delivery state, not trial data, so deliberately not audited: every move
    of `status` is a conditional UPDATE (`filter(pk=, status=OLD).update(status=NEW)`) whose
    row count says whether this worker won the claim (STYLE.md, Background work).
    """

    scheduled_dose = models.ForeignKey(
        ScheduledDose, on_delete=models.CASCADE, related_name="reminders"
    )
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(_("kind"), max_length=10, choices=ReminderKind.choices)
    lead_hours = models.PositiveSmallIntegerField(
        _("hours before the dose"), default=0, help_text=_("0 for an overdue alert.")
    )
    due_at = models.DateTimeField(_("send at"))
    status = models.CharField(
        _("status"), max_length=10, choices=ReminderStatus.choices, default=ReminderStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    claimed_by = models.CharField(_("claimed by"), max_length=200, blank=True)
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    recipients = models.TextField(_("sent to"), blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    interrupted = models.PositiveSmallIntegerField(
        _("interrupted attempts"),
        default=0,
        help_text=_("Attempts whose worker stopped mid-send: the message may have gone twice."),
    )
    cancelled_reason = models.CharField(_("why cancelled"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["due_at", "pk"]
        verbose_name = _("reminder")
        constraints = [
            models.UniqueConstraint(
                fields=["scheduled_dose", "kind", "lead_hours"], name="one_reminder_per_dose_lead"
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in ReminderStatus]), name="reminder_status"
            ),
            models.CheckConstraint(
                condition=~Q(status="sent") | Q(sent_at__isnull=False),
                name="reminder_sent_has_time",
            ),
        ]
        indexes = [
            # The dispatcher reads status='pending' AND due_at <= now: a range on this index,
            # so a cycle's cost follows the due rows, not the size of the table.
            models.Index(fields=["status", "due_at"], name="reminder_status_due"),
        ]

    def __str__(self) -> str:
        return f"reminder {self.pk} ({self.kind} {self.lead_hours}h) {self.status}"
