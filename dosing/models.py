from django.db import models
from django.utils.translation import gettext_lazy as _

from arms.models import Arm
from trialsite.audit import AuditedModel


class WindowKind(models.TextChoices):
    CALENDAR_DAY = "calendar_day", _("The scheduled day only (site time)")
    HOURS = "hours", _("Hours either side of the due time")


class DoseSchedule(AuditedModel):
    """What an arm receives, on which study days, at what times, in what amount."""

    arm = models.ForeignKey(Arm, on_delete=models.CASCADE, related_name="dose_schedules")
    product = models.CharField(_("product"), max_length=200)
    route = models.CharField(_("route"), max_length=40)
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

    class Meta:
        verbose_name = _("dose schedule")

    def __str__(self) -> str:
        return f"{self.arm.code}: {self.product}"

    @property
    def dose_count(self) -> int:
        return len(self.study_days) * len(self.times)
