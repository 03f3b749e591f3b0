"""Outcomes' answers to what the apps below it announce (connected in OutcomesConfig.ready)."""

from django.dispatch import receiver

from arms.signals import participant_allocated, roster_progress
from enrollment.models import OFF_STUDY_SCOPES
from enrollment.signals import Panel, participant_panels, withdrawal_recorded

from .selectors import roster_who_scores, visit_summary
from .services import participant_visits_create, participant_visits_stop

# --- Visits ---


@receiver(participant_allocated, dispatch_uid="outcomes.visits_on_allocation")
def visits_on_allocation(sender, *, allocation, user, **kwargs):
    participant_visits_create(
        participant=allocation.participant,
        randomized_at=allocation.randomized_at,
        protocol=allocation.arm.protocol,
        user=user,
    )


@receiver(withdrawal_recorded, dispatch_uid="outcomes.visits_stop_on_withdrawal")
def visits_stop_on_withdrawal(sender, *, participant, withdrawal, user=None, **kwargs):
    # Stopping treatment only keeps follow-up: the visits go on.
    if withdrawal.scope in OFF_STUDY_SCOPES:
        participant_visits_stop(
            participant=participant,
            reason=f"Withdrawal ({withdrawal.get_scope_display()})",
            user=user,
        )


@receiver(roster_progress, dispatch_uid="outcomes.roster_who_score")
def roster_who_score(sender, *, rows, **kwargs):
    return roster_who_scores(rows)


@receiver(participant_panels, dispatch_uid="outcomes.visits_panel")
def visits_panel(sender, *, participant, **kwargs):
    summary = visit_summary(participant)
    if summary is None:
        return []  # not randomized: no visits are planned
    return [Panel("outcomes/_visit_panel.html", {"participant": participant, "summary": summary})]
