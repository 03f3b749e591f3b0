"""Reads of outcomes: a participant's visits, the roster's WHO-score column.

Access: visits are filtered to the user's sites in the query (another site's visit is a 404,
never a 403).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import Count, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.shortcuts import get_object_or_404

from arms.models import Allocation
from dosing.models import Administration, DoseSchedule, ScheduledDose
from enrollment.models import OFF_STUDY_SCOPES, Participant
from trialsite.core.access import scope_to_sites, sites_for_user
from trialsite.core.clock import site_today
from trialsite.core.models import Role, Site
from trialsite.core.signatures import SignatureStatus

from . import rules
from .models import (
    OPEN_VISIT_STATUSES,
    AdverseEvent,
    EndOfStudy,
    EndReason,
    SaeAlert,
    ScheduledVisit,
    VisitRecord,
    VisitStatus,
)

# --- Visits ---

VISIT_WRITERS = (Role.COORDINATOR, Role.INVESTIGATOR)


def visits_for_user(user, *roles: str) -> QuerySet[ScheduledVisit]:
    return scope_to_sites(
        ScheduledVisit.objects.select_related(
            "participant__site", "participant__allocation", "definition"
        ),
        user,
        site_field="participant__site",
        roles=roles,
    )


def visit_for_user(user, pk: int, *roles: str) -> ScheduledVisit:
    return get_object_or_404(visits_for_user(user, *roles), pk=pk)


def _at_each_site_date(sites, condition) -> Q:
    """`condition(today)` with each site's own date: the trial's today is the site's."""
    matched = Q(pk__in=[])
    for site in sites:
        matched |= Q(participant__site=site) & condition(site_today(site))
    return matched


def visits_due_today(user, *roles: str) -> QuerySet[ScheduledVisit]:
    """Visits still waiting for a record whose window is open today at their site, the
    window closing soonest first. Two queries (the sites, the visits)."""
    sites = list(sites_for_user(user, *roles))
    return (
        visits_for_user(user, *roles)
        .filter(status__in=OPEN_VISIT_STATUSES)
        .filter(
            _at_each_site_date(
                sites, lambda today: Q(window_start__lte=today, window_end__gte=today)
            )
        )
        .order_by("window_end", "participant__site__code", "participant__sequence")
    )


def visits_overdue(user, *roles: str) -> QuerySet[ScheduledVisit]:
    """Visits with no record once their window has closed at the site (`rules.window_closed`),
    of participants still on study (no end of study, no withdrawal from follow-up): marked
    missed by the sweep, or not yet (it runs each minute). Either may still be recorded, out
    of window. Oldest first. Two queries."""
    sites = list(sites_for_user(user, *roles))
    closed = Q(status=VisitStatus.MISSED) | Q(status__in=OPEN_VISIT_STATUSES) & _at_each_site_date(
        sites, lambda today: Q(window_end__lt=today)
    )
    return (
        visits_for_user(user, *roles)
        .filter(closed, record__isnull=True)
        .filter(participant__ends_of_study__isnull=True)
        .exclude(participant__withdrawals__scope__in=OFF_STUDY_SCOPES)
        .order_by("window_end", "participant__site__code", "participant__sequence")
    )


def visits_out_of_window(user, *roles: str) -> QuerySet[ScheduledVisit]:
    """Visits recorded outside their window (the visit service decides it: a protocol
    deviation), the latest window first. One query."""
    return (
        visits_for_user(user, *roles)
        .filter(status=VisitStatus.DONE_OUT_OF_WINDOW)
        .order_by("-window_end", "participant__site__code", "participant__sequence")
    )


def participant_visits(participant: Participant) -> list[ScheduledVisit]:
    """The participant's visits in day order, each with its record (or None) in one query."""
    visits = list(
        ScheduledVisit.objects.filter(participant=participant)
        .select_related("definition", "record", "record__recorded_by")
        .order_by("study_day")
    )
    for visit in visits:
        visit.found = getattr(visit, "record", None)
    return visits


@dataclass(frozen=True)
class VisitSummary:
    done: int
    total: int
    missed: int
    next_visit: ScheduledVisit | None
    today: object


def visit_summary(participant: Participant) -> VisitSummary | None:
    """For the participant page's panel: None until the participant has a visit schedule."""
    visits = list(
        ScheduledVisit.objects.filter(participant=participant)
        .select_related("definition")
        .order_by("study_day")
    )
    if not visits:
        return None
    today = site_today(participant.site)
    # A window that closed with no record is missed already, whether or not the minute's
    # sweep has marked it yet.
    closed = [v for v in visits if v.status in OPEN_VISIT_STATUSES and v.window_end < today]
    return VisitSummary(
        done=sum(v.status in ("done", "done_late") for v in visits),
        total=sum(v.status != "not_required" for v in visits),
        missed=sum(v.status == "missed" for v in visits) + len(closed),
        next_visit=next(
            (v for v in visits if v.status in OPEN_VISIT_STATUSES and v.window_end >= today),
            None,
        ),
        today=today,
    )


