"""Dosing rules as pure functions of the protocol and plain values: no request, no ORM.

Day 0 is the calendar day of randomization in the site's time zone (PROTOCOL.md, Dosing). A
scheduled dose has a due time, a window and a planned amount; the window is closed: its end
is the last instant still inside it, so "overdue" is `now > window_end`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

CALENDAR_DAY = "calendar_day"
HOURS = "hours"
# The last instant of a calendar-day window: the next local midnight less the smallest step.
_INSTANT = timedelta(microseconds=1)


@dataclass(frozen=True)
class DoseScheduleDef:
    """One dose schedule of an arm, as the protocol states it (dosing's protocol section)."""

    product: str
    route: str
    study_days: list[int]
    times: list[str]
    window_kind: str
    window_hours: int
    amount: Decimal
    amount_unit: str
    per_kg: bool = False
    adjustments: list[dict] = field(default_factory=list)
    notes: str = ""
    # What a Chinese page shows instead (empty: the English).
    product_zh: str = ""
    route_zh: str = ""
    notes_zh: str = ""
    # A recorded amount outside [min, max] x planned is refused as a typing slip.
    amount_min_fraction: Decimal = Decimal("0.5")
    amount_max_fraction: Decimal = Decimal("2")
    # A dose recorded more than this many hours outside its window needs a confirmed reason.
    far_outside_window_hours: int = 24


@dataclass(frozen=True)
class PlannedAmount:
    amount: Decimal
    unit: str
    note: str = ""


@dataclass(frozen=True)
class PlannedDose:
    sequence: int  # 1..n within the schedule, in time order
    study_day: int
    due_at: datetime  # aware, UTC
    window_start: datetime
    window_end: datetime  # inclusive
    amount: Decimal
    amount_unit: str
    amount_note: str = ""


def study_day_zero(randomized_at: datetime, zone: ZoneInfo) -> date:
    """Day 0: the calendar date of randomization in the site's time zone."""
    if randomized_at.tzinfo is None:
        raise ValueError("randomized_at must be an aware datetime")
    return randomized_at.astimezone(zone).date()


def study_day_date(randomized_at: datetime, zone: ZoneInfo, study_day: int) -> date:
    return study_day_zero(randomized_at, zone) + timedelta(days=study_day)


def local_instant(day: date, clock: str, zone: ZoneInfo) -> datetime:
    """`clock` ("08:00") on `day` at the site, as an aware UTC datetime."""
    hours, minutes = (int(part) for part in clock.split(":"))
    return datetime.combine(day, time(hours, minutes), tzinfo=zone).astimezone(UTC)


def dose_window(
    *, due_at: datetime, day: date, schedule: DoseScheduleDef, zone: ZoneInfo
) -> tuple[datetime, datetime]:
    """(first, last instant) at which the dose is on time."""
    if schedule.window_kind == CALENDAR_DAY:
        start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
        next_midnight = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
        return start, next_midnight.astimezone(UTC) - _INSTANT
    if schedule.window_kind == HOURS:
        spread = timedelta(hours=schedule.window_hours)
        return due_at - spread, due_at + spread
    raise ValueError(f"unknown window kind {schedule.window_kind!r}")


def adjustment_inputs(schedules) -> list[str]:
    """The baseline values the protocol's dose adjustments read, e.g. ["egfr"]."""
    return sorted({a["when"] for s in schedules for a in s.adjustments if a.get("when")})


def adjustment_applies(adjustment: dict, *, egfr: Decimal | None) -> bool:
    """An adjustment like {when="egfr", min=30, below=60}: min <= value < below."""
    if adjustment.get("when") != "egfr" or egfr is None:
        return False
    low, below = adjustment.get("min"), adjustment.get("below")
    return (low is None or Decimal(egfr) >= Decimal(str(low))) and (
        below is None or Decimal(egfr) < Decimal(str(below))
    )


def planned_amount(
    schedule: DoseScheduleDef, *, weight_kg: Decimal | None = None, egfr: Decimal | None = None
) -> PlannedAmount:
    """The amount for this participant: per kg x weight, or an adjusted amount (eGFR)."""
    amount, unit, note = Decimal(schedule.amount), schedule.amount_unit, ""
    for adjustment in schedule.adjustments:
        if adjustment_applies(adjustment, egfr=egfr):
            amount = Decimal(str(adjustment["amount"]))
            note = adjustment.get("reason", "")
            break
    else:
        if egfr is None and any(a.get("when") == "egfr" for a in schedule.adjustments):
            note = "eGFR not given: standard dose"
    if schedule.per_kg:
        if weight_kg is None:
            raise ValueError("a per-kg dose needs the body weight")
        amount = amount * Decimal(weight_kg)
    return PlannedAmount(amount=amount, unit=unit, note=note)


def dose_plan(
    schedule: DoseScheduleDef,
    *,
    randomized_at: datetime,
    zone: ZoneInfo,
    weight_kg: Decimal | None = None,
    egfr: Decimal | None = None,
) -> list[PlannedDose]:
    """Every dose of one schedule for a participant randomized at `randomized_at`."""
    dose = planned_amount(schedule, weight_kg=weight_kg, egfr=egfr)
    slots = []
    for study_day in schedule.study_days:
        day = study_day_date(randomized_at, zone, study_day)
        for clock in schedule.times:
            due_at = local_instant(day, clock, zone)
            start, end = dose_window(due_at=due_at, day=day, schedule=schedule, zone=zone)
            slots.append((due_at, study_day, start, end))
    slots.sort()
    return [
        PlannedDose(
            sequence=n,
            study_day=study_day,
            due_at=due_at,
            window_start=start,
            window_end=end,
            amount=dose.amount,
            amount_unit=dose.unit,
            amount_note=dose.note,
        )
        for n, (due_at, study_day, start, end) in enumerate(slots, start=1)
    ]


def reminder_times(
    due_at: datetime, lead_hours: list[int], *, not_before: datetime
) -> list[tuple[int, datetime]]:
    """(lead hours, send time) for each lead time still ahead at `not_before`: a 24-hour
    reminder that would go out after the fact (randomized late on day 0) is not made."""
    times = [(lead, due_at - timedelta(hours=lead)) for lead in sorted(lead_hours, reverse=True)]
    return [(lead, at) for lead, at in times if at >= not_before]


def deviation_hours(
    given_at: datetime, window_start: datetime, window_end: datetime
) -> Decimal | None:
    """None inside the window; otherwise the hours outside it, rounded up to 0.01 h so
    that a dose a minute late never reads as 0 hours off."""
    if window_start <= given_at <= window_end:
        return None
    off = (window_start - given_at) if given_at < window_start else (given_at - window_end)
    # Whole seconds: the window's last instant is a microsecond before midnight.
    hundredths = max(1, math.ceil(int(off.total_seconds()) / 36))
    return (Decimal(hundredths) / 100).quantize(Decimal("0.01"))


def is_overdue(*, now: datetime, window_end: datetime) -> bool:
    return now > window_end


def retry_delay(attempts: int, *, base_seconds: int = 60, cap_seconds: int = 3600) -> timedelta:
    """Exponential backoff after the `attempts`-th failed attempt: 1, 2, 4, 8 ... minutes."""
    return timedelta(seconds=min(cap_seconds, base_seconds * 2 ** max(0, attempts - 1)))


# Plain-text superscripts: the same "7.05 × 10⁷" reads right in a page, a message and an e-mail.
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def plain_amount(amount: Decimal) -> str:
    """300, 62.5, 70500000: the stored 300.0000 as a person types it, never 3E+2."""
    amount = Decimal(amount)
    return "0" if amount == 0 else f"{amount.normalize():f}"


def scientific(amount: Decimal, digits: int = 2) -> str:
    """7.05 × 10⁷: how a cell count is written on the infusion order; 300 stays 300."""
    amount = Decimal(amount)
    if amount == 0:
        return "0"
    exponent = amount.adjusted()
    if -3 < exponent < 4:
        return plain_amount(amount)
    mantissa = (amount.scaleb(-exponent)).quantize(
        Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP
    )
    if mantissa >= 10:  # 9.999 rounds up to 10.00
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{plain_amount(mantissa)} × 10{str(exponent).translate(_SUPERSCRIPT)}"


# --- Plausibility of a record -------------------------------------------------------------------


def plausible_amount_range(
    planned: Decimal, *, min_fraction: Decimal, max_fraction: Decimal
) -> tuple[Decimal, Decimal]:
    """The amounts a record may state for a planned dose, both ends included."""
    return planned * Decimal(min_fraction), planned * Decimal(max_fraction)


def amount_is_plausible(
    amount: Decimal, *, planned: Decimal, min_fraction: Decimal, max_fraction: Decimal
) -> bool:
    """A typing slip (300000000 for 300 mg) is refused; a real half or partial dose is not."""
    low, high = plausible_amount_range(
        planned, min_fraction=min_fraction, max_fraction=max_fraction
    )
    return low <= Decimal(amount) <= high


def given_before_randomization(given_at: datetime, randomized_at: datetime) -> bool:
    """The time given is typed to the minute: a dose in the minute of randomization is not
    before it."""
    return given_at < randomized_at.replace(second=0, microsecond=0)


def far_outside_window(
    given_at: datetime, *, window_start: datetime, window_end: datetime, far_hours: int
) -> bool:
    """More than `far_hours` before the window opens or after it closes: more likely a wrong
    dose or a wrong date than a late dose, so the recorder confirms it with a reason."""
    margin = timedelta(hours=far_hours)
    return given_at < window_start - margin or given_at > window_end + margin
