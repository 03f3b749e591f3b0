"""Enrollment: the protocol's criteria, the participant registry, screening, consent.

Identifiers (name, MRN, contact, the names of an LAR or witness) are encrypted at rest and
never leave the participant page; everywhere else a participant is their study number.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from trialsite.core.audit import AuditedModel
from trialsite.core.i18n import localized
from trialsite.core.models import Protocol, Site
from trialsite.core.signatures import SignedRecord

from . import rules
from .crypto import EncryptedTextField


class CriterionKind(models.TextChoices):
    INCLUSION = "inclusion", _("Inclusion")
    EXCLUSION = "exclusion", _("Exclusion")


class EligibilityCriterion(AuditedModel):
    """One criterion of the protocol, decided by a named rule with its parameters."""

    protocol = models.ForeignKey(Protocol, on_delete=models.CASCADE, related_name="criteria")
    code = models.CharField(_("code"), max_length=10)
    kind = models.CharField(_("kind"), max_length=10, choices=CriterionKind.choices)
    text = models.TextField(_("text"))
    text_zh = models.TextField(_("text (Chinese)"), blank=True)
    rule = models.CharField(
        _("rule"), max_length=40, blank=True, help_text=_("How the criterion is decided.")
    )
    params = models.JSONField(_("rule parameters"), default=dict, blank=True)
    asked_for_sex = models.JSONField(
        _("asked only for"),
        default=list,
        blank=True,
        help_text=_("Sexes the question applies to; empty means everyone."),
    )
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["protocol", "order"]
        verbose_name = _("eligibility criterion")
        verbose_name_plural = _("eligibility criteria")
        constraints = [
            models.UniqueConstraint(fields=["protocol", "code"], name="criterion_code_unique")
        ]

    def __str__(self) -> str:
        return f"{self.code}: {self.text[:60]}"

    def localized_text(self) -> str:
        return localized(self.text, self.text_zh)


class Sex(models.TextChoices):
    # The codes are those a protocol's `asked_for_sex` names.
    FEMALE = "F", _("Female")
    MALE = "M", _("Male")


class StudyNumberCounter(models.Model):
    """The last study number given at a site. Locked (select_for_update) by registration, in
    the same transaction as the participant row, so numbers are gap-free and never reused.
    A counter, not trial data: not audited."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="+")
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.site_id}: {self.last_number}"


class Participant(AuditedModel):
    participant_path = ""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="participants")
    study_number = models.CharField(_("study number"), max_length=20, unique=True, editable=False)
    sequence = models.PositiveIntegerField(_("number at the site"), editable=False)
    name = EncryptedTextField(_("name"))
    mrn = EncryptedTextField(_("hospital record number (MRN)"))
    mrn_hash = models.CharField(max_length=64, editable=False)
    contact = EncryptedTextField(_("contact"), blank=True)
    sex = models.CharField(_("sex"), max_length=1, choices=Sex.choices)
    date_of_birth = models.DateField(_("date of birth"))
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    registered_at = models.DateTimeField(_("registered at"), default=timezone.now)

    class Meta:
        ordering = ["site", "sequence"]
        verbose_name = _("participant")
        constraints = [
            models.UniqueConstraint(
                fields=["site", "mrn_hash"],
                name="participant_mrn_unique_per_site",
                violation_error_message=_("A patient with this MRN is already registered."),
            ),
            models.UniqueConstraint(
                fields=["site", "sequence"], name="participant_sequence_unique_per_site"
            ),
            models.CheckConstraint(condition=Q(sequence__gte=1), name="participant_sequence_gte_1"),
        ]

    def __str__(self) -> str:
        # Never the name: this string reaches logs, the audit trail and the admin.
        return self.study_number


class Severity(models.TextChoices):
    MODERATE = "moderate", _("Moderate")
    SEVERE = "severe", _("Severe")
    CRITICAL = "critical", _("Critical")


class Decision(models.TextChoices):
    ELIGIBLE = "eligible", _("Eligible")
    INELIGIBLE = "ineligible", _("Ineligible")
    INCOMPLETE = "incomplete", _("Incomplete")


