from django.db import models
from django.utils.translation import gettext_lazy as _

from trialsite.core.audit import AuditedModel
from trialsite.core.models import Protocol


class VisitDefinition(AuditedModel):
    protocol = models.ForeignKey(Protocol, on_delete=models.CASCADE, related_name="visits")
    code = models.CharField(_("code"), max_length=10)
    name = models.CharField(_("name"), max_length=100)
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
