"""Outcomes' protocol rules as pure functions: visit days and windows in site dates, a visit's
place against its window, the blood-gas ratio and the visit form's plausible ranges.
No request, no ORM: their tests need no database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

from django.utils import timezone
from django.utils.translation import gettext_lazy as _

# --- Visits ---

WHO_MIN, WHO_MAX = 0, 10
SPO2_MIN, SPO2_MAX = 50, 100
PAO2_MIN, PAO2_MAX = Decimal(20), Decimal(700)
FIO2_MIN, FIO2_MAX = Decimal("0.21"), Decimal("1.00")

# WHO Working Group on the Clinical Characterisation and Management of COVID-19 infection,
# "A minimal common outcome measure set for COVID-19 clinical research", Lancet Infect Dis 2020.
WHO_LEVELS: tuple[tuple[int, str], ...] = (
    (0, _("Uninfected: no viral RNA detected")),
    (1, _("Ambulatory, mild disease: asymptomatic, viral RNA detected")),
    (2, _("Ambulatory, mild disease: symptomatic, independent")),
    (3, _("Ambulatory, mild disease: symptomatic, assistance needed")),
    (4, _("Hospitalised, moderate disease: no oxygen therapy")),
    (5, _("Hospitalised, moderate disease: oxygen by mask or nasal prongs")),
    (6, _("Hospitalised, severe disease: oxygen by non-invasive ventilation or high flow")),
    (
        7,
        _(
            "Hospitalised, severe disease: intubation and mechanical ventilation, "
            "PaO2/FiO2 ≥ 150 or SpO2/FiO2 ≥ 200"
        ),
    ),
    (
        8,
        _(
            "Hospitalised, severe disease: mechanical ventilation, PaO2/FiO2 < 150 "
            "(SpO2/FiO2 < 200) or vasopressors"
        ),
    ),
    (
        9,
        _(
            "Hospitalised, severe disease: mechanical ventilation, PaO2/FiO2 < 150 and "
            "vasopressors, dialysis or ECMO"
        ),
    ),
    (10, _("Dead")),
)

# Visit reminders go out at this site time on the day before the window opens.
REMINDER_CLOCK = time(8, 0)


@dataclass(frozen=True)
class VisitWindow:
    due_on: date
    window_start: date
    window_end: date


def study_day_zero(randomized_at: datetime, zone: ZoneInfo) -> date:
    """Day 0 is the site's calendar date at randomization, not the server's."""
    return timezone.localtime(randomized_at, zone).date()


def visit_window(day_zero: date, *, study_day: int, window_days: int) -> VisitWindow:
    due_on = day_zero + timedelta(days=study_day)
    # No visit window reaches back before randomization: day 0 is the baseline.
    start = max(due_on - timedelta(days=window_days), day_zero)
    return VisitWindow(due_on, start, due_on + timedelta(days=window_days))


def days_outside_window(visit_date: date, window: VisitWindow) -> int | None:
    """None on time; negative days early, positive days late."""
    if visit_date < window.window_start:
        return (visit_date - window.window_start).days
    if visit_date > window.window_end:
        return (visit_date - window.window_end).days
    return None


def window_closed(now: datetime, zone: ZoneInfo, window_end: date) -> bool:
    """A visit is missed once its last day on time has ended at the site."""
    return timezone.localtime(now, zone).date() > window_end


def reminder_at(window_start: date, zone: ZoneInfo) -> datetime:
    """The day before the window opens, at the reminder hour, site time."""
    return datetime.combine(window_start - timedelta(days=1), REMINDER_CLOCK, tzinfo=zone)


def needs_reminder(window: VisitWindow, day_zero: date) -> bool:
    # The baseline's window opens on randomization day: there is no "day before" to warn on.
    return window.window_start > day_zero


def visit_date_error(
    visit_date: date, *, day_zero: date, study_end: date, today: date
) -> str | None:
    """A visit happens between randomization and the last visit's window, and not later than
    the site's today."""
    if visit_date > today:
        return str(_("The visit date is in the future (today at the site is %(today)s).")) % {
            "today": today.isoformat()
        }
    if visit_date < day_zero:
        return str(
            _("The visit date is before randomization (%(day_zero)s): outside the study period.")
        ) % {"day_zero": day_zero.isoformat()}
    if visit_date > study_end:
        return str(_("The visit date is after the study period, which ends on %(end)s.")) % {
            "end": study_end.isoformat()
        }
    return None


