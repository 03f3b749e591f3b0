"""Dosing's part of a participant's story: each dose given or not given, and the next dose or
any overdue one as what is due."""

from django.urls import reverse
from django.utils.translation import gettext as _

from enrollment.signals import TimelineEntry

from .models import AdministrationOutcome, DoseStatus, ScheduledDose
from .rules import scientific
from .selectors import with_administrations


def dose_entries(participant) -> list[TimelineEntry]:
    """Two queries: the doses with their schedule, and their records."""
    doses = with_administrations(
        ScheduledDose.objects.filter(participant=participant)
        .select_related("schedule")
        .order_by("due_at", "schedule_id", "sequence")
    )
    page = reverse("dosing:participant_timeline", args=[participant.study_number])
    entries = []
    next_planned = None
    for dose in doses:
        name = _("%(product)s dose %(number)s") % {
            "product": dose.schedule.localized_product(),
            "number": dose.sequence,
        }
        for record in dose.records:
            if record.is_void:
                continue  # struck through on the dosing page, kept in the audit trail
            given = record.outcome == AdministrationOutcome.GIVEN
            entries.append(
                TimelineEntry(
                    at=record.given_at if given else dose.due_at,
                    kind="dose",
                    title=_("%(dose)s given") % {"dose": name}
                    if given
                    else _("%(dose)s not given") % {"dose": name},
                    detail=f"{scientific(record.amount)} {record.amount_unit}"
                    if given
                    else record.not_given_reason,
                    url=f"{page}#dose-{dose.pk}",
                    record=record,
                    tone=("warning" if record.is_deviation else "success") if given else "danger",
                )
            )
        if dose.status == DoseStatus.OVERDUE:
            entries.append(_planned(dose, name, page, overdue=True))
        elif dose.status == DoseStatus.SCHEDULED and next_planned is None:
            next_planned = dose
            entries.append(_planned(dose, name, page, overdue=False))
    return entries


def _planned(dose, name: str, page: str, *, overdue: bool) -> TimelineEntry:
    return TimelineEntry(
        at=dose.due_at,
        kind="dose_due",
        title=_("%(dose)s overdue") % {"dose": name} if overdue else name,
        detail=dose.amount_display,
        url=f"{page}#dose-{dose.pk}",
        record=dose,
        tone="danger" if overdue else "info",
        due=True,
        overdue=overdue,
    )
