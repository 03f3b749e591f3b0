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
    row_counts = models.JSONField(_("rows per file"), default=dict)
    file_hashes = models.JSONField(_("SHA-256 per file"), default=dict)
    filters = models.JSONField(_("options and filters"), default=dict)

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
