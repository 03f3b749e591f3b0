from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from enrollment.models import Participant
from trialsite.core.audit import AuditedModel
from trialsite.core.i18n import localized
from trialsite.core.models import Protocol
from trialsite.core.signatures import SignatureStatus, SignedRecord

from . import rules


class VisitDefinition(AuditedModel):
    protocol = models.ForeignKey(Protocol, on_delete=models.CASCADE, related_name="visits")
    code = models.CharField(_("code"), max_length=10)
    name = models.CharField(_("name"), max_length=100)
    name_zh = models.CharField(_("name (Chinese)"), max_length=100, blank=True)
    study_day = models.PositiveSmallIntegerField(_("study day"))
    window_days = models.PositiveSmallIntegerField(_("window (days either side)"), default=0)

    class Meta:
        ordering = ["protocol", "study_day"]
        verbose_name = _("visit definition")
        constraints = [
            models.UniqueConstraint(fields=["protocol", "code"], name="visit_code_unique")
        ]

    def __str__(self) -> str:
        return f"{self.code} (day {self.study_day})"

    def localized_name(self) -> str:
        return localized(self.name, self.name_zh)


# --- Visits ---


class VisitStatus(models.TextChoices):
    DUE = "due", _("Due")
    DONE = "done", _("Done")
    DONE_OUT_OF_WINDOW = "done_late", _("Done out of window")
    MISSED = "missed", _("Missed")
    NOT_REQUIRED = "not_required", _("Not required (off study)")


# Visits still waiting for a record: what the beat marks missed and what end of study stops.
OPEN_VISIT_STATUSES = (VisitStatus.DUE,)


class ScheduledVisit(AuditedModel):
    """One follow-up visit a participant is to have: its day and window in site dates.

    Created with the allocation; the status moves only through services, each change in the
    audit trail with its reason.
    """

    participant_path = "participant"

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="scheduled_visits"
    )
    definition = models.ForeignKey(VisitDefinition, on_delete=models.PROTECT, related_name="+")
    study_day = models.PositiveSmallIntegerField(_("study day"))
    due_on = models.DateField(_("due on"))
    window_start = models.DateField(_("window opens"))
    window_end = models.DateField(_("window closes"), help_text=_("Last day on time."))
    status = models.CharField(
        _("status"), max_length=12, choices=VisitStatus.choices, default=VisitStatus.DUE
    )
    days_outside_window = models.SmallIntegerField(
        _("days outside the window"),
        null=True,
        blank=True,
        help_text=_("Negative when early, positive when late; empty when on time."),
    )
    stopped_reason = models.CharField(_("why not required"), max_length=200, blank=True)

    class Meta:
        ordering = ["participant", "study_day"]
        verbose_name = _("scheduled visit")
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "definition"], name="scheduled_visit_unique"
            ),
            models.CheckConstraint(
                condition=Q(window_start__lte=F("due_on")) & Q(due_on__lte=F("window_end")),
                name="scheduled_visit_due_inside_window",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in VisitStatus]),
                name="scheduled_visit_status",
            ),
            models.CheckConstraint(
                condition=Q(status="done_late", days_outside_window__isnull=False)
                & ~Q(days_outside_window=0)
                | ~Q(status="done_late") & Q(days_outside_window__isnull=True),
                name="scheduled_visit_out_of_window_has_days",
            ),
            models.CheckConstraint(
                condition=Q(status="not_required") & ~Q(stopped_reason="")
                | ~Q(status="not_required") & Q(stopped_reason=""),
                name="scheduled_visit_not_required_has_reason",
            ),
        ]
        indexes = [models.Index(fields=["status", "window_end"], name="visit_status_window_end")]

    def __str__(self) -> str:
        return f"{self.participant} {self.definition.code}"

    @property
    def days_early(self) -> int:
        return max(0, -(self.days_outside_window or 0))

    @property
    def days_late(self) -> int:
        return max(0, self.days_outside_window or 0)


