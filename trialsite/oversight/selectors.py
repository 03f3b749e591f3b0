"""Reads for the oversight pages, scoped to the user's sites in the query.

Both pages read a constant number of queries whatever the number of participants: one
annotated participant query (subqueries for the latest screening and the counts), and the
arms of the current protocol.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.db.models import Count, Exists, F, IntegerField, JSONField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from arms.models import Allocation, AllocationStatus, Arm
from dosing.models import DoseSchedule, DoseStatus, ScheduledDose
from enrollment.models import (
    OFF_STUDY_SCOPES,
    Consent,
    ConsentRefusal,
    EligibilityCriterion,
    EligibilitySignoff,
    Screening,
    Withdrawal,
    WithdrawalScope,
)
from enrollment.selectors import participants_for_user, screening_log
from outcomes.models import AdverseEvent, EndOfStudy, EndReason, ScheduledVisit, VisitStatus
from trialsite.core.access import scope_to_sites, sites_for_user
from trialsite.core.models import Protocol
from trialsite.core.signatures import SignatureStatus

from . import rules


def _count(queryset) -> Coalesce:
    """How many rows of `queryset` (filtered on participant=OuterRef) the participant has."""
    counted = queryset.order_by().values("participant").annotate(n=Count("pk")).values("n")[:1]
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def _of(model, **filters):
    return model.objects.filter(participant=OuterRef("pk"), **filters)


def _latest_screening():
    return Screening.objects.filter(participant=OuterRef("pk")).order_by(
        "-screening_date", "-recorded_at"
    )


def current_arms() -> tuple[list[tuple[str, str]], set[str]]:
    """(code, name) of the current protocol's arms, and the codes of those with a dose schedule."""
    protocol = Protocol.objects.filter(is_current=True).first()
    arms = list(Arm.objects.filter(protocol=protocol).order_by("pk"))
    with_schedule = set(
        DoseSchedule.objects.filter(arm__protocol=protocol).values_list("arm__code", flat=True)
    )
    return [(arm.code, arm.localized_name()) for arm in arms], with_schedule


def consort_flows(user, *, site_ids=None) -> list[rules.ParticipantFlow]:
    """Each visible participant's place in the flow: one query."""
    participants = participants_for_user(user)
    if site_ids is not None:
        participants = participants.filter(site_id__in=site_ids)
    latest = _latest_screening()
    rows = participants.annotate(
        screened=Exists(_of(Screening)),
        latest_decision=Subquery(latest.values("decision")[:1]),
        latest_failures=Subquery(latest.values("failures")[:1], output_field=JSONField()),
        refused=Exists(_of(ConsentRefusal)),
        withdrawn=Exists(_of(Withdrawal)),
        off_study=Exists(_of(Withdrawal, scope__in=OFF_STUDY_SCOPES)),
        off_treatment=Exists(_of(Withdrawal, scope=WithdrawalScope.TREATMENT)),
        arm_code=F("allocation__arm__code"),
        doses_given=_count(_of(ScheduledDose, status=DoseStatus.GIVEN)),
        doses_not_given=_count(_of(ScheduledDose, status=DoseStatus.NOT_GIVEN)),
        end_reason=Subquery(_of(EndOfStudy).values("reason")[:1]),
    ).values(
        "screened",
        "latest_decision",
        "latest_failures",
        "refused",
        "withdrawn",
        "off_study",
        "off_treatment",
        "arm_code",
        "doses_given",
        "doses_not_given",
        "end_reason",
    )
    _arms, with_schedule = current_arms()
    return [
        rules.ParticipantFlow(
            screened=row["screened"],
            decision=row["latest_decision"],
            failures=tuple(row["latest_failures"] or ()),
            refused=row["refused"],
            withdrawn=row["withdrawn"],
            off_study_withdrawal=row["off_study"],
            treatment_withdrawal=row["off_treatment"],
            arm=row["arm_code"],
            arm_has_intervention=row["arm_code"] in with_schedule,
            doses_given=row["doses_given"],
            doses_not_given=row["doses_not_given"],
            end_reason=row["end_reason"],
        )
        for row in rows
    ]


def consort(user, *, site_ids=None) -> rules.Consort:
    """The CONSORT counts of the participants the user may see (at `site_ids`, if given)."""
    arms, with_schedule = current_arms()
    return rules.tally(
        consort_flows(user, site_ids=site_ids), arms, arms_with_intervention=with_schedule
    )


# --- Record-status grid ---------------------------------------------------------------------

GRID_PAGE_SIZE = 50