class Screening(AuditedModel):
    """One screening of a participant against the protocol's criteria. Re-screening adds a
    new row; the old ones stay in the screening log."""

    participant_path = "participant"

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="screenings"
    )
    protocol = models.ForeignKey(Protocol, on_delete=models.PROTECT, related_name="+")
    screened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    screening_date = models.DateField(_("date of screening"))
    recorded_at = models.DateTimeField(_("recorded at"), default=timezone.now)
    answers = models.JSONField(_("answers"), default=dict)
    decision = models.CharField(_("decision"), max_length=12, choices=Decision.choices)
    results = models.JSONField(
        _("criterion by criterion"),
        default=list,
        help_text=_("Each criterion's code, outcome and reason, in protocol order."),
    )
    failures = models.JSONField(
        _("failure reasons"),
        default=dict,
        blank=True,
        help_text=_("Failed criteria: code -> reason. Filtered by code in the screening log."),
    )
    submission_token = models.UUIDField(unique=True, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-screening_date", "-recorded_at"]
        get_latest_by = ["screening_date", "recorded_at"]
        verbose_name = _("screening")
        constraints = [
            models.CheckConstraint(
                condition=Q(decision__in=[d.value for d in Decision]),
                name="screening_decision_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.participant} {self.screening_date}: {self.decision}"


CONSENT_DOCUMENT_MAX_BYTES = 20 * 1024 * 1024


def validate_pdf(document) -> None:
    """A consent document is a PDF: by its name and by its first bytes, and not huge."""
    if not document.name.lower().endswith(".pdf"):
        raise ValidationError(_("Upload the approved consent document as a PDF file."))
    if document.size > CONSENT_DOCUMENT_MAX_BYTES:
        raise ValidationError(_("The file is larger than 20 MB."))
    position = document.tell() if hasattr(document, "tell") else 0
    document.seek(0)
    header = document.read(5)
    document.seek(position)
    if header != b"%PDF-":
        raise ValidationError(_("This file is not a PDF."))


class ConsentVersion(AuditedModel):
    """An approved consent document. The current one for a language is the one with the
    latest effective date that has arrived; only it may be used for new consents."""

    protocol = models.ForeignKey(Protocol, on_delete=models.PROTECT, related_name="+")
    version = models.CharField(_("version"), max_length=20)
    language = models.CharField(_("language"), max_length=10, choices=settings.LANGUAGES)
    irb_approval_date = models.DateField(_("IRB approval date"))
    effective_date = models.DateField(_("effective date"))
    document = models.FileField(
        _("document (PDF)"), upload_to="consent/", blank=True, validators=[validate_pdf]
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["language", "-effective_date"]
        verbose_name = _("consent version")
        constraints = [
            models.UniqueConstraint(
                fields=["protocol", "version", "language"],
                name="consent_version_unique",
                violation_error_message=_("This version already exists in this language."),
            ),
            models.CheckConstraint(
                condition=Q(effective_date__gte=F("irb_approval_date")),
                name="consent_version_effective_after_approval",
                violation_error_message=_(
                    "The effective date cannot be before the IRB approval date."
                ),
            ),
        ]

    def __str__(self) -> str:
        # The language by name, in the page's language: a coordinator picks the version in the
        # language the patient reads.
        return _("v%(version)s (%(language)s)") % {
            "version": self.version,
            "language": self.get_language_display(),
        }


class Signer(models.TextChoices):
    PARTICIPANT = "participant", _("The participant")
    LAR = "lar", _("Legally authorised representative")


class Consent(AuditedModel):
    participant_path = "participant"

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="consents")
    version = models.ForeignKey(ConsentVersion, on_delete=models.PROTECT, related_name="consents")
    consented_at = models.DateTimeField(_("date and time of consent"))
    signer = models.CharField(_("signed by"), max_length=12, choices=Signer.choices)
    lar_name = EncryptedTextField(_("name of the representative"), blank=True)
    lar_relationship = models.CharField(
        _("relationship to the participant"), max_length=100, blank=True
    )
    witness_needed = models.BooleanField(
        _("impartial witness needed"),
        default=False,
        help_text=_("The signer cannot read the document: a witness attends the whole process."),
    )
    witness_name = EncryptedTextField(_("name of the impartial witness"), blank=True)
    obtained_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    copy_given = models.BooleanField(_("copy given to the signer"), default=False)
    recorded_at = models.DateTimeField(_("recorded at"), default=timezone.now)
    submission_token = models.UUIDField(unique=True, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-consented_at"]
        get_latest_by = "consented_at"
        verbose_name = _("consent")
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(signer="participant", lar_name="", lar_relationship="")
                    | (Q(signer="lar") & ~Q(lar_name="") & ~Q(lar_relationship=""))
                ),
                name="consent_lar_details_iff_lar",
                violation_error_message=_(
                    "A representative's name and relationship are recorded when, and only "
                    "when, a representative signs."
                ),
            ),
            models.CheckConstraint(
                condition=Q(witness_needed=False) | ~Q(witness_name=""),
                name="consent_witness_named_when_needed",
                violation_error_message=_("Name the impartial witness."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.participant} consent {self.version}"


class ReconsentStatus(models.TextChoices):
    OPEN = "open", _("Open")
    DONE = "done", _("Done")


class ReconsentTask(AuditedModel):
    """Re-consent the participant in person when able: opened by a consent an LAR signed,
    closed by the participant's own consent."""

    participant_path = "participant"

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="reconsent_tasks"
    )
    lar_consent = models.OneToOneField(Consent, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(
        _("status"), max_length=8, choices=ReconsentStatus.choices, default=ReconsentStatus.OPEN
    )
    done_by_consent = models.ForeignKey(
        Consent, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("re-consent task")
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(status="open", done_by_consent__isnull=True)
                    | Q(status="done", done_by_consent__isnull=False)
                ),
                name="reconsent_done_iff_consent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.participant} re-consent ({self.status})"


class ConsentRefusal(AuditedModel):
    """The patient (or their LAR) declined: a CONSORT count."""

    participant_path = "participant"

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="refusals")
    refused_on = models.DateField(_("date"))
    reason = models.TextField(_("reason"))
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    submission_token = models.UUIDField(unique=True, null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("consent refusal")
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="refusal_reason_required"),
        ]

    def __str__(self) -> str:
        return f"{self.participant} refused {self.refused_on}"


class WithdrawalScope(models.TextChoices):
    TREATMENT = "treatment", _("Study treatment only")
    FOLLOW_UP = "follow_up", _("Study treatment and follow-up")
    DATA = "data", _("Treatment, follow-up and use of data")


# Scopes after which the participant is no longer on study (no visits, no re-consent).
OFF_STUDY_SCOPES = (WithdrawalScope.FOLLOW_UP, WithdrawalScope.DATA)


class Withdrawal(AuditedModel):
    participant_path = "participant"

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="withdrawals"
    )
    scope = models.CharField(_("what stops"), max_length=12, choices=WithdrawalScope.choices)
    withdrawn_on = models.DateField(_("date"))
    reason = models.TextField(_("reason"))
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    submission_token = models.UUIDField(unique=True, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-withdrawn_on"]
        verbose_name = _("withdrawal of consent")
        constraints = [
            models.CheckConstraint(
                condition=Q(scope__in=[s.value for s in WithdrawalScope]),
                name="withdrawal_scope_known",
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="withdrawal_reason_required"),
        ]

    def __str__(self) -> str:
        return f"{self.participant} withdrew ({self.scope})"


class EligibilitySignoff(SignedRecord, AuditedModel):
    """An investigator's electronic signature on one eligible screening (21 CFR Part 11
    style: re-authenticated, with the printed name, the time and the meaning), bound to the
    screening's values by their hash (`rules.signoff_content`)."""

    participant_path = "screening__participant"

    screening = models.OneToOneField(Screening, on_delete=models.PROTECT, related_name="signoff")
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    printed_name = models.CharField(_("printed name"), max_length=200)
    signed_at = models.DateTimeField(_("signed at"))
    meaning = models.CharField(_("meaning"), max_length=200)

    class Meta:
        verbose_name = _("eligibility sign-off")
        constraints = [
            *SignedRecord.Meta.constraints,
            models.CheckConstraint(condition=~Q(printed_name=""), name="signoff_printed_name"),
            models.CheckConstraint(condition=~Q(meaning=""), name="signoff_meaning"),
        ]

    def __str__(self) -> str:
        return f"sign-off of screening {self.screening_id}"

    def signed_content(self) -> dict:
        return rules.signoff_content(self, self.screening)


class SignoffNoticeStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")
    # Signed off, re-screened or randomized before the e-mail went out: nothing to ask for.
    NOT_NEEDED = "not_needed", _("Not needed")


class SignoffNotice(models.Model):
    """The e-mail asking the site's investigators to sign off one eligible screening: a row,
    so the broker is only the transport and a sweep that runs twice sends once. Not trial
    data: not audited."""

    screening = models.OneToOneField(
        Screening, on_delete=models.CASCADE, related_name="signoff_notice"
    )
    status = models.CharField(
        max_length=10, choices=SignoffNoticeStatus.choices, default=SignoffNoticeStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    recipients = models.TextField(blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["status"], name="signoff_notice_status")]

    def __str__(self) -> str:
        return f"sign-off notice {self.screening_id}: {self.status}"
