"""Reads of dosing: the worklist, a participant's timeline, roster counts, the reminders page.

Access: doses and reminders are filtered to the user's sites in the query (another site's
dose is a 404, never a 403).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from django.db.models import Count, Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.translation import gettext as _

from enrollment.models import Participant
from trialsite.core.access import scope_to_sites, sites_for_user
from trialsite.core.models import Role, Site

from .models import (
    OPEN_DOSE_STATUSES,
    Administration,
    DoseSchedule,
    DoseStatus,
    Reminder,
    ReminderStatus,
    ScheduledDose,
)

WRITERS = (Role.COORDINATOR, Role.INVESTIGATOR)


def doses_for_user(user, *roles: str) -> QuerySet[ScheduledDose]:
    return scope_to_sites(
        ScheduledDose.objects.select_related("participant__site", "schedule"),
        user,
        site_field="participant__site",
        roles=roles,
    )


def dose_for_user(user, pk: int, *roles: str) -> ScheduledDose:
    return get_object_or_404(doses_for_user(user, *roles), pk=pk)


def with_administrations(queryset: QuerySet[ScheduledDose]) -> QuerySet[ScheduledDose]:
    return queryset.prefetch_related(
        Prefetch(
            "administrations",
            # Voided records too, in the order they were made: the timeline shows them struck.
            queryset=Administration.objects.select_related("given_by", "voided_by").order_by(
                "recorded_at", "pk"
            ),
            to_attr="records",
        )
    )


def site_day_bounds(site: Site, *, now: datetime) -> tuple[datetime, datetime]:
    """The site's today, as [start, end) instants."""
    today = timezone.localtime(now, site.zone).date()
    start = datetime.combine(today, time(0), tzinfo=site.zone)
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=site.zone)
    return start, end


@dataclass
class SiteWorklist:
    site: Site
    due: list[ScheduledDose] = field(default_factory=list)
    overdue: list[ScheduledDose] = field(default_factory=list)
    done: list[ScheduledDose] = field(default_factory=list)


def worklist(user, *, now: datetime | None = None, roles=WRITERS) -> list[SiteWorklist]:
    """Today at my sites (where I hold one of `roles`): doses due today (site time), every
    overdue dose, today's records.

    Two queries for the doses whatever their number (one for doses, one for records).
    """
    now = now or timezone.now()
    sites = list(sites_for_user(user, *roles).filter(is_active=True))
    if not sites:
        return []
    today = Q()
    for site in sites:
        start, end = site_day_bounds(site, now=now)
        today |= Q(participant__site=site, due_at__gte=start, due_at__lt=end)
    doses = with_administrations(
        ScheduledDose.objects.select_related("participant__site", "schedule")
        .filter(participant__site__in=sites)
        .filter(today | Q(status=DoseStatus.OVERDUE))
        .order_by("due_at", "participant__sequence")
    )
    lists = {site.pk: SiteWorklist(site=site) for site in sites}
    for dose in doses:
        entry = lists[dose.participant.site_id]
        if dose.status == DoseStatus.OVERDUE:
            entry.overdue.append(dose)
        elif dose.status == DoseStatus.SCHEDULED:
            entry.due.append(dose)
        else:
            entry.done.append(dose)
    return [lists[site.pk] for site in sites]


@dataclass
class TimelineGroup:
    product: str
    route: str
    doses: list[ScheduledDose]
    given: int
    total: int
    noun: str


def dose_timeline(participant: Participant) -> list[TimelineGroup]:
    """The participant's doses by product, each with 'given of total' (e.g. 2/2 infusions)."""
    doses = with_administrations(
        ScheduledDose.objects.filter(participant=participant)
        .select_related("schedule")
        .order_by("schedule_id", "sequence")
    )
    groups: dict[int, list[ScheduledDose]] = defaultdict(list)
    for dose in doses:
        groups[dose.schedule_id].append(dose)
    return [
        TimelineGroup(
            product=items[0].schedule.localized_product(),
            route=items[0].schedule.localized_route(),
            doses=items,
            given=sum(1 for d in items if d.status == DoseStatus.GIVEN),
            total=len(items),
            noun="infusions" if items[0].schedule.route == "intravenous" else "doses",
        )
        for items in groups.values()
    ]