def normalise_fio2(value: Decimal) -> Decimal | None:
    """FiO2 as a fraction, whether typed as 0.21-1.0 or as 21-100 %; None when it is neither."""
    if FIO2_MIN <= value <= FIO2_MAX:
        return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if FIO2_MIN * 100 <= value <= FIO2_MAX * 100:
        return (value / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return None


def pf_ratio(pao2: Decimal, fio2: Decimal) -> int:
    """PaO2 (mmHg) over FiO2 (a fraction, or a percentage, normalised first), to the unit."""
    fraction = normalise_fio2(Decimal(fio2))
    if fraction is None:
        raise ValueError(f"FiO2 {fio2} is neither a fraction 0.21-1.0 nor 21-100 %")
    return int((Decimal(pao2) / fraction).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def range_error(value, low, high, *, label: str, unit: str = "") -> str | None:
    if value is None or low <= value <= high:
        return None
    return str(_("%(label)s must be between %(low)s and %(high)s%(unit)s.")) % {
        "label": label,
        "low": low,
        "high": high,
        "unit": f" {unit}" if unit else "",
    }


# The measurements of a visit that may each be "not done" with a reason.
MEASURED_FIELDS = (
    "who_score",
    "spo2",
    "respiratory_support",
    "pao2",
    "fio2",
    "lymphocytes",
    "crp",
    "il6",
    "chest_ct",
)


def measurement_problems(values: dict) -> dict[str, str]:
    """Field -> message for a visit's findings: each value in its range, and each finding a
    value or "not done" with its reason, never both. `values` holds each measured field, its
    `_not_done` and its `_not_done_reason`."""
    problems: dict[str, str] = {}
    ranges = {
        "who_score": (WHO_MIN, WHO_MAX, _("The WHO score"), ""),
        "spo2": (SPO2_MIN, SPO2_MAX, _("SpO2"), "%"),
        "pao2": (PAO2_MIN, PAO2_MAX, _("PaO2"), "mmHg"),
    }
    for name, (low, high, label, unit) in ranges.items():
        error = range_error(values.get(name), low, high, label=label, unit=unit)
        if error:
            problems[name] = error
    fio2 = values.get("fio2")
    if fio2 is not None and normalise_fio2(Decimal(fio2)) is None:
        problems["fio2"] = str(
            _("FiO2 must be a fraction from 0.21 to 1.0, or a percentage from 21 to 100.")
        )
    for name in ("lymphocytes", "crp", "il6"):
        value = values.get(name)
        if value is not None and value < 0:
            problems[name] = str(_("A count or a concentration cannot be negative."))
    for name in MEASURED_FIELDS:
        value = values.get(name)
        blank = value is None or value == ""
        reason = (values.get(f"{name}_not_done_reason") or "").strip()
        if values.get(f"{name}_not_done"):
            if not blank:
                problems.setdefault(
                    name, str(_('Either a value or "not done": leave the value empty if not done.'))
                )
            if not reason:
                problems[f"{name}_not_done_reason"] = str(_("Say why it was not done."))
        elif reason:
            problems[f"{name}_not_done"] = str(_('Tick "not done" for a reason to be kept.'))
    return problems


# --- Adverse events and end of study ---

# Adverse events are collected from randomization (day 0) to day 28 (PROTOCOL.md).
AE_LAST_STUDY_DAY = 28
# A serious adverse event is reported to the sponsor and the ethics committee within this.
SAE_REPORT_HOURS = 24
FATAL_GRADE = 5
DEATH_CRITERION = "death"
# Seriousness criteria (ICH E2A), in the order the form lists them.
SERIOUSNESS_CRITERIA: tuple[tuple[str, str], ...] = (
    (DEATH_CRITERION, _("Results in death")),
    ("life_threatening", _("Life-threatening")),
    ("hospitalisation", _("Requires or prolongs hospitalisation")),
    ("disability", _("Persistent or significant disability or incapacity")),
    ("congenital_anomaly", _("Congenital anomaly or birth defect")),
    ("important_medical_event", _("Important medical event")),
)


def _iso(day: date) -> str:
    return day.isoformat()


def adverse_event_problems(
    *,
    onset: date,
    end: date | None,
    grade: int,
    death_date: date | None,
    serious: bool,
    criteria: set[str],
    day_zero: date,
    today: date,
) -> dict[str, str]:
    """Field -> message for an adverse event that cannot be so; empty when it can.
    `day_zero` is the site's date of randomization, `today` the site's today."""
    problems: dict[str, str] = {}
    last_day = day_zero + timedelta(days=AE_LAST_STUDY_DAY)
    if onset < day_zero:
        message = _("The onset is before randomization (%(day_zero)s): outside the study.")
        problems["onset_date"] = str(message) % {"day_zero": _iso(day_zero)}
    elif onset > today:
        problems["onset_date"] = str(
            _("The onset is in the future (today at the site is %(today)s).")
        ) % {"today": _iso(today)}
    elif onset > last_day:
        problems["onset_date"] = str(
            _("The onset is after day 28 (%(last)s): outside the adverse-event period.")
        ) % {"last": _iso(last_day)}
    if end is not None:
        if end < onset:
            problems["end_date"] = str(_("The event cannot end before its onset (%(onset)s).")) % {
                "onset": _iso(onset)
            }
        elif end > today:
            problems["end_date"] = str(
                _("The end is in the future (today at the site is %(today)s).")
            ) % {"today": _iso(today)}
    if grade == FATAL_GRADE and death_date is None:
        problems["death_date"] = str(_("A grade 5 event is a death: give the date of death."))
    elif grade != FATAL_GRADE and death_date is not None:
        problems["death_date"] = str(_("Only a grade 5 event has a date of death."))
    elif death_date is not None and death_date < onset:
        problems["death_date"] = str(
            _("The date of death cannot be before the onset (%(onset)s).")
        ) % {"onset": _iso(onset)}
    elif death_date is not None and death_date > today:
        problems["death_date"] = str(
            _("The date of death is in the future (today at the site is %(today)s).")
        ) % {"today": _iso(today)}
    if serious and not criteria:
        problems["serious"] = str(_("A serious event needs at least one seriousness criterion."))
    elif not serious and criteria:
        problems["serious"] = str(
            _("Seriousness criteria are for a serious event: tick Serious or clear them.")
        )
    elif grade == FATAL_GRADE and DEATH_CRITERION not in criteria:
        problems["serious"] = str(
            _("A grade 5 event is serious with the criterion 'Results in death'.")
        )
    return problems


def sae_report_due(clock_started_at: datetime) -> datetime:
    return clock_started_at + timedelta(hours=SAE_REPORT_HOURS)


def time_left_text(due: datetime, now: datetime) -> str:
    """'5 h 03 min left' or 'overdue by 1 h 10 min', to the minute (rounded down)."""
    seconds = int((due - now).total_seconds())
    hours, minutes = divmod(abs(seconds) // 60, 60)
    values = {"hours": hours, "minutes": f"{minutes:02d}"}
    if seconds >= 0:
        return str(_("%(hours)s h %(minutes)s min left")) % values
    return str(_("overdue by %(hours)s h %(minutes)s min")) % values


@dataclass(frozen=True)
class Intervention:
    """What an adverse event may be related to: one infusion, or one course of tablets."""

    key: str
    label: str
    schedule_id: int
    dose_id: int | None = None


INFUSION_ROUTE = "intravenous"


def interventions(schedules, doses) -> list[Intervention]:
    """The study interventions of a participant's arm: each infusion of an intravenous
    schedule on its own (each can cause a reaction), any other schedule as one course.
    `schedules`: (id, product, route); `doses`: (id, schedule id, sequence, study day)."""
    found: list[Intervention] = []
    for schedule_id, product, route in schedules:
        if route != INFUSION_ROUTE:
            label = str(_("%(product)s, the course")) % {"product": product}
            found.append(Intervention(f"course-{schedule_id}", label, schedule_id))
            continue
        for dose_id, dose_schedule_id, sequence, study_day in doses:
            if dose_schedule_id == schedule_id:
                label = str(_("%(product)s, infusion %(n)s (day %(day)s)")) % {
                    "product": product,
                    "n": sequence,
                    "day": study_day,
                }
                found.append(Intervention(f"dose-{dose_id}", label, schedule_id, dose_id))
    return found


def end_of_study_problems(
    *, completed: bool, ended_on: date, day_zero: date, today: date
) -> dict[str, str]:
    """Field -> message for an end of study that cannot be so."""
    if ended_on < day_zero:
        message = _("The end of study is before randomization (%(day_zero)s).")
        return {"ended_on": str(message) % {"day_zero": _iso(day_zero)}}
    if ended_on > today:
        message = _("The end of study is in the future (today at the site is %(today)s).")
        return {"ended_on": str(message) % {"today": _iso(today)}}
    day_28 = day_zero + timedelta(days=AE_LAST_STUDY_DAY)
    if completed and ended_on < day_28:
        message = _("Completed means day 28 was reached: day 28 is %(day_28)s.")
        return {"ended_on": str(message) % {"day_28": _iso(day_28)}}
    return {}


# --- Derived endpoints ---

# Endpoints are read to day 28 of the study (day 0: the site's date of randomization).
ENDPOINT_LAST_DAY = 28
# Clinical improvement: the WHO score this many points below the baseline (day 0) score.
IMPROVEMENT_POINTS = 2
# Respiratory support that is not "free of invasive ventilation".
INVASIVE_SUPPORT = frozenset({"invasive", "ecmo"})


class Observation(NamedTuple):
    """What one visit found, on the study day it happened (not the day it was planned for).
    `who_score` None: not done or not recorded; `respiratory_support` "": the same."""

    study_day: int
    who_score: int | None
    respiratory_support: str


@dataclass(frozen=True)
class TimeToEvent:
    """`day` of the event, or of censoring when `event` is False."""

    day: int
    event: bool


def _died_by_day_28(death_day: int | None) -> bool:
    return death_day is not None and death_day <= ENDPOINT_LAST_DAY


def _followed_to_day_28(death_day: int | None, end_day: int | None) -> bool:
    return end_day is None or end_day >= ENDPOINT_LAST_DAY or _died_by_day_28(death_day)


def mortality_28_day(*, death_day: int | None, end_day: int | None) -> bool | None:
    """28-day all-cause mortality: True when the participant died on or before day 28; False
    when followed alive to day 28; None (not known) when follow-up ended before day 28 with
    the participant alive, lost or withdrawn, or goes on. `end_day` is the last study day of
    follow-up (the end of study, or the site's today while on study); None: past day 28."""
    if _died_by_day_28(death_day):
        return True
    if _followed_to_day_28(death_day, end_day):
        return False
    return None


def time_to_improvement(
    observations: Iterable[tuple[int, int | None, str]],
    *,
    discharge_day: int | None,
    death_day: int | None,
    end_day: int | None,
) -> TimeToEvent | None:
    """Time to clinical improvement: the first study day after day 0 with a WHO score at
    least 2 points below the baseline (the day-0 score), or the day of hospital discharge,
    whichever comes first (both on one day: that day).

    Censored at day 28, or at `end_day` (the last day of follow-up) when earlier. A death
    before improvement is censored at day 28, not on the day of death: censoring at death
    would count death as uninformative and flatter an arm with early deaths.

    None (undefined) when there is no WHO score on day 0: without a baseline, "2 points
    below" means nothing. Several observations on one day: the day counts when any of them
    is low enough; the baseline is the first day-0 observation with a score."""
    observations = sorted((Observation(*o) for o in observations), key=lambda o: o.study_day)
    baseline = next(
        (o.who_score for o in observations if o.study_day == 0 and o.who_score is not None),
        None,
    )
    if baseline is None:
        return None
    last_day = ENDPOINT_LAST_DAY
    if end_day is not None and not _died_by_day_28(death_day):
        last_day = min(last_day, end_day)
    # Nothing can happen after death, whatever was recorded.
    event_last_day = last_day if death_day is None else min(last_day, death_day)
    candidates = [
        o.study_day
        for o in observations
        if 0 < o.study_day <= event_last_day
        and o.who_score is not None
        and o.who_score <= baseline - IMPROVEMENT_POINTS
    ]
    if discharge_day is not None and 0 <= discharge_day <= event_last_day:
        candidates.append(discharge_day)
    if candidates:
        return TimeToEvent(min(candidates), event=True)
    return TimeToEvent(last_day, event=False)


def ventilation_free_days(
    observations: Iterable[tuple[int, int | None, str]],
    *,
    death_day: int | None,
    end_day: int | None,
) -> int | None:
    """Days alive and free of invasive ventilation (invasive mechanical ventilation or ECMO)
    among study days 1 to 28 (at most 28).

    A day's state is the respiratory support last recorded on or before it (carried forward:
    visits are days apart, and a state is known until a visit says otherwise); a day with
    several records is not free when any of them is invasive. The day of death and every day
    after it are not free. None (not known) when no respiratory support is recorded on or
    before day 1 (where the participant started is unknown), or when follow-up ended before
    day 28 with the participant alive (lost, withdrawn, or still on study)."""
    if not _followed_to_day_28(death_day, end_day):
        return None
    invasive_on: dict[int, bool] = {}
    for o in (Observation(*o) for o in observations):
        if o.respiratory_support and o.study_day <= ENDPOINT_LAST_DAY:
            invasive_on[o.study_day] = invasive_on.get(o.study_day, False) or (
                o.respiratory_support in INVASIVE_SUPPORT
            )
    if not any(day <= 1 for day in invasive_on):
        return None
    free = 0
    invasive = False
    for day in range(0, ENDPOINT_LAST_DAY + 1):
        invasive = invasive_on.get(day, invasive)
        alive = death_day is None or day < death_day
        if day >= 1 and alive and not invasive:
            free += 1
    return free


def worst_who_score(
    observations: Iterable[tuple[int, int | None, str]], *, death_day: int | None
) -> int | None:
    """The highest WHO score recorded at any visit; 10 (dead) after a death by day 28, with or
    without a visit to say so. None when no score is known."""
    scores = [Observation(*o).who_score for o in observations]
    scores = [score for score in scores if score is not None]
    if _died_by_day_28(death_day):
        scores.append(WHO_MAX)
    return max(scores, default=None)


# --- What the investigator's signatures sign ----------------------------------------------------
#
# Each reads attributes only, so that the data migration's historical models fit too. What is
# left out is bookkeeping: when and by whom a record was typed in, the SAE reporting clock and
# report (a serious event's report does not change what was assessed).

# The event as the investigator assessed it: action taken and outcome are part of it (whether
# the event abated when the treatment stopped weighs in its causality).
SIGNED_ADVERSE_EVENT_FIELDS = (
    "participant_id",
    "term",
    "onset_date",
    "end_date",
    "grade",
    "death_date",
    "serious",
    *(f"criterion_{code}" for code, _label in SERIOUSNESS_CRITERIA),
    "action_taken",
    "outcome",
    "administration_id",
)


def _manifestation(record) -> dict:
    return {
        "signer_id": record.signer_id,
        "printed_name": record.printed_name,
        "signed_at": record.signed_at,
        "meaning": record.meaning,
    }


def causality_content(assessment, adverse_event, relatedness: Iterable) -> dict:
    """The values a causality assessment signs: its manifestation, the expectedness, the
    relatedness to each intervention, and the adverse event it assesses."""
    return {
        "record": "causality_assessment",
        "signature": _manifestation(assessment),
        "expected": assessment.expected,
        "relatedness": sorted(
            (
                [row.schedule_id, row.scheduled_dose_id or 0, row.label, row.relatedness]
                for row in relatedness
            ),
            key=lambda row: (row[0], row[1]),
        ),
        "adverse_event": {
            "id": adverse_event.pk,
            **{name: getattr(adverse_event, name) for name in SIGNED_ADVERSE_EVENT_FIELDS},
        },
    }


def end_of_study_content(end) -> dict:
    """The values the investigator's signature on the end of study signs: its manifestation
    and how and when the study ended."""
    return {
        "record": "end_of_study",
        "signature": _manifestation(end),
        "participant_id": end.participant_id,
        "reason": end.reason,
        "ended_on": end.ended_on,
        "details": end.details,
        "adverse_event_id": end.adverse_event_id,
    }
