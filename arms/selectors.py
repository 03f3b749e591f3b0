"""Reads of randomization: the protocol's strata, the concealed lists (administrator only, at
the view), allocations and rosters as a user may see them, and the balance report.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.shortcuts import get_object_or_404

from enrollment.models import Withdrawal
from trialsite.core.access import scope_to_sites
from trialsite.core.models import Protocol, Site

from . import rules
from .models import (
    Allocation,
    AllocationStatus,
    Arm,
    ListEntry,
    ListStatus,
    RandomizationList,
    Stratum,
)
from .signals import roster_progress


def protocol_ratios(protocol: Protocol) -> dict[str, int]:
    """Arm code -> ratio, in the protocol's arm order."""
    return dict(Arm.objects.filter(protocol=protocol).values_list("code", "ratio"))


def protocol_strata(protocol: Protocol) -> list[rules.StratumKey]:
    return rules.strata_for(
        site_codes=Site.objects.filter(is_active=True).values_list("code", flat=True),
        stratify_by_site=protocol.stratify_by_site,
        severity_strata=protocol.severity_strata,
    )


# --- Lists (the views let only the administrator reach these) --------------------------------


def active_list(protocol: Protocol | None = None) -> RandomizationList | None:
    protocol = protocol or Protocol.objects.filter(is_current=True).first()
    return RandomizationList.objects.filter(protocol=protocol, status=ListStatus.ACTIVE).first()


def list_entries(randomization_list: RandomizationList) -> list[rules.Entry]:
    """The list as plain entries, in stratum and sequence order: one query."""
    rows = (
        ListEntry.objects.filter(stratum__randomization_list=randomization_list)
        .order_by("stratum__code", "sequence")
        .values_list("stratum__code", "sequence", "arm__code", "block", "block_size")
    )
    return [rules.Entry(*row) for row in rows]


@dataclass(frozen=True)
class Fingerprint:
    recorded: str
    current: str

    @property
    def matches(self) -> bool:
        return bool(self.recorded) and self.recorded == self.current


def list_fingerprint(randomization_list: RandomizationList) -> Fingerprint:
    """The recorded SHA-256 against one computed now from the stored entries."""
    return Fingerprint(
        recorded=randomization_list.sha256,
        current=rules.list_sha256(list_entries(randomization_list)),
    )


def list_report(randomization_list: RandomizationList) -> list[rules.StratumReport]:
    protocol = randomization_list.protocol
    return rules.list_report(
        list_entries(randomization_list),
        strata=list(randomization_list.strata.order_by("pk").values_list("code", flat=True)),
        ratios=protocol_ratios(protocol),
        block_sizes=protocol.block_sizes,
    )


@dataclass(frozen=True)
class Stock:
    stratum: Stratum
    total: int
    used: int

    @property
    def remaining(self) -> int:
        return self.total - self.used

    @property
    def low(self) -> bool:
        return rules.is_low(remaining=self.remaining, total=self.total)


def strata_stock(randomization_list: RandomizationList) -> list[Stock]:
    strata = randomization_list.strata.select_related("site").annotate(
        total=Count("entries"), used=Count("entries__allocation")
    )
    return [Stock(s, s.total, s.used) for s in strata]


def stratum_stock(stratum: Stratum) -> Stock:
    counts = ListEntry.objects.filter(stratum=stratum).aggregate(
        total=Count("pk"), used=Count("allocation")
    )
    return Stock(stratum, counts["total"], counts["used"])


# --- Allocations as a user may see them ---------------------------------------------------------


def allocation_shown(participant) -> Allocation | None:
    """The participant's allocation (with its arm) as a page shows it, read once for the
    participant object that the page hands to its panels and its timeline."""
    if "_allocation_shown" not in participant.__dict__:
        participant.__dict__["_allocation_shown"] = (
            Allocation.objects.select_related("arm").filter(participant=participant).first()
        )
    return participant.__dict__["_allocation_shown"]


def allocations_for_user(user) -> QuerySet[Allocation]:
    return scope_to_sites(
        Allocation.objects.select_related(
            "participant__site", "arm", "stratum", "randomized_by", "marked_in_error_by"
        ),
        user,
        site_field="participant__site",
    )


def allocation_for_user(user, study_number: str) -> Allocation:
    """Another site's allocation is a 404: filtered in the query."""
    return get_object_or_404(allocations_for_user(user), participant__study_number=study_number)


