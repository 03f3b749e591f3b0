from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from trialsite.core.audit import AuditedModel
from trialsite.core.i18n import localized
from trialsite.core.models import Protocol, Site


class ArmType(models.TextChoices):
    EXPERIMENTAL = "experimental", _("Experimental")
    ACTIVE_COMPARATOR = "active_comparator", _("Active comparator")
    PLACEBO_COMPARATOR = "placebo_comparator", _("Placebo comparator")
    NO_INTERVENTION = "no_intervention", _("No intervention")


class Arm(AuditedModel):
    protocol = models.ForeignKey(Protocol, on_delete=models.CASCADE, related_name="arms")
    code = models.CharField(_("code"), max_length=10)
    name = models.CharField(_("name"), max_length=100)
    name_zh = models.CharField(_("name (Chinese)"), max_length=100, blank=True)
    arm_type = models.CharField(_("arm type"), max_length=20, choices=ArmType.choices)
    description = models.TextField(_("description"), blank=True)
    description_zh = models.TextField(_("description (Chinese)"), blank=True)
    ratio = models.PositiveSmallIntegerField(
        _("allocation ratio"), validators=[MinValueValidator(1)]
    )
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["protocol", "order", "code"]
        verbose_name = _("arm")
        constraints = [
            models.UniqueConstraint(fields=["protocol", "code"], name="arm_code_unique"),
            models.CheckConstraint(condition=models.Q(ratio__gte=1), name="arm_ratio_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.code} – {self.localized_name()}"

    def localized_name(self) -> str:
        return localized(self.name, self.name_zh)

    def localized_description(self) -> str:
        return localized(self.description, self.description_zh)

    @property
    def needs_schedule(self) -> bool:
        return self.arm_type != ArmType.NO_INTERVENTION


class ListSource(models.TextChoices):
    GENERATED = "generated", _("Generated here")
    UPLOADED = "uploaded", _("Uploaded from a statistician's file")


class ListStatus(models.TextChoices):
    DRAFT = "draft", _("Draft: to be checked")
    ACTIVE = "active", _("Active: randomization draws from it")
    RETIRED = "retired", _("Retired")


class RandomizationList(AuditedModel):
    """A stratified randomization list. Concealed: only the trial administrator sees it.

    Locked at the first allocation drawn from it; its SHA-256 is then recorded, so anyone can
    later check it was not altered (`arms.selectors.list_fingerprint`).
    """

    # Allocation concealment: its audit trail is the administrator's only (core.selectors).
    audit_concealed = True

    protocol = models.ForeignKey(Protocol, on_delete=models.PROTECT, related_name="+")
    source = models.CharField(_("source"), max_length=12, choices=ListSource.choices)
    status = models.CharField(
        _("status"), max_length=10, choices=ListStatus.choices, default=ListStatus.DRAFT
    )
    per_stratum = models.PositiveIntegerField(_("entries asked per stratum"), default=0)
    note = models.CharField(_("note"), max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    locked_at = models.DateTimeField(_("locked at"), null=True, blank=True)
    sha256 = models.CharField(_("SHA-256 of the locked list"), max_length=64, blank=True)
    # Of the same canonical text as `sha256`, taken when the entries were written: a list
    # untouched between writing and locking gets the same value twice.
    written_sha256 = models.CharField(
        _("SHA-256 of the entries as written"), max_length=64, blank=True
    )
    # From the form that asked for the list: a second click or a resent request carries the
    # same key, and the database stores one list per key.
    idempotency_key = models.UUIDField(unique=True, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("randomization list")
        constraints = [
            models.UniqueConstraint(
                fields=["protocol"],
                condition=Q(status="active"),
                name="one_active_list_per_protocol",
                violation_error_message=_("The protocol already has an active list."),
            ),
            models.CheckConstraint(
                condition=Q(locked_at__isnull=True, sha256="")
                | (Q(locked_at__isnull=False) & ~Q(sha256="")),
                name="list_locked_iff_hashed",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in ListStatus]), name="list_status_known"
            ),
        ]

    def __str__(self) -> str:
        return _("List %(pk)s (%(status)s)") % {"pk": self.pk, "status": self.status}

    @property
    def is_locked(self) -> bool:
        return self.locked_at is not None


class Stratum(AuditedModel):
    """Site x severity within one list. Randomization locks this row, so allocations within
    a stratum are serialised and its entries are used strictly in sequence."""

    # Allocation concealment: its audit trail is the administrator's only (core.selectors).
    audit_concealed = True

    randomization_list = models.ForeignKey(
        RandomizationList, on_delete=models.PROTECT, related_name="strata"
    )
    code = models.CharField(_("code"), max_length=60)
    site = models.ForeignKey(
        Site, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    severity = models.CharField(_("severity"), max_length=20)
    exhausted_alert_at = models.DateTimeField(_("administrators alerted"), null=True, blank=True)

    class Meta:
        ordering = ["randomization_list", "code"]
        verbose_name = _("stratum")
        verbose_name_plural = _("strata")
        constraints = [
            models.UniqueConstraint(
                fields=["randomization_list", "code"], name="stratum_code_unique_per_list"
            ),
            # The code carries site and severity, so it is also unique when site is null.
            models.UniqueConstraint(
                fields=["randomization_list", "site", "severity"], name="stratum_unique_per_list"
            ),
        ]

    def __str__(self) -> str:
        return self.code


class ListEntry(AuditedModel):
    """One line of the list. Used at most once: the allocation holds it one-to-one.

    Written in bulk with their list, without a history row each: the list's creation is the
    audit event (with the number of entries and their SHA-256), since nothing ever changes
    an entry after it is written, the SHA-256 recorded at locking covers every entry, and
    each use of an entry is audited as its allocation. The history model stays, so that the
    rows of lists written before are kept and a change made outside the services (which
    would be a fault) is still recorded with its reason.
    """

    # Allocation concealment: its audit trail is the administrator's only (core.selectors).
    audit_concealed = True
    # The audit page shows the entries created with a list as one row, "N entries created".
    audit_collapse_created = "stratum__randomization_list"

    stratum = models.ForeignKey(Stratum, on_delete=models.PROTECT, related_name="entries")
    sequence = models.PositiveIntegerField(_("sequence"))
    arm = models.ForeignKey(Arm, on_delete=models.PROTECT, related_name="+")
    block = models.PositiveIntegerField(_("block"))
    block_size = models.PositiveSmallIntegerField(_("block size"))

    class Meta:
        ordering = ["stratum", "sequence"]
        verbose_name = _("list entry")
        verbose_name_plural = _("list entries")
        constraints = [
            models.UniqueConstraint(
                fields=["stratum", "sequence"], name="entry_sequence_unique_per_stratum"
            ),
            models.CheckConstraint(condition=Q(sequence__gte=1), name="entry_sequence_gte_1"),
        ]

    def __str__(self) -> str:
        # Never the arm: this string reaches the audit trail.
        return f"{self.stratum_id}#{self.sequence}"


class AllocationStatus(models.TextChoices):
    VALID = "valid", _("Valid")
    IN_ERROR = "in_error", _("In error")


class Allocation(AuditedModel):
    """A participant's randomization. Never deleted: a wrong one is marked in error, and
    stays in every count and export."""

    participant_path = "participant"

    participant = models.OneToOneField(
        "enrollment.Participant", on_delete=models.PROTECT, related_name="allocation"
    )
    entry = models.OneToOneField(ListEntry, on_delete=models.PROTECT, related_name="allocation")
    # Copied from the entry in the allocating transaction, so rosters filter without joins
    # into the concealed list.
    stratum = models.ForeignKey(Stratum, on_delete=models.PROTECT, related_name="allocations")
    arm = models.ForeignKey(Arm, on_delete=models.PROTECT, related_name="allocations")
    randomization_number = models.CharField(_("randomization number"), max_length=80, unique=True)
    randomized_at = models.DateTimeField(_("randomized at"))
    randomized_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    idempotency_key = models.UUIDField(unique=True, editable=False)
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=AllocationStatus.choices,
        default=AllocationStatus.VALID,
    )
    error_reason = models.TextField(_("why it is in error"), blank=True)
    marked_in_error_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    marked_in_error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-randomized_at"]
        verbose_name = _("allocation")
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(status="valid", error_reason="", marked_in_error_at__isnull=True)
                    | (Q(status="in_error", marked_in_error_at__isnull=False) & ~Q(error_reason=""))
                ),
                name="allocation_error_reason_iff_in_error",
                violation_error_message=_("An allocation in error carries its reason."),
            ),
        ]

    def __str__(self) -> str:
        return self.randomization_number


class NoticeStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")


class AllocationNotice(models.Model):
    """The e-mail to the site's investigators about one allocation: a row, so the broker is
    only the transport, and a task that runs twice sends once. Not trial data: not audited."""

    allocation = models.OneToOneField(Allocation, on_delete=models.CASCADE, related_name="notice")
    status = models.CharField(
        max_length=10, choices=NoticeStatus.choices, default=NoticeStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    recipients = models.TextField(blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["status"], name="notice_status")]

    def __str__(self) -> str:
        return f"notice {self.allocation_id}: {self.status}"


class ListAction(models.TextChoices):
    VIEW = "view", _("Viewed the entries")
    REPORT = "report", _("Viewed the report")
    EXPORT = "export", _("Exported")
    VERIFY = "verify", _("Verified the hash")


class ListAccessLog(models.Model):
    """Who looked at or exported a concealed list, and when. Append-only."""

    randomization_list = models.ForeignKey(
        RandomizationList, on_delete=models.PROTECT, related_name="access_log"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=10, choices=ListAction.choices)
    at = models.DateTimeField(default=timezone.now)
    address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]
        verbose_name = _("list access")

    def __str__(self) -> str:
        when = f"{self.at:%Y-%m-%d %H:%M}"
        return f"{self.user_id} {self.action} list {self.randomization_list_id} {when}"