def record_status(user, *, site_ids=None):
    """Participants (no identifiers read) with what the grid's cells need, by site and number."""
    participants = participants_for_user(user)
    if site_ids is not None:
        participants = participants.filter(site_id__in=site_ids)
    latest = _latest_screening()
    open_doses = (DoseStatus.SCHEDULED, DoseStatus.OVERDUE, DoseStatus.GIVEN, DoseStatus.NOT_GIVEN)
    return (
        participants.only("pk", "study_number", "sequence", "site__code", "site__time_zone")
        .annotate(
            latest_screening_id=Subquery(latest.values("pk")[:1]),
            latest_decision=Subquery(latest.values("decision")[:1]),
            consented=Exists(_of(Consent)),
            refused=Exists(_of(ConsentRefusal)),
            arm_code=F("allocation__arm__code"),
            allocation_status=F("allocation__status"),
            doses_total=_count(_of(ScheduledDose, status__in=open_doses)),
            doses_given=_count(_of(ScheduledDose, status=DoseStatus.GIVEN)),
            doses_missed=_count(
                _of(ScheduledDose, status__in=(DoseStatus.NOT_GIVEN, DoseStatus.OVERDUE))
            ),
            visits_done=_count(
                _of(
                    ScheduledVisit,
                    status__in=(VisitStatus.DONE, VisitStatus.DONE_OUT_OF_WINDOW),
                )
            ),
            visits_due=_count(_of(ScheduledVisit, status=VisitStatus.DUE)),
            visits_missed=_count(_of(ScheduledVisit, status=VisitStatus.MISSED)),
            aes_total=_count(_of(AdverseEvent)),
            aes_open=_count(_of(AdverseEvent, end_date__isnull=True)),
            end_reason=Subquery(_of(EndOfStudy).values("reason")[:1]),
        )
        .annotate(
            # A sign-off invalidated since is awaited again.
            signed=Exists(
                EligibilitySignoff.objects.filter(
                    screening_id=OuterRef("latest_screening_id"),
                    signature_status=SignatureStatus.VALID,
                )
            )
        )
        .order_by("site__code", "sequence")
    )


def grid_cells(participant) -> list[rules.Cell]:
    """The row of cells of one annotated participant, in the grid's column order."""
    end_label = str(EndReason(participant.end_reason).label) if participant.end_reason else ""
    return [
        rules.screening_cell(participant.latest_decision),
        rules.consent_cell(participant.consented, participant.refused),
        rules.signoff_cell(participant.latest_decision, participant.signed),
        rules.allocation_cell(
            participant.arm_code, participant.allocation_status == AllocationStatus.IN_ERROR
        ),
        rules.doses_cell(
            participant.doses_given, participant.doses_total, participant.doses_missed
        ),
        rules.visits_cell(
            participant.visits_done, participant.visits_due, participant.visits_missed
        ),
        rules.ae_cell(participant.aes_open, participant.aes_total),
        rules.end_cell(participant.end_reason, end_label),
    ]


# --- Enrollment over time and screen failures ---------------------------------------------------


@dataclass(frozen=True)
class EnrollmentOverTime:
    by_arm: rules.Cumulative
    by_site: rules.Cumulative


def enrollment_over_time(user) -> EnrollmentOverTime:
    """Participants randomized, cumulative per week, per arm and per site, at the sites the
    user may see; each randomization in its site's week. Every allocation counts, those
    marked in error too (intention to treat, as in the CONSORT diagram). Three queries
    (allocations, arms, sites), whatever their number."""
    rows = list(
        scope_to_sites(Allocation.objects.all(), user, site_field="participant__site")
        .order_by()
        .values_list(
            "randomized_at", "arm__code", "participant__site__code", "participant__site__time_zone"
        )
    )
    dated = [
        (timezone.localtime(at, ZoneInfo(zone)).date(), arm, site) for at, arm, site, zone in rows
    ]
    sites = list(sites_for_user(user).order_by("code").values_list("code", "time_zone"))
    until = max(
        (timezone.localdate(timezone=ZoneInfo(zone)) for _code, zone in sites), default=None
    )
    until = until or timezone.localdate()
    arms, _with_schedule = current_arms()
    return EnrollmentOverTime(
        by_arm=rules.cumulative_by_week([(d, arm) for d, arm, _s in dated], arms, until=until),
        by_site=rules.cumulative_by_week(
            [(d, site) for d, _a, site in dated], [(c, c) for c, _z in sites], until=until
        ),
    )


@dataclass(frozen=True)
class FailureReason:
    code: str
    text: str
    screenings: int  # screenings that failed this criterion
    linkable: bool  # a criterion of the current protocol: the screening log filters by it


def screen_failure_reasons(user) -> tuple[list[FailureReason], int]:
    """Each failed criterion with the number of screenings (of the user's sites) that failed
    it, as the screening log filtered to that criterion lists them, in the protocol's order;
    and the number of ineligible screenings. Two queries."""
    counts: Counter[str] = Counter()
    ineligible = 0
    for failures in screening_log(user).order_by().values_list("failures", flat=True):
        if failures:
            ineligible += 1
            counts.update(list(failures))
    criteria = list(
        EligibilityCriterion.objects.filter(protocol__is_current=True).order_by("order")
    )
    known = {c.code for c in criteria}
    reasons = [
        FailureReason(c.code, c.localized_text(), counts[c.code], True)
        for c in criteria
        if counts[c.code]
    ]
    reasons += [
        FailureReason(code, "", n, False) for code, n in sorted(counts.items()) if code not in known
    ]
    return reasons, ineligible