class RespiratorySupport(models.TextChoices):
    NONE = "none", _("None")
    OXYGEN = "oxygen", _("Conventional oxygen (mask or nasal prongs)")
    HIGH_FLOW = "high_flow", _("High-flow nasal oxygen")
    NON_INVASIVE = "niv", _("Non-invasive ventilation")
    INVASIVE = "invasive", _("Invasive mechanical ventilation")
    ECMO = "ecmo", _("ECMO")


class ChestCtChange(models.TextChoices):
    IMPROVED = "improved", _("Improved")
    STABLE = "stable", _("Stable")
    WORSE = "worse", _("Worse")


class VitalStatus(models.TextChoices):
    ALIVE = "alive", _("Alive")
    DEAD = "dead", _("Dead")


def _not_done(label):
    return models.BooleanField(label, default=False)


def _not_done_reason(label):
    return models.CharField(label, max_length=200, blank=True)


MEASURED_FIELDS = rules.MEASURED_FIELDS


# Choices are text ("" when blank); measurements are numbers (NULL when blank).
_TEXT_MEASURED = ("respiratory_support", "chest_ct")


def _measured_constraints(fields: tuple[str, ...]) -> list[models.CheckConstraint]:
    # "Not done" is a record of its own, not a blank: a value and "not done" never together,
    # and "not done" always with its reason.
    def blank(name):
        return Q(**{name: ""}) if name in _TEXT_MEASURED else Q(**{f"{name}__isnull": True})

    return [
        models.CheckConstraint(
            condition=Q(**{f"{name}_not_done": False, f"{name}_not_done_reason": ""})
            | Q(**{f"{name}_not_done": True}) & blank(name) & ~Q(**{f"{name}_not_done_reason": ""}),
            name=f"visit_record_{name}_not_done_has_reason_no_value",
        )
        for name in fields
    ]


