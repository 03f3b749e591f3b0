"""Where each participant stands in the CONSORT flow, and the colour of each record-status
cell: plain functions over plain values, so that their tests need no database."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.utils.translation import gettext_lazy as _

from outcomes.models import EndReason

# End-of-study reasons, grouped as CONSORT groups them.
ANALYSED_ENDS = (EndReason.COMPLETED, EndReason.DIED)
LOST_ENDS = (EndReason.LOST,)
DISCONTINUED_ENDS = (EndReason.WITHDREW, EndReason.INVESTIGATOR)

# Why an allocated participant did not receive the intervention.
NOT_RECEIVED_ENDED = "ended"  # the study ended before any dose
NOT_RECEIVED_WITHDREW = "withdrew"  # withdrew from study treatment before any dose
NOT_RECEIVED_NOT_GIVEN = "not_given"  # every recorded dose was not given
NOT_RECEIVED_PENDING = "pending"  # no dose given yet: the first may still come

NOT_RECEIVED_LABELS = {
    NOT_RECEIVED_ENDED: _("Study ended before any dose"),
    NOT_RECEIVED_WITHDREW: _("Withdrew from study treatment before any dose"),
    NOT_RECEIVED_NOT_GIVEN: _("Doses recorded as not given"),
    NOT_RECEIVED_PENDING: _("No dose given yet"),
}


@dataclass(frozen=True)
class ParticipantFlow:
    """What the CONSORT diagram reads of one participant."""

    screened: bool
    decision: str | None  # of the latest screening
    failures: tuple[str, ...]  # failed criteria of the latest screening
    refused: bool  # a consent refusal is recorded
    withdrawn: bool  # a withdrawal of any scope is recorded
    off_study_withdrawal: bool  # withdrawn from follow-up (or the use of data)
    treatment_withdrawal: bool  # withdrawn from study treatment
    arm: str | None  # allocated arm's code; None = not randomized
    arm_has_intervention: bool  # the arm has a dose schedule
    doses_given: int
    doses_not_given: int
    end_reason: str | None


@dataclass
class ArmFlow:
    code: str
    name: str
    allocated: int = 0
    received: int = 0
    not_received: Counter = field(default_factory=Counter)
    has_intervention: bool = True
    lost: int = 0
    discontinued: Counter = field(default_factory=Counter)
    ongoing: int = 0
    analysed: Counter = field(default_factory=Counter)  # completed / died

    @property
    def not_received_total(self) -> int:
        return sum(self.not_received.values())

    @property
    def discontinued_total(self) -> int:
        return sum(self.discontinued.values())

    @property
    def analysed_total(self) -> int:
        return sum(self.analysed.values())

    @property
    def discontinued_rows(self) -> list[tuple[str, int]]:
        return sorted(self.discontinued.items())

    @property
    def not_received_rows(self) -> list[tuple[str, str, int]]:
        return [(k, str(NOT_RECEIVED_LABELS[k]), n) for k, n in sorted(self.not_received.items())]


@dataclass
class Consort:
    assessed: int = 0
    excluded: int = 0  # latest screening ineligible, not randomized
    excluded_by_reason: Counter = field(default_factory=Counter)  # criterion -> participants
    declined: int = 0  # refused consent, not randomized, not ineligible
    other: int = 0  # withdrew before randomization
    pending: int = 0  # eligible or incomplete, no decision yet
    randomized: int = 0
    arms: list[ArmFlow] = field(default_factory=list)

    @property
    def not_randomized(self) -> int:
        return self.excluded + self.declined + self.other + self.pending

    @property
    def reasons(self) -> list[tuple[str, int]]:
        return sorted(self.excluded_by_reason.items())


def not_received_reason(flow: ParticipantFlow) -> str | None:
    """Why an allocated participant has not received the intervention; None if they have
    (or their arm has no study intervention to give)."""
    if not flow.arm_has_intervention or flow.doses_given:
        return None
    if flow.end_reason:
        return NOT_RECEIVED_ENDED
    if flow.treatment_withdrawal or flow.off_study_withdrawal:
        return NOT_RECEIVED_WITHDREW
    if flow.doses_not_given:
        return NOT_RECEIVED_NOT_GIVEN
    return NOT_RECEIVED_PENDING


def tally(flows, arms: list[tuple[str, str]], *, arms_with_intervention: set[str]) -> Consort:
    """The CONSORT counts from each participant's flow. A randomized participant counts as
    assessed even if their screening cannot be read, so that the boxes always add up."""
    consort = Consort(
        arms=[
            ArmFlow(code, name, has_intervention=code in arms_with_intervention)
            for code, name in arms
        ]
    )
    by_code = {arm.code: arm for arm in consort.arms}
    for flow in flows:
        if not flow.screened and flow.arm is None:
            continue  # registered, never assessed
        consort.assessed += 1
        if flow.arm is None:
            if flow.decision == "ineligible":
                consort.excluded += 1
                consort.excluded_by_reason.update(set(flow.failures))
            elif flow.refused:
                consort.declined += 1
            elif flow.withdrawn:
                consort.other += 1
            else:
                consort.pending += 1
            continue
        consort.randomized += 1
        arm = by_code.get(flow.arm)
        if arm is None:  # an arm no longer in the protocol: shown, not dropped
            arm = ArmFlow(flow.arm, flow.arm, has_intervention=flow.arm_has_intervention)
            by_code[flow.arm] = arm
            consort.arms.append(arm)
        arm.allocated += 1
        reason = not_received_reason(flow)
        if reason is None:
            arm.received += 1
        else:
            arm.not_received[reason] += 1
        if flow.end_reason in ANALYSED_ENDS:
            arm.analysed[flow.end_reason] += 1
        elif flow.end_reason in LOST_ENDS:
            arm.lost += 1
        elif flow.end_reason:
            arm.discontinued[flow.end_reason] += 1
        elif flow.off_study_withdrawal:
            arm.discontinued["withdrawal"] += 1
        else:
            arm.ongoing += 1
    return consort


# --- Record-status grid ---------------------------------------------------------------------

# Status -> Bootstrap background class; the label beside the colour says the same in words.
DONE, PARTIAL, ATTENTION, PROBLEM, NONE = "done", "partial", "attention", "problem", "none"
STATUS_CLASSES = {
    DONE: "text-bg-success",
    PARTIAL: "text-bg-info",
    ATTENTION: "text-bg-warning",
    PROBLEM: "text-bg-danger",
    NONE: "text-bg-light",
}


@dataclass(frozen=True)
class Cell:
    step: str  # the column's key
    status: str
    text: str

    @property
    def css(self) -> str:
        return STATUS_CLASSES[self.status]


def screening_cell(decision: str | None) -> Cell:
    if decision == "eligible":
        return Cell("screening", DONE, str(_("Eligible")))
    if decision == "ineligible":
        return Cell("screening", PROBLEM, str(_("Ineligible")))
    if decision == "incomplete":
        return Cell("screening", ATTENTION, str(_("Incomplete")))
    return Cell("screening", NONE, str(_("Not screened")))


def consent_cell(consented: bool, refused: bool) -> Cell:
    if consented:
        return Cell("consent", DONE, str(_("Consented")))
    if refused:
        return Cell("consent", PROBLEM, str(_("Refused")))
    return Cell("consent", NONE, str(_("Not taken")))


def signoff_cell(decision: str | None, signed: bool) -> Cell:
    if signed:
        return Cell("signoff", DONE, str(_("Signed")))
    if decision == "eligible":
        return Cell("signoff", ATTENTION, str(_("Awaited")))
    return Cell("signoff", NONE, str(_("Not needed yet")))


def allocation_cell(arm: str | None, in_error: bool) -> Cell:
    if arm and in_error:
        return Cell("allocation", PROBLEM, str(_("%(arm)s, in error")) % {"arm": arm})
    if arm:
        return Cell("allocation", DONE, arm)
    return Cell("allocation", NONE, str(_("Not randomized")))


def doses_cell(given: int, total: int, missed: int) -> Cell:
    text = f"{given}/{total}"
    if not total:
        return Cell("doses", NONE, str(_("None scheduled")))
    if missed:
        return Cell(
            "doses", PROBLEM, str(_("%(done)s, %(n)s missed")) % {"done": text, "n": missed}
        )
    if given >= total:
        return Cell("doses", DONE, text)
    return Cell("doses", PARTIAL, text)


def visits_cell(done: int, due: int, missed: int) -> Cell:
    text = str(_("%(done)s done · %(due)s due · %(missed)s missed")) % {
        "done": done,
        "due": due,
        "missed": missed,
    }
    if not (done or due or missed):
        return Cell("visits", NONE, str(_("None scheduled")))
    if missed:
        return Cell("visits", PROBLEM, text)
    if due:
        return Cell("visits", PARTIAL, text)
    return Cell("visits", DONE, text)


def ae_cell(open_events: int, total: int) -> Cell:
    if open_events:
        return Cell("aes", ATTENTION, str(_("%(n)s open")) % {"n": open_events})
    if total:
        return Cell("aes", DONE, str(_("%(n)s, all ended")) % {"n": total})
    return Cell("aes", NONE, str(_("None")))


def end_cell(reason: str | None, reason_label: str) -> Cell:
    if reason == "completed":
        return Cell("end", DONE, reason_label)
    if reason:
        return Cell("end", PROBLEM if reason in (*LOST_ENDS, "died") else ATTENTION, reason_label)
    return Cell("end", NONE, str(_("On study")))


# --- Enrollment over time -------------------------------------------------------------------


def week_start(day: date) -> date:
    """The Monday of `day`'s week (ISO weeks)."""
    return day - timedelta(days=day.weekday())


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    values: tuple[int, ...]  # cumulative, one per week

    @property
    def total(self) -> int:
        return self.values[-1] if self.values else 0


