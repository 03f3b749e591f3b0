"""Records of the composition: what the trial's data exports were (who, when, what, why)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from trialsite.core.audit import AuditedModel


class ExportSource(models.TextChoices):
    PAGE = "page", _("The export page")
    COMMAND = "command", _("The export_csv command")


class ExportStatus(models.TextChoices):
    QUEUED = "queued", _("Waiting for the worker")
    RUNNING = "running", _("Being written")
    DONE = "done", _("Ready")
    FAILED = "failed", _("Failed")
    EXPIRED = "expired", _("Expired (file deleted)")


class DataExport(AuditedModel):
    """One bundle of the trial's data that left the system. Written once, after its files:
    the SHA-256 of each file lets anyone check later that a file is the one exported."""

    exported_at = models.DateTimeField(_("exported at"), default=timezone.now)
    exported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("exported by"),
    )
    source = models.CharField(_("source"), max_length=10, choices=ExportSource.choices)
    identified = models.BooleanField(_("identified"), default=False)
    reason = models.TextField(_("reason for an identified export"), blank=True)
    protocol_version = models.CharField(_("protocol version"), max_length=40, blank=True)
    datasets = models.JSONField(_("datasets"), default=list)
    row_counts = models.JSONField(_("rows per file"), default=dict, blank=True)
    file_hashes = models.JSONField(_("SHA-256 per file"), default=dict, blank=True)
    filters = models.JSONField(_("options and filters"), default=dict, blank=True)
    # A bundle built by the worker: where it stands, and its file until it expires. An export
    # written in one go (the command, a small one from the page) is recorded once, done.
    status = models.CharField(
        _("status"), max_length=10, choices=ExportStatus.choices, default=ExportStatus.DONE
    )
    options = models.JSONField(_("options asked for"), default=dict, blank=True)
    datasets_total = models.PositiveSmallIntegerField(_("datasets to write"), default=0)
    file_name = models.CharField(_("file"), max_length=200, blank=True)
    file_bytes = models.PositiveBigIntegerField(_("file size"), null=True, blank=True)
    file_sha256 = models.CharField(_("SHA-256 of the ZIP"), max_length=64, blank=True)
    expires_at = models.DateTimeField(_("file expires at"), null=True, blank=True)
    error = models.CharField(_("why it failed"), max_length=500, blank=True)

    class Meta:
        ordering = ["-exported_at"]
        verbose_name = _("data export")
        constraints = [
            models.CheckConstraint(
                condition=Q(identified=False) | ~Q(reason=""),
                name="data_export_identified_has_reason",
                violation_error_message=_("An identified export needs its reason."),
            ),
        ]

    def __str__(self) -> str:
        kind = "identified" if self.identified else "de-identified"
        return f"export {self.pk} ({kind})"


class ExportProgress(models.Model):
    """How far the worker got with a bundle, for the page to show. Not trial data, so not
    audited: it is written every few thousand rows, where the export's own row (audited)
    changes only when its status does."""

    export = models.OneToOneField(
        DataExport, on_delete=models.CASCADE, primary_key=True, related_name="progress"
    )
    datasets_done = models.PositiveSmallIntegerField(_("datasets written"), default=0)
    rows_written = models.PositiveBigIntegerField(_("rows written"), default=0)

    def __str__(self) -> str:
        return f"progress of export {self.export_id}"


class ExportDownload(AuditedModel):
    """One download of a kept bundle: who took the file, and when."""

    export = models.ForeignKey(
        DataExport, on_delete=models.PROTECT, related_name="downloads", verbose_name=_("export")
    )
    downloaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("downloaded by"),
    )
    downloaded_at = models.DateTimeField(_("downloaded at"), default=timezone.now)

    class Meta:
        ordering = ["-downloaded_at"]
        verbose_name = _("export download")

    def __str__(self) -> str:
        return f"download of export {self.export_id}"