def roster_who_scores(rows) -> dict[int, dict]:
    """The roster's "WHO score" column for one page of allocations, in one query: the score
    of each participant's latest visit that has one."""
    participant_ids = [row.participant_id for row in rows]
    latest = (
        VisitRecord.objects.filter(
            scheduled_visit__participant_id=OuterRef("pk"), who_score__isnull=False
        )
        .order_by("-visit_date", "-scheduled_visit__study_day")
        .values("who_score")[:1]
    )
    scores = Participant.objects.filter(pk__in=participant_ids).annotate(
        latest_who_score=Subquery(latest)
    )
    return {
        pk: {"latest_who_score": str(score)}
        for pk, score in scores.values_list("pk", "latest_who_score")
        if score is not None
    }


# --- Adverse events and end of study ---

AE_WRITERS = (Role.COORDINATOR, Role.INVESTIGATOR)


def adverse_events_for_user(user, *roles: str) -> QuerySet[AdverseEvent]:
    return scope_to_sites(
        AdverseEvent.objects.select_related("participant__site"),
        user,
        site_field="participant__site",
        roles=roles,
    )


def adverse_event_for_user(user, pk: int, *roles: str) -> AdverseEvent:
    return get_object_or_404(adverse_events_for_user(user, *roles), pk=pk)


def participant_adverse_events(participant: Participant) -> list[AdverseEvent]:
    """The participant's adverse events in onset order, each with its signed causality (or
    none) and the relatedness per intervention, in three queries."""
    return list(
        AdverseEvent.objects.filter(participant=participant)
        .select_related("causality", "recorded_by")
        .prefetch_related("causality__relatedness")
        .order_by("onset_date", "pk")
    )


def participant_interventions(participant: Participant) -> list[rules.Intervention]:
    """What an adverse event of this participant may be related to: each infusion of the
    arm's intravenous schedule, the course of any other; nothing for standard care."""
    allocation = Allocation.objects.filter(participant=participant).first()
    if allocation is None:
        return []
    schedules = list(
        DoseSchedule.objects.filter(arm_id=allocation.arm_id)
        .order_by("pk")
        .values_list("pk", "product", "route")
    )
    doses = list(
        ScheduledDose.objects.filter(participant=participant, schedule__route=rules.INFUSION_ROUTE)
        .order_by("schedule_id", "sequence")
        .values_list("pk", "schedule_id", "sequence", "study_day")
    )
    return rules.interventions(schedules, doses)


def reactions_to_report(participant: Participant) -> list[Administration]:
    """Doses recorded with an infusion reaction (records in force), each with `.reported_as`:
    the adverse event that reports it, or None."""
    reactions = list(
        Administration.objects.filter(
            scheduled_dose__participant=participant,
            infusion_reaction=True,
            voided_at__isnull=True,
        )
        .select_related("scheduled_dose__schedule")
        .order_by("given_at", "pk")
    )
    reported = {
        ae.administration_id: ae
        for ae in AdverseEvent.objects.filter(
            administration_id__in=[r.pk for r in reactions]
        ).order_by("pk")
    }
    for reaction in reactions:
        reaction.reported_as = reported.get(reaction.pk)
    return reactions


def end_of_study(participant: Participant) -> EndOfStudy | None:
    return EndOfStudy.objects.filter(participant=participant).first()


def open_sae_reports(user, *roles: str) -> list[AdverseEvent]:
    """Serious adverse events not yet reported to the sponsor and ethics, in the user's
    sites (where they hold one of `roles`, if named), the most urgent first."""
    return list(
        adverse_events_for_user(user, *roles)
        .filter(serious=True, reported_on__isnull=True)
        .prefetch_related(Prefetch("alerts", queryset=SaeAlert.objects.order_by("due_at")))
        .order_by("sae_clock_started_at", "pk")
    )


def causality_awaited(user, *roles: str) -> QuerySet[AdverseEvent]:
    """Adverse events that no investigator has assessed for causality yet, or whose signed
    assessment a change to the event invalidated (to sign again), oldest first. One query."""
    return (
        adverse_events_for_user(user, *roles)
        .filter(
            Q(causality__isnull=True) | Q(causality__signature_status=SignatureStatus.INVALIDATED)
        )
        .select_related("causality")
        .order_by("recorded_at", "pk")
    )


def ends_to_sign(user, *roles: str) -> QuerySet[EndOfStudy]:
    """Ends of study waiting for the investigator's signature (never signed, or signed and
    marked invalidated since), oldest first. One query."""
    return scope_to_sites(
        EndOfStudy.objects.exclude(signature_status=SignatureStatus.VALID).select_related(
            "participant__site"
        ),
        user,
        site_field="participant__site",
        roles=roles,
    ).order_by("recorded_at", "pk")