@dataclass(frozen=True)
class Cumulative:
    weeks: tuple[date, ...]  # each week's Monday, oldest first, without gaps
    series: tuple[Series, ...]

    @property
    def rows(self) -> list[tuple[date, list[int]]]:
        """Week by week, each series' cumulative count: the chart's table."""
        return [(week, [s.values[i] for s in self.series]) for i, week in enumerate(self.weeks)]


def cumulative_by_week(
    randomized: list[tuple[date, str]], keys: list[tuple[str, str]], *, until: date
) -> Cumulative:
    """Participants randomized, counted up week by week for each key (an arm, a site).

    `randomized` holds each randomization's date (at its site) and key; `keys` the (key,
    label) pairs in the order to show, those not named after them; `until` the last day to
    show (the weeks run from the first randomization's to its week). Nothing randomized: no
    weeks.
    """
    if not randomized:
        return Cumulative((), tuple(Series(k, label, ()) for k, label in keys))
    first = week_start(min(day for day, _key in randomized))
    last = week_start(max(until, *(day for day, _key in randomized)))
    weeks = tuple(first + timedelta(weeks=i) for i in range((last - first).days // 7 + 1))
    per_week: dict[str, Counter] = {}
    for day, key in randomized:
        per_week.setdefault(key, Counter())[week_start(day)] += 1
    labels = dict(keys)
    ordered = [k for k, _label in keys] + sorted(k for k in per_week if k not in labels)
    series = []
    for key in ordered:
        counts = per_week.get(key, Counter())
        running, values = 0, []
        for week in weeks:
            running += counts[week]
            values.append(running)
        series.append(Series(key, labels.get(key, key), tuple(values)))
    return Cumulative(weeks, tuple(series))
