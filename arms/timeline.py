"""Arms' part of a participant's story: the randomization, or that it is ready to be done."""

from django.urls import reverse
from django.utils.translation import gettext as _

from enrollment.selectors import randomization_gate_shown
from enrollment.signals import TimelineEntry

from .models import AllocationStatus
from .selectors import allocation_shown


def allocation_entries(participant, *, can_write: bool) -> list[TimelineEntry]:
    allocation = allocation_shown(participant)
    if allocation is None:
        if randomization_gate_shown(participant):
            return []
        return [
            TimelineEntry(
                at=None,
                kind="randomization_ready",
                title=_("Ready to randomize"),
                url=reverse("arms:randomize", args=[participant.study_number]) if can_write else "",
                tone="primary",
                due=True,
            )
        ]
    in_error = allocation.status == AllocationStatus.IN_ERROR
    return [
        TimelineEntry(
            at=allocation.randomized_at,
            kind="allocation",
            title=_("Randomized to %(arm)s") % {"arm": allocation.arm.localized_name()},
            detail=_("in error: %(reason)s") % {"reason": allocation.error_reason}
            if in_error
            else allocation.randomization_number,
            url=reverse("arms:allocation_detail", args=[participant.study_number]),
            record=allocation,
            tone="danger" if in_error else "primary",
        )
    ]
