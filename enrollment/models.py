from django.db import models
from django.utils.translation import gettext_lazy as _

from trialsite.audit import AuditedModel
from trialsite.models import Protocol


class CriterionKind(models.TextChoices):
    INCLUSION = "inclusion", _("Inclusion")
    EXCLUSION = "exclusion", _("Exclusion")


class EligibilityCriterion(AuditedModel):
    """One criterion of the protocol, decided by a named rule with its parameters."""

    protocol = models.ForeignKey(Protocol, on_delete=models.CASCADE, related_name="criteria")
    code = models.CharField(_("code"), max_length=10)
    kind = models.CharField(_("kind"), max_length=10, choices=CriterionKind.choices)
    text = models.TextField(_("text"))
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
