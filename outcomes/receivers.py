"""Outcomes' answers to what the apps below it announce (connected in OutcomesConfig.ready)."""

from django.dispatch import receiver
from django.utils import timezone

from arms.models import Allocation
from arms.signals import participant_allocated, roster_progress
from dosing.signals import reminder_sections
from enrollment.models import OFF_STUDY_SCOPES
from enrollment.signals import Panel, participant_panels, participant_timeline, withdrawal_recorded

from .models import EndReason
from .selectors import (
    end_of_study,
    participant_adverse_events,
    participant_endpoints,
    reactions_to_report,
    roster_open_adverse_events,
    roster_who_scores,
    sae_alerts_for_user,
    visit_summary,
    with_report_clock,
)
from .services import participant_study_end, participant_visits_create, participant_visits_stop
from .timeline import adverse_event_entries, can_sign_for, visit_entries

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
    context = {
        "participant": participant,
        "summary": summary,
        "endpoints": participant_endpoints(participant),
    }
    return [Panel("outcomes/_visit_panel.html", context)]


# --- Adverse events and end of study ---


@receiver(withdrawal_recorded, dispatch_uid="outcomes.study_end_on_withdrawal")
def study_end_on_withdrawal(sender, *, participant, withdrawal, user=None, **kwargs):
    # Leaving follow-up ends the study of a randomized participant; treatment only does not.
    if withdrawal.scope not in OFF_STUDY_SCOPES or end_of_study(participant) is not None:
        return
    if not Allocation.objects.filter(participant=participant).exists():
        return
    participant_study_end(
        participant=participant,
        user=user,
        reason=EndReason.WITHDREW,
        ended_on=withdrawal.withdrawn_on,
        details=withdrawal.reason,
    )


@receiver(roster_progress, dispatch_uid="outcomes.roster_open_adverse_events")
def roster_open_aes(sender, *, rows, **kwargs):
    return roster_open_adverse_events(rows)


@receiver(participant_panels, dispatch_uid="outcomes.adverse_events_panel")
def adverse_events_panel(sender, *, participant, can_write, **kwargs):
    if not Allocation.objects.filter(participant=participant).exists():
        return []  # adverse events of the study start at randomization
    context = {
        "participant": participant,
        "adverse_events": participant_adverse_events(participant),
        "reactions": reactions_to_report(participant),
        "end": end_of_study(participant),
        "can_write": can_write,
    }
    return [Panel("outcomes/ae_panel.html", context)]


@receiver(participant_timeline, dispatch_uid="outcomes.timeline")
def timeline(sender, *, participant, user=None, **kwargs):
    can_sign = user is not None and can_sign_for(user, participant)
    return [*visit_entries(participant), *adverse_event_entries(participant, can_sign=can_sign)]


@receiver(reminder_sections, dispatch_uid="outcomes.sae_alerts")
def sae_alerts_section(sender, *, user, site_code, study_number, **kwargs):
    now = timezone.now()
    alerts = sae_alerts_for_user(user, site_code=site_code, study_number=study_number)
    for alert in alerts:
        with_report_clock(alert.adverse_event, now)
    return [Panel("outcomes/_sae_alerts.html", {"alerts": alerts})]
