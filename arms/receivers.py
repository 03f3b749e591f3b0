"""Arms' answers to what enrollment announces (connected in ArmsConfig.ready)."""

from django.dispatch import receiver

from enrollment.selectors import randomization_gate_shown
from enrollment.signals import Panel, participant_panels, participant_timeline

from .selectors import allocation_shown
from .timeline import allocation_entries


@receiver(participant_panels, dispatch_uid="arms.randomization_panel")
def randomization_panel(sender, *, participant, can_write, **kwargs):
    allocation = allocation_shown(participant)
    return [
        Panel(
            "arms/_participant_panel.html",
            {
                "participant": participant,
                "allocation": allocation,
                "gate": [] if allocation else randomization_gate_shown(participant),
                "can_write": can_write,
            },
        )
    ]


@receiver(participant_timeline, dispatch_uid="arms.timeline")
def timeline(sender, *, participant, can_write, **kwargs):
    return allocation_entries(participant, can_write=can_write)
