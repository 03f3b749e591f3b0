"""Dosing's section of the protocol: each arm's dose schedules and their adjustments."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import ProtectedError

from arms.models import Arm
from trialsite.core.protocol import (
    BASELINE_INPUTS,
    Problem,
    ProtocolDef,
    ProtocolInvalid,
    ProtocolSection,
    Sync,
)

from .models import DoseSchedule
from .rules import DoseScheduleDef, adjustment_inputs

# Arm code -> its schedules, in the order the protocol lists them.
Schedules = dict[str, list[DoseScheduleDef]]


def _plausibility_from_dict(schedule: dict) -> dict:
    low, high = schedule.get(
        "plausible_amount_fraction",
        [DoseScheduleDef.amount_min_fraction, DoseScheduleDef.amount_max_fraction],
    )
    return {
        "amount_min_fraction": Decimal(str(low)),
        "amount_max_fraction": Decimal(str(high)),
        "far_outside_window_hours": int(
            schedule.get("far_outside_window_hours", DoseScheduleDef.far_outside_window_hours)
        ),
    }


class DoseSchedulesSection(ProtocolSection):
    name = "dose_schedules"

    def from_file(self, data: dict) -> Schedules:
        return {
            a["code"]: [
                DoseScheduleDef(
                    product=s["product"],
                    route=s["route"],
                    study_days=list(s["study_days"]),
                    times=list(s["times"]),
                    window_kind=s["window_kind"],
                    window_hours=int(s.get("window_hours", 0)),
                    amount=Decimal(str(s["amount"])),
                    amount_unit=s["amount_unit"],
                    per_kg=bool(s.get("per_kg", False)),
                    adjustments=list(s.get("adjustments", [])),
                    notes=s.get("notes", ""),
                    product_zh=s.get("product_zh", ""),
                    route_zh=s.get("route_zh", ""),
                    notes_zh=s.get("notes_zh", ""),
                    **_plausibility_from_dict(s),
                )
                for s in a.get("dose_schedules", [])
            ]
            for a in data.get("arms", [])
        }

    def from_db(self, protocol) -> Schedules:
        return {
            arm.code: [
                DoseScheduleDef(
                    product=s.product,
                    route=s.route,
                    study_days=list(s.study_days),
                    times=list(s.times),
                    window_kind=s.window_kind,
                    window_hours=s.window_hours,
                    amount=s.amount,
                    amount_unit=s.amount_unit,
                    per_kg=s.per_kg,
                    adjustments=list(s.adjustments),
                    notes=s.notes,
                    product_zh=s.product_zh,
                    route_zh=s.route_zh,
                    notes_zh=s.notes_zh,
                    amount_min_fraction=s.amount_min_fraction,
                    amount_max_fraction=s.amount_max_fraction,
                    far_outside_window_hours=s.far_outside_window_hours,
                )
                for s in arm.dose_schedules.order_by("pk")
            ]
            for arm in protocol.arms.all()
        }

    def problems(self, definition: ProtocolDef) -> list[Problem]:
        schedules: Schedules = definition.sections[self.name]
        problems = []
        for arm in definition.sections["arms"]:
            if arm.arm_type != "no_intervention" and not schedules.get(arm.code):
                problems.append(
                    Problem(
                        "trialsite.E002",
                        f"Arm {arm.code} ({arm.arm_type}) has no dose schedule.",
                        hint="Give the arm a schedule, or make it a no-intervention arm.",
                    )
                )
        for arm_code, arm_schedules in schedules.items():
            for schedule in arm_schedules:
                problems += _schedule_problems(arm_code, schedule)
        return problems

    def load(self, protocol, definition: ProtocolDef, *, sync: Sync, reason: str) -> None:
        schedules: Schedules = definition.sections[self.name]
        for arm in Arm.objects.filter(protocol=protocol, code__in=schedules):
            existing = list(arm.dose_schedules.order_by("pk"))
            wanted = schedules[arm.code]
            for index, s in enumerate(wanted):
                schedule = existing[index] if index < len(existing) else DoseSchedule(arm=arm)
                sync(
                    schedule,
                    {
                        "product": s.product,
                        "route": s.route,
                        "study_days": s.study_days,
                        "times": s.times,
                        "window_kind": s.window_kind,
                        "window_hours": s.window_hours,
                        "amount": s.amount,
                        "amount_unit": s.amount_unit,
                        "per_kg": s.per_kg,
                        "adjustments": s.adjustments,
                        "notes": s.notes,
                        "product_zh": s.product_zh,
                        "route_zh": s.route_zh,
                        "notes_zh": s.notes_zh,
                        "amount_min_fraction": s.amount_min_fraction,
                        "amount_max_fraction": s.amount_max_fraction,
                        "far_outside_window_hours": s.far_outside_window_hours,
                    },
                )
            for extra in existing[len(wanted) :]:
                extra._change_reason = reason
                try:
                    extra.delete()
                except ProtectedError:
                    # Participants' scheduled doses point at it: the amendment must not erase
                    # what they were planned to receive.
                    raise ProtocolInvalid(
                        [
                            Problem(
                                "trialsite.E009",
                                f"Arm {arm.code}: the schedule of {extra.product} has doses "
                                "planned for participants and cannot be removed.",
                            )
                        ]
                    ) from None

    def baseline_inputs(self, protocol) -> set[str]:
        return set(adjustment_inputs(DoseSchedule.objects.filter(arm__protocol=protocol)))


def _schedule_problems(arm_code: str, schedule: DoseScheduleDef) -> list[Problem]:
    problems = []
    for adjustment in schedule.adjustments:
        if adjustment.get("when") not in BASELINE_INPUTS:
            problems.append(
                Problem(
                    "trialsite.E008",
                    f"Arm {arm_code}: a dose adjustment depends on "
                    f"'{adjustment.get('when')}', which no form asks for.",
                    hint="Known: " + ", ".join(sorted(BASELINE_INPUTS)) + ".",
                )
            )
    low, high = schedule.amount_min_fraction, schedule.amount_max_fraction
    if not (0 < low <= 1 <= high) or schedule.far_outside_window_hours < 0:
        problems.append(
            Problem(
                "trialsite.E010",
                f"Arm {arm_code}: the schedule of {schedule.product} has a plausible "
                f"amount of {low} to {high} x planned and "
                f"{schedule.far_outside_window_hours} h as far outside its window.",
                hint="The fractions must include the planned dose (0 < min <= 1 <= max) "
                "and the hours must not be negative.",
            )
        )
    if not schedule.study_days or not schedule.times:
        problems.append(
            Problem(
                "trialsite.E005",
                f"Arm {arm_code}: the schedule of {schedule.product} has no days or times.",
            )
        )
    return problems
