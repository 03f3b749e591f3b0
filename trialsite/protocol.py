"""The protocol definition as plain values, and the rules that say whether it is sound.

`definition_from_toml` reads a protocol file; `definition_from_db` reads what is loaded;
`protocol_problems` checks either, with no database, so system checks and tests share it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from enrollment.rules import KNOWN_RULES, settings_problems


@dataclass(frozen=True)
class DoseScheduleDef:
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
    # A recorded amount outside [min, max] x planned is refused as a typing slip.
    amount_min_fraction: Decimal = Decimal("0.5")
    amount_max_fraction: Decimal = Decimal("2")
    # A dose recorded more than this many hours outside its window needs a confirmed reason.
    far_outside_window_hours: int = 24


@dataclass(frozen=True)
class ArmDef:
    code: str
    name: str
    arm_type: str
    ratio: int
    description: str = ""
    dose_schedules: list[DoseScheduleDef] = field(default_factory=list)


@dataclass(frozen=True)
class CriterionDef:
    code: str
    kind: str
    text: str
    rule: str
    params: dict = field(default_factory=dict)
    asked_for_sex: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VisitDef:
    code: str
    name: str
    study_day: int
    window_days: int


@dataclass(frozen=True)
class ProtocolDef:
    code: str
    title: str
    version: str
    block_sizes: list[int]
    stratify_by_site: bool
    severity_strata: list[str]
    reminder_lead_hours: list[int]
    rules: dict
    arms: list[ArmDef]
    criteria: list[CriterionDef]
    visits: list[VisitDef]


@dataclass(frozen=True)
class Problem:
    id: str
    msg: str
    hint: str = ""


def definition_from_dict(data: dict) -> ProtocolDef:
    randomization = data.get("randomization", {})
    return ProtocolDef(
        code=data["code"],
        title=data["title"],
        version=str(data["version"]),
        block_sizes=list(randomization.get("block_sizes", [])),
        stratify_by_site=bool(randomization.get("stratify_by_site", True)),
        severity_strata=list(randomization.get("severity_strata", [])),
        reminder_lead_hours=list(data.get("reminders", {}).get("lead_hours", [])),
        rules=dict(data.get("rules", {})),
        arms=[
            ArmDef(
                code=a["code"],
                name=a["name"],
                arm_type=a["arm_type"],
                ratio=int(a["ratio"]),
                description=a.get("description", ""),
                dose_schedules=[
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
                        **_plausibility_from_dict(s),
                    )
                    for s in a.get("dose_schedules", [])
                ],
            )
            for a in data.get("arms", [])
        ],
        criteria=[
            CriterionDef(
                code=c["code"],
                kind=c["kind"],
                text=c["text"],
                rule=c.get("rule", ""),
                params=dict(c.get("params", {})),
                asked_for_sex=list(c.get("asked_for_sex", [])),
            )
            for c in data.get("criteria", [])
        ],
        visits=[
            VisitDef(
                code=v["code"],
                name=v["name"],
                study_day=int(v["study_day"]),
                window_days=int(v.get("window_days", 0)),
            )
            for v in data.get("visits", [])
        ],
    )


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


def definition_from_toml(path: Path) -> ProtocolDef:
    with open(path, "rb") as fh:
        return definition_from_dict(tomllib.load(fh))


def definition_from_db(protocol) -> ProtocolDef:
    """The loaded protocol as plain values (a handful of queries, whatever its size)."""
    arms = protocol.arms.prefetch_related("dose_schedules")
    return ProtocolDef(
        code=protocol.code,
        title=protocol.title,
        version=protocol.version,
        block_sizes=list(protocol.block_sizes),
        stratify_by_site=protocol.stratify_by_site,
        severity_strata=list(protocol.severity_strata),
        reminder_lead_hours=list(protocol.reminder_lead_hours),
        rules=dict(protocol.rules),
        arms=[
            ArmDef(
                code=a.code,
                name=a.name,
                arm_type=a.arm_type,
                ratio=a.ratio,
                description=a.description,
                dose_schedules=[
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
                        amount_min_fraction=s.amount_min_fraction,
                        amount_max_fraction=s.amount_max_fraction,
                        far_outside_window_hours=s.far_outside_window_hours,
                    )
                    for s in a.dose_schedules.all()
                ],
            )
            for a in arms
        ],
        criteria=[
            CriterionDef(
                code=c.code,
                kind=c.kind,
                text=c.text,
                rule=c.rule,
                params=dict(c.params),
                asked_for_sex=list(c.asked_for_sex),
            )
            for c in protocol.criteria.all()
        ],
        visits=[
            VisitDef(code=v.code, name=v.name, study_day=v.study_day, window_days=v.window_days)
            for v in protocol.visits.all()
        ],
    )


def adjustment_inputs_known() -> set[str]:
    from dosing.rules import ADJUSTMENT_INPUTS  # dosing's rules read this module's classes

    return set(ADJUSTMENT_INPUTS)


def protocol_problems(defn: ProtocolDef) -> list[Problem]:
    """Everything wrong with a protocol definition; an empty list means it can run."""
    problems: list[Problem] = []
    ratio_sum = sum(a.ratio for a in defn.arms)
    if not defn.arms:
        problems.append(Problem("trialsite.E004", f"Protocol {defn.code} has no arms."))
    if not defn.block_sizes:
        problems.append(Problem("trialsite.E001", f"Protocol {defn.code} has no block sizes."))
    for size in defn.block_sizes:
        if ratio_sum and size % ratio_sum:
            ratio = ":".join(str(a.ratio) for a in defn.arms)
            problems.append(
                Problem(
                    "trialsite.E001",
                    f"Block size {size} does not fit the allocation ratio {ratio}.",
                    hint=f"Every block size must be a multiple of {ratio_sum}.",
                )
            )
    for arm in defn.arms:
        if arm.arm_type != "no_intervention" and not arm.dose_schedules:
            problems.append(
                Problem(
                    "trialsite.E002",
                    f"Arm {arm.code} ({arm.arm_type}) has no dose schedule.",
                    hint="Give the arm a schedule, or make it a no-intervention arm.",
                )
            )
        for schedule in arm.dose_schedules:
            for adjustment in schedule.adjustments:
                if adjustment.get("when") not in adjustment_inputs_known():
                    problems.append(
                        Problem(
                            "trialsite.E008",
                            f"Arm {arm.code}: a dose adjustment depends on "
                            f"'{adjustment.get('when')}', which no form asks for.",
                            hint="Known: " + ", ".join(sorted(adjustment_inputs_known())) + ".",
                        )
                    )
            low, high = schedule.amount_min_fraction, schedule.amount_max_fraction
            if not (0 < low <= 1 <= high) or schedule.far_outside_window_hours < 0:
                problems.append(
                    Problem(
                        "trialsite.E010",
                        f"Arm {arm.code}: the schedule of {schedule.product} has a plausible "
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
                        f"Arm {arm.code}: the schedule of {schedule.product} has no days or times.",
                    )
                )
    for criterion in defn.criteria:
        if not criterion.rule:
            problems.append(Problem("trialsite.E003", f"Criterion {criterion.code} has no rule."))
        elif criterion.rule not in KNOWN_RULES:
            problems.append(
                Problem(
                    "trialsite.E003",
                    f"Criterion {criterion.code} names an unknown rule '{criterion.rule}'.",
                    hint="Known rules: " + ", ".join(sorted(KNOWN_RULES)) + ".",
                )
            )
    problems += [
        Problem("trialsite.E007", message, hint="The eligibility rules read these values.")
        for message in settings_problems(defn.criteria, defn.rules)
    ]
    for label, codes in (
        ("arm", [a.code for a in defn.arms]),
        ("criterion", [c.code for c in defn.criteria]),
        ("visit", [v.code for v in defn.visits]),
    ):
        for code in {c for c in codes if codes.count(c) > 1}:
            problems.append(Problem("trialsite.E006", f"The {label} code {code} is used twice."))
    return problems