def roster_open_adverse_events(rows) -> dict[int, dict]:
    """The roster's "Open AEs" column for one page of allocations, in one query: how many
    adverse events of each participant have no end yet (none shown as empty)."""
    counts = (
        AdverseEvent.objects.filter(
            participant_id__in=[row.participant_id for row in rows], end_date__isnull=True
        )
        .values("participant_id")
        .annotate(n=Count("pk"))
        .values_list("participant_id", "n")
    )
    return {pk: {"open_adverse_events": str(n)} for pk, n in counts}


# --- Derived endpoints ---


@dataclass(frozen=True)
class ParticipantEndpoints:
    died_by_day_28: bool | None
    improvement: rules.TimeToEvent | None
    ventilation_free_days: int | None
    worst_who_score: int | None
    # Follow-up goes on: what is not known yet may still come.
    on_study: bool


def participant_endpoints(participant: Participant) -> ParticipantEndpoints | None:
    """The participant's derived endpoints from the visit records, a fatal adverse event and
    the end of study, in four queries; None until randomized."""
    allocation = (
        Allocation.objects.filter(participant=participant)
        .select_related("participant__site")
        .first()
    )
    if allocation is None:
        return None
    records = list(
        VisitRecord.objects.filter(scheduled_visit__participant=participant).values_list(
            "visit_date", "who_score", "respiratory_support", "discharged_on", "date_of_death"
        )
    )
    fatal_event = (
        AdverseEvent.objects.filter(participant=participant, death_date__isnull=False)
        .order_by("death_date")
        .values_list("death_date", flat=True)
        .first()
    )
    end = (
        EndOfStudy.objects.filter(participant=participant).values_list("reason", "ended_on").first()
    )
    return endpoints_from(
        randomized_at=allocation.randomized_at,
        site=allocation.participant.site,
        records=records,
        fatal_event=fatal_event,
        end=end,
    )


def endpoints_from(
    *,
    randomized_at: datetime,
    site: Site,
    records: list[tuple],
    fatal_event: date | None,
    end: tuple[str, date] | None,
) -> ParticipantEndpoints:
    """The endpoints from what was read: `records` (visit date, WHO score, support, discharge
    date, date of death) per visit record, the earliest fatal adverse event's date of death,
    the end of study (reason, date) or None. Study days count from the site's date of
    randomization, by the dates things happened (a visit's date, not the day it was planned
    for). While on study, follow-up runs to the site's today. Shared by the participant page
    and the export, which reads many participants at once."""
    day_zero = rules.study_day_zero(randomized_at, site.zone)

    def study_day(day):
        return None if day is None else (day - day_zero).days

    observations = [
        rules.Observation(study_day(visit_date), who_score, support)
        for visit_date, who_score, support, _discharged, _died in records
    ]
    # A death may be written at a visit, on a grade 5 event or as the end of study: the
    # earliest date wins, whichever form carried it.
    deaths = [died for *_values, died in records if died is not None]
    deaths += [fatal_event] if fatal_event is not None else []
    deaths += [end[1]] if end is not None and end[0] == EndReason.DIED else []
    discharges = [discharged for *_values, discharged, _died in records if discharged]
    death_day = study_day(min(deaths, default=None))
    end_day = study_day(end[1] if end is not None else site_today(site))
    return ParticipantEndpoints(
        died_by_day_28=rules.mortality_28_day(death_day=death_day, end_day=end_day),
        improvement=rules.time_to_improvement(
            observations,
            discharge_day=study_day(min(discharges, default=None)),
            death_day=death_day,
            end_day=end_day,
        ),
        ventilation_free_days=rules.ventilation_free_days(
            observations, death_day=death_day, end_day=end_day
        ),
        worst_who_score=rules.worst_who_score(observations, death_day=death_day),
        on_study=end is None,
    )


def sae_alerts_for_user(user, *, site_code: str = "", study_number: str = "") -> list[SaeAlert]:
    """The serious-adverse-event alerts of the user's sites, the newest first (the latest
    hundred), for the reminders page: what went to the investigators and when. One query."""
    alerts = scope_to_sites(
        SaeAlert.objects.select_related("adverse_event__participant__site"),
        user,
        site_field="adverse_event__participant__site",
    )
    if site_code:
        alerts = alerts.filter(adverse_event__participant__site__code=site_code)
    if study_number:
        alerts = alerts.filter(adverse_event__participant__study_number=study_number)
    return list(alerts.order_by("-due_at", "-pk")[:100])


def with_report_clock(adverse_event: AdverseEvent, now) -> AdverseEvent:
    """Sets `time_left` and `report_late` on a serious event whose report is still open, for
    the pages that show its 24-hour clock."""
    if adverse_event.report_open:
        adverse_event.time_left = rules.time_left_text(adverse_event.report_due_at, now)
        adverse_event.report_late = adverse_event.report_due_at < now
    return adverse_event