class VisitRecord(AuditedModel):
    """What was found at one scheduled visit. Each measurement is a value, or "not done" with
    its reason, or blank (not yet known)."""

    participant_path = "scheduled_visit__participant"

    scheduled_visit = models.OneToOneField(
        ScheduledVisit, on_delete=models.PROTECT, related_name="record"
    )
    visit_date = models.DateField(_("visit date"))

    who_score = models.PositiveSmallIntegerField(
        _("WHO clinical progression scale"),
        null=True,
        blank=True,
        validators=[MinValueValidator(rules.WHO_MIN), MaxValueValidator(rules.WHO_MAX)],
    )
    who_score_not_done = _not_done(_("WHO score not done"))
    who_score_not_done_reason = _not_done_reason(_("why WHO score was not done"))

    spo2 = models.PositiveSmallIntegerField(
        _("SpO2 (%)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(rules.SPO2_MIN), MaxValueValidator(rules.SPO2_MAX)],
    )
    spo2_not_done = _not_done(_("SpO2 not done"))
    spo2_not_done_reason = _not_done_reason(_("why SpO2 was not done"))

    respiratory_support = models.CharField(
        _("respiratory support"),
        max_length=12,
        choices=RespiratorySupport.choices,
        blank=True,
    )
    respiratory_support_not_done = _not_done(_("respiratory support not done"))
    respiratory_support_not_done_reason = _not_done_reason(
        _("why respiratory support was not done")
    )

    pao2 = models.DecimalField(
        _("PaO2 (mmHg)"),
        max_digits=5,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(rules.PAO2_MIN), MaxValueValidator(rules.PAO2_MAX)],
    )
    pao2_not_done = _not_done(_("PaO2 not done"))
    pao2_not_done_reason = _not_done_reason(_("why PaO2 was not done"))

    # Stored as a fraction (0.21-1.00) whichever notation was typed.
    fio2 = models.DecimalField(
        _("FiO2 (fraction)"),
        max_digits=3,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(rules.FIO2_MIN), MaxValueValidator(rules.FIO2_MAX)],
    )
    fio2_not_done = _not_done(_("FiO2 not done"))
    fio2_not_done_reason = _not_done_reason(_("why FiO2 was not done"))

    lymphocytes = models.DecimalField(
        _("lymphocyte count (×10⁹/L)"),
        max_digits=6,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    lymphocytes_not_done = _not_done(_("lymphocyte count not done"))
    lymphocytes_not_done_reason = _not_done_reason(_("why lymphocyte count was not done"))

    crp = models.DecimalField(
        _("CRP (mg/L)"),
        max_digits=7,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    crp_not_done = _not_done(_("CRP not done"))
    crp_not_done_reason = _not_done_reason(_("why CRP was not done"))

    il6 = models.DecimalField(
        _("IL-6 (pg/mL)"),
        max_digits=8,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    il6_not_done = _not_done(_("IL-6 not done"))
    il6_not_done_reason = _not_done_reason(_("why IL-6 was not done"))

    chest_ct = models.CharField(
        _("chest CT change"), max_length=10, choices=ChestCtChange.choices, blank=True
    )
    chest_ct_not_done = _not_done(_("chest CT not done"))
    chest_ct_not_done_reason = _not_done_reason(_("why chest CT was not done"))

    discharged_on = models.DateField(
        _("hospital discharge date"), null=True, blank=True, help_text=_("Empty while in hospital.")
    )
    vital_status = models.CharField(_("vital status"), max_length=5, choices=VitalStatus.choices)
    date_of_death = models.DateField(_("date of death"), null=True, blank=True)

    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    recorded_at = models.DateTimeField(_("recorded at"), default=timezone.now)

    class Meta:
        verbose_name = _("visit record")
        constraints = [
            *_measured_constraints(MEASURED_FIELDS),
            models.CheckConstraint(
                condition=Q(who_score__isnull=True) | Q(who_score__gte=0, who_score__lte=10),
                name="visit_record_who_score_range",
            ),
            models.CheckConstraint(
                condition=Q(vital_status="dead", date_of_death__isnull=False)
                | Q(vital_status="alive", date_of_death__isnull=True),
                name="visit_record_death_has_date",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scheduled_visit}: recorded {self.visit_date}"

    @property
    def pf_ratio(self):
        if self.pao2 is None or self.fio2 is None:
            return None
        return rules.pf_ratio(self.pao2, self.fio2)


class VisitReminderStatus(models.TextChoices):
    PENDING = "pending", _("Upcoming")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")


class VisitReminder(models.Model):
    """The e-mail to the site's coordinators the day before a visit's window opens. A row, so
    the broker is only the transport; delivery state, not trial data, so not audited: every
    move of `status` is a conditional UPDATE that says whether this worker won the claim."""

    scheduled_visit = models.OneToOneField(
        ScheduledVisit, on_delete=models.CASCADE, related_name="reminder"
    )
    due_at = models.DateTimeField(_("send at"))
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=VisitReminderStatus.choices,
        default=VisitReminderStatus.PENDING,
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    recipients = models.TextField(_("sent to"), blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    cancelled_reason = models.CharField(_("why cancelled"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["due_at", "pk"]
        verbose_name = _("visit reminder")
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in VisitReminderStatus]),
                name="visit_reminder_status",
            ),
            models.CheckConstraint(
                condition=~Q(status="sent") | Q(sent_at__isnull=False),
                name="visit_reminder_sent_has_time",
            ),
        ]
        indexes = [models.Index(fields=["status", "due_at"], name="visit_reminder_status_due")]

    def __str__(self) -> str:
        return f"visit reminder {self.pk} {self.status}"


# --- Adverse events and end of study ---


class CtcaeGrade(models.IntegerChoices):
    MILD = 1, _("1 – Mild")
    MODERATE = 2, _("2 – Moderate")
    SEVERE = 3, _("3 – Severe or medically significant")
    LIFE_THREATENING = 4, _("4 – Life-threatening")
    DEATH = 5, _("5 – Death related to the event")


class ActionTaken(models.TextChoices):
    NONE = "none", _("None: study treatment not changed")
    INTERRUPTED = "interrupted", _("Study treatment interrupted")
    REDUCED = "reduced", _("Dose reduced")
    WITHDRAWN = "withdrawn", _("Study treatment withdrawn")
    NOT_APPLICABLE = "not_applicable", _("Not applicable (no study treatment)")


class AeOutcome(models.TextChoices):
    RECOVERING = "recovering", _("Recovering or resolving")
    NOT_RECOVERED = "not_recovered", _("Not recovered, not resolved")
    RECOVERED = "recovered", _("Recovered or resolved")
    SEQUELAE = "sequelae", _("Recovered with sequelae")
    FATAL = "fatal", _("Fatal")
    UNKNOWN = "unknown", _("Unknown")


class AdverseEvent(AuditedModel):
    """One adverse event of a participant, from randomization to day 28. Never deleted: a
    change (its end, its outcome) is an audited update with its reason.

    A serious event starts the reporting clock (`sae_clock_started_at`): the site's
    investigators are alerted at once and again 24 hours later unless it is reported."""

    participant_path = "participant"

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="adverse_events"
    )
    term = models.CharField(_("term"), max_length=200)
    onset_date = models.DateField(_("onset"))
    end_date = models.DateField(_("end"), null=True, blank=True, help_text=_("Empty: ongoing."))
    grade = models.PositiveSmallIntegerField(_("CTCAE grade"), choices=CtcaeGrade.choices)
    death_date = models.DateField(_("date of death"), null=True, blank=True)
    serious = models.BooleanField(_("serious"), default=False)
    criterion_death = models.BooleanField(_("results in death"), default=False)
    criterion_life_threatening = models.BooleanField(_("life-threatening"), default=False)
    criterion_hospitalisation = models.BooleanField(
        _("requires or prolongs hospitalisation"), default=False
    )
    criterion_disability = models.BooleanField(_("disability or incapacity"), default=False)
    criterion_congenital_anomaly = models.BooleanField(_("congenital anomaly"), default=False)
    criterion_important_medical_event = models.BooleanField(
        _("important medical event"), default=False
    )
    action_taken = models.CharField(_("action taken"), max_length=20, choices=ActionTaken.choices)
    outcome = models.CharField(_("outcome"), max_length=20, choices=AeOutcome.choices)
    # The infusion reaction recorded in dosing that this event reports, when it does.
    administration = models.ForeignKey(
        "dosing.Administration",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("reported from the dose record"),
    )
    sae_clock_started_at = models.DateTimeField(
        _("recorded serious at"), null=True, blank=True, editable=False
    )
    reported_on = models.DateField(_("reported to sponsor and ethics on"), null=True, blank=True)
    reported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    recorded_at = models.DateTimeField(_("recorded at"), default=timezone.now)
    submission_token = models.UUIDField(unique=True, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["participant", "onset_date", "pk"]
        verbose_name = _("adverse event")
        constraints = [
            models.CheckConstraint(
                condition=Q(end_date__isnull=True) | Q(end_date__gte=F("onset_date")),
                name="adverse_event_ends_after_onset",
            ),
            models.CheckConstraint(
                condition=Q(grade__gte=1, grade__lte=5), name="adverse_event_grade_1_to_5"
            ),
            models.CheckConstraint(
                condition=Q(grade=5, death_date__isnull=False)
                | ~Q(grade=5) & Q(death_date__isnull=True),
                name="adverse_event_grade_5_iff_date_of_death",
            ),
            models.CheckConstraint(
                condition=Q(serious=False)
                | Q(criterion_death=True)
                | Q(criterion_life_threatening=True)
                | Q(criterion_hospitalisation=True)
                | Q(criterion_disability=True)
                | Q(criterion_congenital_anomaly=True)
                | Q(criterion_important_medical_event=True),
                name="adverse_event_serious_has_a_criterion",
            ),
            models.CheckConstraint(
                condition=Q(serious=False, sae_clock_started_at__isnull=True)
                | Q(serious=True, sae_clock_started_at__isnull=False),
                name="adverse_event_serious_iff_clock",
            ),
            models.CheckConstraint(
                condition=Q(reported_on__isnull=True) | Q(serious=True),
                name="adverse_event_only_serious_reported",
            ),
        ]
        indexes = [
            models.Index(fields=["participant", "end_date"], name="adverse_event_open"),
            models.Index(fields=["serious", "reported_on"], name="adverse_event_sae_open"),
        ]

    def __str__(self) -> str:
        return f"{self.participant} AE {self.pk}: {self.term}"

    @property
    def criteria(self) -> set[str]:
        return {code for code, _label in rules.SERIOUSNESS_CRITERIA if self.criterion(code)}

    def criterion(self, code: str) -> bool:
        return getattr(self, f"criterion_{code}")

    @property
    def criteria_labels(self) -> list[str]:
        return [str(label) for code, label in rules.SERIOUSNESS_CRITERIA if self.criterion(code)]

    @property
    def report_open(self) -> bool:
        return self.serious and self.reported_on is None

    @property
    def report_due_at(self):
        if self.sae_clock_started_at is None:
            return None
        return rules.sae_report_due(self.sae_clock_started_at)


class Relatedness(models.TextChoices):
    NOT_RELATED = "not_related", _("Not related")
    UNLIKELY = "unlikely", _("Unlikely")
    POSSIBLE = "possible", _("Possible")
    PROBABLE = "probable", _("Probable")
    DEFINITE = "definite", _("Definite")


class CausalityAssessment(SignedRecord, AuditedModel):
    """The investigator's assessment of one adverse event, signed electronically
    (re-authenticated, with the printed name, the time and the meaning), bound to the
    assessment and the event as assessed by their hash (`rules.causality_content`)."""

    participant_path = "adverse_event__participant"

    adverse_event = models.OneToOneField(
        AdverseEvent, on_delete=models.PROTECT, related_name="causality"
    )
    expected = models.BooleanField(
        _("expected"), help_text=_("Listed in the reference safety information.")
    )
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    printed_name = models.CharField(_("printed name"), max_length=200)
    signed_at = models.DateTimeField(_("signed at"))
    meaning = models.CharField(_("meaning"), max_length=200)

    class Meta:
        verbose_name = _("causality assessment")
        constraints = [
            *SignedRecord.Meta.constraints,
            models.CheckConstraint(condition=~Q(printed_name=""), name="causality_printed_name"),
            models.CheckConstraint(condition=~Q(meaning=""), name="causality_meaning"),
        ]

    def __str__(self) -> str:
        return f"causality of AE {self.adverse_event_id}"

    def signed_content(self) -> dict:
        return rules.causality_content(self, self.adverse_event, self.relatedness.all())


class InterventionRelatedness(AuditedModel):
    """How related the event is to one intervention: one infusion (its scheduled dose), or
    a whole course (its schedule, no dose)."""

    participant_path = "assessment__adverse_event__participant"

    assessment = models.ForeignKey(
        CausalityAssessment, on_delete=models.PROTECT, related_name="relatedness"
    )
    schedule = models.ForeignKey("dosing.DoseSchedule", on_delete=models.PROTECT, related_name="+")
    scheduled_dose = models.ForeignKey(
        "dosing.ScheduledDose", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    label = models.CharField(_("intervention"), max_length=200)
    relatedness = models.CharField(_("relatedness"), max_length=12, choices=Relatedness.choices)

    class Meta:
        ordering = ["assessment", "pk"]
        verbose_name = _("relatedness to an intervention")
        constraints = [
            models.UniqueConstraint(
                fields=["assessment", "scheduled_dose"],
                condition=Q(scheduled_dose__isnull=False),
                name="relatedness_once_per_infusion",
            ),
            models.UniqueConstraint(
                fields=["assessment", "schedule"],
                condition=Q(scheduled_dose__isnull=True),
                name="relatedness_once_per_course",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label}: {self.relatedness}"


class AlertKind(models.TextChoices):
    IMMEDIATE = "immediate", _("Serious adverse event recorded")
    FOLLOW_UP = "follow_up", _("Not reported after 24 hours")


class AlertStatus(models.TextChoices):
    PENDING = "pending", _("Upcoming")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")


class SaeAlert(models.Model):
    """One message about a serious adverse event to the site's investigators: at once, and
    24 hours later unless it was reported. A row, so the broker is only the transport;
    delivery state, not trial data (not audited): every move of `status` is a conditional
    UPDATE whose row count says whether this worker won the claim."""

    adverse_event = models.ForeignKey(AdverseEvent, on_delete=models.PROTECT, related_name="alerts")
    kind = models.CharField(_("kind"), max_length=10, choices=AlertKind.choices)
    due_at = models.DateTimeField(_("send at"))
    status = models.CharField(
        _("status"), max_length=10, choices=AlertStatus.choices, default=AlertStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    claimed_by = models.CharField(_("claimed by"), max_length=200, blank=True)
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    recipients = models.TextField(_("sent to"), blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    cancelled_reason = models.CharField(_("why cancelled"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["due_at", "pk"]
        verbose_name = _("SAE alert")
        constraints = [
            models.UniqueConstraint(
                fields=["adverse_event", "kind"], name="one_sae_alert_per_kind"
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in AlertStatus]), name="sae_alert_status"
            ),
            models.CheckConstraint(
                condition=~Q(status="sent") | Q(sent_at__isnull=False),
                name="sae_alert_sent_has_time",
            ),
        ]
        indexes = [models.Index(fields=["status", "due_at"], name="sae_alert_status_due")]

    def __str__(self) -> str:
        return f"SAE alert {self.pk} ({self.kind}) {self.status}"


class EndReason(models.TextChoices):
    COMPLETED = "completed", _("Completed day 28")
    DIED = "died", _("Died")
    WITHDREW = "withdrew", _("Withdrew consent")
    LOST = "lost", _("Lost to follow-up")
    INVESTIGATOR = "investigator", _("Investigator decision")


class EndOfStudy(SignedRecord, AuditedModel):
    """How and when a participant's study ended. What was recorded before stays; what was
    planned after (visits, doses, reminders) stops. An investigator of the site signs it
    (re-authenticated, printed name, time, meaning), bound to its values by their hash
    (`rules.end_of_study_content`); until then it awaits the signature."""

    participant_path = "participant"

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="ends_of_study"
    )
    reason = models.CharField(_("why the study ended"), max_length=12, choices=EndReason.choices)
    ended_on = models.DateField(_("date"), help_text=_("For a death, the date of death."))
    details = models.TextField(_("details"), blank=True)
    adverse_event = models.ForeignKey(
        AdverseEvent,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("fatal adverse event"),
    )
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    recorded_at = models.DateTimeField(_("recorded at"), default=timezone.now)
    signer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    printed_name = models.CharField(_("printed name"), max_length=200, blank=True, default="")
    signed_at = models.DateTimeField(_("signed at"), null=True, blank=True)
    meaning = models.CharField(_("meaning"), max_length=200, blank=True, default="")

    class Meta:
        verbose_name = _("end of study")
        verbose_name_plural = _("ends of study")
        constraints = [
            *SignedRecord.Meta.constraints,
            models.CheckConstraint(
                condition=Q(
                    signature_status=SignatureStatus.UNSIGNED,
                    signer__isnull=True,
                    printed_name="",
                    signed_at__isnull=True,
                    meaning="",
                )
                | (
                    ~Q(signature_status=SignatureStatus.UNSIGNED)
                    & Q(signer__isnull=False, signed_at__isnull=False)
                    & ~Q(printed_name="")
                    & ~Q(meaning="")
                ),
                name="end_of_study_signature_whole",
            ),
            models.UniqueConstraint(
                fields=["participant"],
                name="one_end_of_study_per_participant",
                violation_error_message=_("The study of this participant has already ended."),
            ),
            models.CheckConstraint(
                condition=Q(reason__in=[r.value for r in EndReason]), name="end_of_study_reason"
            ),
            models.CheckConstraint(
                condition=Q(adverse_event__isnull=True) | Q(reason="died"),
                name="end_of_study_fatal_event_only_for_death",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.participant}: {self.reason} {self.ended_on}"

    def signed_content(self) -> dict:
        return rules.end_of_study_content(self)
