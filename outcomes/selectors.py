"""Reads of outcomes: a participant's visits, the roster's WHO-score column.

Access: visits are filtered to the user's sites in the query (another site's visit is a 404,
never a 403).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import OuterRef, QuerySet, Subquery
from django.shortcuts import get_object_or_404

from enrollment.models import Participant
from trialsite.core.access import scope_to_sites
from trialsite.core.clock import site_today
from trialsite.core.models import Role

from .models import OPEN_VISIT_STATUSES, ScheduledVisit, VisitRecord

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
    return VisitSummary(
        done=sum(v.status in ("done", "done_late") for v in visits),
        total=sum(v.status != "not_required" for v in visits),
        missed=sum(v.status == "missed" for v in visits),
        next_visit=next((v for v in visits if v.status in OPEN_VISIT_STATUSES), None),
        today=site_today(participant.site),
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
