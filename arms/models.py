from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from trialsite.audit import AuditedModel
from trialsite.models import Protocol


class ArmType(models.TextChoices):
    EXPERIMENTAL = "experimental", _("Experimental")
    ACTIVE_COMPARATOR = "active_comparator", _("Active comparator")
    PLACEBO_COMPARATOR = "placebo_comparator", _("Placebo comparator")
    NO_INTERVENTION = "no_intervention", _("No intervention")


class Arm(AuditedModel):
    protocol = models.ForeignKey(Protocol, on_delete=models.CASCADE, related_name="arms")
    code = models.CharField(_("code"), max_length=10)
    name = models.CharField(_("name"), max_length=100)
    arm_type = models.CharField(_("arm type"), max_length=20, choices=ArmType.choices)
    description = models.TextField(_("description"), blank=True)
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
        return f"{self.code} – {self.name}"

    @property
    def needs_schedule(self) -> bool:
        return self.arm_type != ArmType.NO_INTERVENTION