def dosing_summary(participant_ids) -> dict[int, dict]:
    """For roster columns: participant id -> {given, total, overdue}, in one query."""
    rows = (
        ScheduledDose.objects.filter(participant_id__in=list(participant_ids))
        .values("participant_id")
        .annotate(
            total=Count("pk"),
            given=Count("pk", filter=Q(status=DoseStatus.GIVEN)),
            overdue=Count("pk", filter=Q(status=DoseStatus.OVERDUE)),
        )
    )
    return {
        r["participant_id"]: {"given": r["given"], "total": r["total"], "overdue": r["overdue"]}
        for r in rows
    }


def roster_dosing_columns(rows) -> dict[int, dict]:
    """The roster's dosing columns for one page of allocations (three queries, however many
    rows): "given/total infusions" (intravenous schedules) or "doses", and the earliest open
    dose with whether it is overdue."""
    participant_ids = [row.participant_id for row in rows]
    summary = dosing_summary(participant_ids)
    routes: dict[int, set[str]] = defaultdict(set)
    for arm_id, route in DoseSchedule.objects.filter(
        arm_id__in={row.arm_id for row in rows}
    ).values_list("arm_id", "route"):
        routes[arm_id].add(route)
    next_open = {}
    for dose in (
        ScheduledDose.objects.filter(
            participant_id__in=participant_ids, status__in=OPEN_DOSE_STATUSES
        )
        .order_by("participant_id", "due_at")
        .values("participant_id", "due_at", "status")
    ):
        next_open.setdefault(dose["participant_id"], dose)
    columns = {}
    for row in rows:
        counts = summary.get(row.participant_id)
        if not counts:
            continue
        template = (
            _("%(given)s/%(total)s infusions")
            if routes[row.arm_id] == {"intravenous"}
            else _("%(given)s/%(total)s doses")
        )
        due = next_open.get(row.participant_id) or {}
        columns[row.participant_id] = {
            "dosing_progress": template % {"given": counts["given"], "total": counts["total"]},
            "next_due_at": due.get("due_at"),
            "next_due_overdue": due.get("status") == DoseStatus.OVERDUE,
        }
    return columns


REMINDER_TABS = {
    "upcoming": (ReminderStatus.PENDING, ReminderStatus.SENDING),
    "sent": (ReminderStatus.SENT,),
    "failed": (ReminderStatus.FAILED,),
    "cancelled": (ReminderStatus.CANCELLED,),
}


def reminders_for_user(user, *roles: str) -> QuerySet[Reminder]:
    return scope_to_sites(
        Reminder.objects.select_related("participant__site", "scheduled_dose__schedule"),
        user,
        site_field="participant__site",
        roles=roles,
    )


def reminder_list(
    user, *, tab: str, site_code: str = "", study_number: str = ""
) -> QuerySet[Reminder]:
    reminders = reminders_for_user(user).filter(status__in=REMINDER_TABS[tab])
    if site_code:
        reminders = reminders.filter(participant__site__code=site_code)
    if study_number:
        reminders = reminders.filter(participant__study_number=study_number)
    order = ("due_at", "pk") if tab == "upcoming" else ("-due_at", "-pk")
    return reminders.order_by(*order)


def reminder_counts(user, *, site_code: str = "", study_number: str = "") -> dict[str, int]:
    reminders = reminders_for_user(user)
    if site_code:
        reminders = reminders.filter(participant__site__code=site_code)
    if study_number:
        reminders = reminders.filter(participant__study_number=study_number)
    counts = reminders.aggregate(
        **{
            tab: Count("pk", filter=Q(status__in=statuses))
            for tab, statuses in REMINDER_TABS.items()
        }
    )
    return counts
