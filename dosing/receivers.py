"""Dosing's answers to what the apps below it announce (connected in DosingConfig.ready)."""

from django.dispatch import receiver

from arms.models import Allocation
from arms.signals import participant_allocated, roster_progress
from enrollment.signals import Panel, participant_panels, participant_timeline, withdrawal_recorded

from .selectors import dosing_summary, roster_dosing_columns
from .services import participant_dosing_schedule_create, participant_reminders_cancel
from .timeline import dose_entries


@receiver(participant_allocated, dispatch_uid="dosing.schedule_on_allocation")
def schedule_on_allocation(sender, *, allocation, user, **kwargs):
    # A refusal (no screening weight for a per-kg dose) raises, refusing the randomization.
    participant_dosing_schedule_create(
        participant=allocation.participant,
        arm=allocation.arm,
        randomized_at=allocation.randomized_at,
        user=user,
    )


@receiver(withdrawal_recorded, dispatch_uid="dosing.stop_on_withdrawal")
def stop_on_withdrawal(sender, *, participant, withdrawal, **kwargs):
    participant_reminders_cancel(participant=participant, reason=f"Withdrawal ({withdrawal.scope})")


@receiver(roster_progress, dispatch_uid="dosing.roster_columns")
def roster_columns(sender, *, rows, **kwargs):
    return roster_dosing_columns(rows)


@receiver(participant_panels, dispatch_uid="dosing.participant_panel")
def dosing_panel(sender, *, participant, **kwargs):
    summary = dosing_summary([participant.pk]).get(participant.pk)
    if summary is None and not Allocation.objects.filter(participant=participant).exists():
        return []  # not randomized: nothing is planned yet
    context = {"participant": participant, "summary": summary}
    return [Panel("dosing/_participant_panel.html", context)]


@receiver(participant_timeline, dispatch_uid="dosing.timeline")
def timeline(sender, *, participant, **kwargs):
    return dose_entries(participant)