class RosterStatus:
    ON_STUDY = "on_study"
    WITHDRAWN = "withdrawn"
    IN_ERROR = "in_error"


# What the roster shows, and all it reads: no identifier (name, MRN, contact) leaves the
# database for it, and the rows stay narrow enough to sort in memory.
ROSTER_FIELDS = (
    "randomized_at",
    "status",
    "participant__study_number",
    "participant__sex",
    "participant__date_of_birth",
    "participant__site__code",
    "participant__site__time_zone",
    "arm__code",
    "stratum__severity",
)


def roster(user) -> QuerySet[Allocation]:
    """One row per allocation the user may see, with what the roster shows: a fixed number of
    queries whatever the number of rows."""
    return (
        scope_to_sites(
            Allocation.objects.select_related("participant__site", "arm", "stratum"),
            user,
            site_field="participant__site",
        )
        .only(*ROSTER_FIELDS)
        .annotate(withdrawn=Exists(Withdrawal.objects.filter(participant=OuterRef("participant"))))
        .order_by("-randomized_at")
    )


def roster_with_status(queryset: QuerySet[Allocation], status: str) -> QuerySet[Allocation]:
    if status == RosterStatus.IN_ERROR:
        return queryset.filter(status=AllocationStatus.IN_ERROR)
    if status == RosterStatus.WITHDRAWN:
        return queryset.filter(status=AllocationStatus.VALID, withdrawn=True)
    if status == RosterStatus.ON_STUDY:
        return queryset.filter(status=AllocationStatus.VALID, withdrawn=False)
    return queryset


# --- The roster's clinical columns, filled by the apps above through a signal ----------------


@dataclass(frozen=True)
class ClinicalProgress:
    """What the apps above arms add to a roster row (dosing its progress and next dose;
    outcomes, when it answers, the WHO score and open adverse events). Empty until they do."""

    dosing_progress: str = ""
    next_due_at: datetime | None = None
    next_due_overdue: bool = False
    latest_who_score: str = ""
    open_adverse_events: str = ""


def roster_clinical_progress(rows: list[Allocation]) -> dict[int, ClinicalProgress]:
    """Participant id -> progress, for one page of the roster at once: each app that fills
    columns answers `roster_progress` for the whole page (a fixed number of queries each)."""
    if not rows:
        return {}
    columns: dict[int, dict] = defaultdict(dict)
    for _receiver, answer in roster_progress.send(sender=Allocation, rows=rows):
        for participant_id, values in (answer or {}).items():
            columns[participant_id].update(values)
    return {pid: ClinicalProgress(**values) for pid, values in columns.items()}


# --- Balance --------------------------------------------------------------------------------------


@dataclass
class BalanceReport:
    arms: list[str]
    by_stratum: list[rules.BalanceRow]
    by_site: list[rules.BalanceRow]
    overall: rules.BalanceRow

    @property
    def largest(self) -> rules.BalanceRow | None:
        rows = [r for r in self.by_stratum + self.by_site if r.total]
        return max(rows, key=lambda r: r.imbalance, default=None)


def balance_report(protocol: Protocol) -> BalanceReport:
    """Allocated per arm against the ratio, per stratum and per site. Allocations in error
    count: they used their entry."""
    ratios = protocol_ratios(protocol)
    rows = (
        Allocation.objects.filter(arm__protocol=protocol)
        .values("stratum__code", "participant__site__code", "arm__code")
        .annotate(n=Count("pk"))
    )
    per_stratum: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    per_site: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    overall: dict[str, int] = defaultdict(int)
    for row in rows:
        per_stratum[row["stratum__code"]][row["arm__code"]] += row["n"]
        per_site[row["participant__site__code"]][row["arm__code"]] += row["n"]
        overall[row["arm__code"]] += row["n"]
    return BalanceReport(
        arms=list(ratios),
        by_stratum=[rules.balance(k, per_stratum[k], ratios) for k in sorted(per_stratum)],
        by_site=[rules.balance(k, per_site[k], ratios) for k in sorted(per_site)],
        overall=rules.balance("", overall, ratios),
    )


def in_error_count(protocol: Protocol) -> int:
    return Allocation.objects.filter(
        Q(arm__protocol=protocol), status=AllocationStatus.IN_ERROR
    ).count()
