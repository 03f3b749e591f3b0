"""Eligibility rules: how each kind of criterion is decided. Pure functions, no database.

A criterion names a rule and gives its parameters (protocol data). Each rule reads the
answers it needs (see `rule_inputs`) and returns an outcome with the reason a coordinator
reads on the screen. Protocol values (age limits, BMI rounding, severity thresholds, input
limits) come from the criterion's params or the protocol's `rules`, never from this module.

Answers are plain values: dates are `date`, measurements `Decimal` or `int`, yes/no `bool`,
and an unanswered question is missing or None.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, Protocol

from django.utils.translation import gettext as _
from django.utils.translation import pgettext


class Outcome(StrEnum):
    MET = "met"  # the criterion does not stand in the way (inclusion holds, exclusion absent)
    FAILED = "failed"  # inclusion does not hold, or the exclusion is present
    UNANSWERED = "unanswered"
    NOT_ASKED = "not_asked"  # not asked of this participant (E5 for a male)
    PENDING = "pending"  # satisfied later by another record (I4: the consent)


class Criterion(Protocol):
    """What a rule needs of a criterion: the model and the protocol definition both fit."""

    code: str
    kind: str
    text: str
    rule: str
    params: Mapping[str, Any]
    asked_for_sex: Sequence[str]


@dataclass(frozen=True)
class CriterionResult:
    code: str
    kind: str
    outcome: Outcome
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "kind": self.kind,
            "outcome": str(self.outcome),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Evaluation:
    decision: str  # enrollment.models.Decision values
    results: tuple[CriterionResult, ...]

    @property
    def failures(self) -> dict[str, str]:
        return {r.code: r.reason for r in self.results if r.outcome == Outcome.FAILED}

    def result(self, code: str) -> CriterionResult:
        return next(r for r in self.results if r.code == code)


RuleResult = tuple[Outcome, str]
Answers = Mapping[str, Any]

ELIGIBLE, INELIGIBLE, INCOMPLETE = "eligible", "ineligible", "incomplete"
SEVERITY_FINDINGS = (
    "respiratory_rate",
    "spo2",
    "pao2_fio2",
    "imaging_progression",
    "mechanical_ventilation",
    "shock",
    "icu_organ_failure",
)
SEVERITY_ORDER = ("moderate", "severe", "critical")
NYHA_NUMERALS = {1: "I", 2: "II", 3: "III", 4: "IV"}


# --- Computations ---------------------------------------------------------------------------


def whole_years(born: date, on: date) -> int:
    """Age in completed years: the birthday itself counts (18 on the 18th birthday)."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def bmi(*, height_cm: Decimal, weight_kg: Decimal, decimals: int) -> Decimal:
    """kg/m2, rounded half up to `decimals`, as it would be written on a paper form."""
    metres = Decimal(height_cm) / 100
    value = Decimal(weight_kg) / (metres * metres)
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


def severity_supported(findings: Answers, thresholds: Mapping[str, Any]) -> str:
    """The highest severity the findings support (9th-edition plan, adults)."""
    if any(findings.get(k) for k in ("mechanical_ventilation", "shock", "icu_organ_failure")):
        return "critical"
    rate, spo2, ratio = (findings.get(k) for k in ("respiratory_rate", "spo2", "pao2_fio2"))
    if (
        (rate is not None and rate >= thresholds["respiratory_rate_min"])
        or (spo2 is not None and spo2 <= thresholds["spo2_max"])
        or (ratio is not None and ratio <= thresholds["pao2_fio2_max"])
        or findings.get("imaging_progression")
    ):
        return "severe"
    return "moderate"


def severity_name(severity: str) -> str:
    """A severity as a reason's sentence names it, in the active language."""
    names = {
        "moderate": pgettext("severity in a sentence", "moderate"),
        "severe": pgettext("severity in a sentence", "severe"),
        "critical": pgettext("severity in a sentence", "critical"),
    }
    return names.get(severity, severity)


def severity_error(severity: str, findings: Answers, thresholds: Mapping[str, Any]) -> str | None:
    """Why a recorded severity is not the one its findings support; None when it is."""
    supported = severity_supported(findings, thresholds)
    if severity == supported:
        return None
    if SEVERITY_ORDER.index(severity) > SEVERITY_ORDER.index(supported):
        if severity == "critical":
            return _(
                "Critical needs mechanical ventilation, shock or organ failure needing ICU care."
            )
        return _(
            "Severe needs respiratory rate >= %(rate)s/min, SpO2 <= %(spo2)s%%, "
            "PaO2/FiO2 <= %(ratio)s mmHg, or lesions progressing > 50%% on imaging."
        ) % {
            "rate": thresholds["respiratory_rate_min"],
            "spo2": thresholds["spo2_max"],
            "ratio": thresholds["pao2_fio2_max"],
        }
    return _("The findings recorded show %(supported)s disease, not %(severity)s.") % {
        "supported": severity_name(supported),
        "severity": severity_name(severity),
    }


# --- The rules ------------------------------------------------------------------------------


def age_range(answers: Answers, criterion: Criterion, protocol_rules: Mapping) -> RuleResult:
    born, on = answers.get("date_of_birth"), answers.get("screening_date")
    if born is None or on is None:
        return Outcome.UNANSWERED, _("Date of birth or date of screening missing.")
    age = whole_years(born, on)
    low, high = int(criterion.params["min_years"]), int(criterion.params["max_years"])
    values = {"age": age, "low": low, "high": high}
    if age < low:
        return Outcome.FAILED, _("Age %(age)s is below %(low)s") % values
    if age > high:
        return Outcome.FAILED, _("Age %(age)s is above %(high)s") % values
    return Outcome.MET, _("Age %(age)s is within %(low)s to %(high)s") % values


def diagnosis_window(answers: Answers, criterion: Criterion, protocol_rules: Mapping) -> RuleResult:
    diagnosed, on = answers.get("diagnosis_date"), answers.get("screening_date")
    severity = answers.get("severity")
    if diagnosed is None or on is None or not severity:
        return Outcome.UNANSWERED, _("Date of diagnosis, date of screening or severity missing.")
    max_days = int(criterion.params["max_days"])
    severities = list(criterion.params["severities"])
    days = (on - diagnosed).days
    if days < 0:
        return Outcome.FAILED, _("The diagnosis date is after the screening date")
    if days > max_days:
        return Outcome.FAILED, _(
            "Diagnosed %(days)s days before screening; at most %(max)s allowed"
        ) % {"days": days, "max": max_days}
    if severity not in severities:
        return Outcome.FAILED, _("Severity %(severity)s is not %(allowed)s") % {
            "severity": severity_name(severity),
            "allowed": _(" or ").join(severity_name(s) for s in severities),
        }
    return Outcome.MET, _("%(severity)s, diagnosed %(days)s days before screening") % {
        "severity": severity_name(severity).capitalize(),
        "days": days,
    }


def bmi_range(answers: Answers, criterion: Criterion, protocol_rules: Mapping) -> RuleResult:
    height, weight = answers.get("height_cm"), answers.get("weight_kg")
    if height is None or weight is None:
        return Outcome.UNANSWERED, _("Height or weight missing.")
    value = bmi(height_cm=height, weight_kg=weight, decimals=int(protocol_rules["bmi_decimals"]))
    low, high = Decimal(str(criterion.params["min"])), Decimal(str(criterion.params["max"]))
    values = {"bmi": value, "low": low, "high": high}
    if value < low:
        return Outcome.FAILED, _("BMI %(bmi)s kg/m2 is below %(low)s") % values
    if value > high:
        return Outcome.FAILED, _("BMI %(bmi)s kg/m2 is above %(high)s") % values
    return Outcome.MET, _("BMI %(bmi)s kg/m2 is within %(low)s to %(high)s") % values


def informed_consent(answers: Answers, criterion: Criterion, protocol_rules: Mapping) -> RuleResult:
    return consent_outcome(answers.get("informed_consent"))


def consent_outcome(recorded: bool | None) -> RuleResult:
    if recorded is None:
        return Outcome.UNANSWERED, _("Consent status unknown.")
    if recorded:
        return Outcome.MET, _("Consent on the current version is recorded")
    # Pre-screening comes before consent (PROTOCOL.md, flow): the randomization gate, not the
    # screening decision, waits for it.
    return Outcome.PENDING, _("Consent on the current version is not recorded yet")


def yes_no(answers: Answers, criterion: Criterion, protocol_rules: Mapping) -> RuleResult:
    answer = answers.get(criterion.code)
    if answer is None:
        return Outcome.UNANSWERED, _("Not answered.")
    present = criterion.kind == "exclusion"
    if answer and criterion.params.get("reason_required"):
        reason = (answers.get(reason_key(criterion)) or "").strip()
        if not reason:
            return Outcome.UNANSWERED, _("Yes, but the reason is missing.")
        return (Outcome.FAILED if present else Outcome.MET), _("Yes: %(reason)s") % {
            "reason": reason
        }
    if answer:
        return (Outcome.FAILED if present else Outcome.MET), _("Yes")
    return (Outcome.MET if present else Outcome.FAILED), _("No")


def serious_complications(
    answers: Answers, criterion: Criterion, protocol_rules: Mapping
) -> RuleResult:
    """NYHA class (0 = no heart failure), CKD stage (0 = none), Child-Pugh score (0 = no
    chronic liver disease)."""
    nyha, ckd, child_pugh = (answers.get(k) for k in ("nyha_class", "ckd_stage", "child_pugh"))
    if nyha is None or ckd is None or child_pugh is None:
        return Outcome.UNANSWERED, _("NYHA class, CKD stage or Child-Pugh score missing.")
    params = criterion.params
    found = []
    if nyha >= int(params["nyha_min_class"]):
        found.append(_("NYHA class %(c)s") % {"c": NYHA_NUMERALS[nyha]})
    if ckd >= int(params["ckd_min_stage"]):
        found.append(_("CKD stage %(s)s") % {"s": ckd})
    if child_pugh > int(params["child_pugh_above"]):
        found.append(_("Child-Pugh score %(s)s") % {"s": child_pugh})
    if found:
        return Outcome.FAILED, _("Serious complication: %(found)s") % {"found": "; ".join(found)}
    return Outcome.MET, _("No serious complication")


def results_as_of_consent(
    results: Sequence[Mapping[str, str]], consent_codes: Collection[str], *, recorded: bool
) -> list[dict[str, str]]:
    """A screening's results with its consent criteria (I4) decided by the consent records as
    they stand: consent usually follows pre-screening, and a stored "pending" would be stale
    once it is recorded (or "met" once a new version makes it out of date). The decision does
    not change: a pending consent never decided it."""
    outcome, reason = consent_outcome(recorded)
    return [
        {**result, "outcome": str(outcome), "reason": reason}
        if result["code"] in consent_codes and result["outcome"] != Outcome.NOT_ASKED
        else dict(result)
        for result in results
    ]


RULES: dict[str, Callable[[Answers, Criterion, Mapping], RuleResult]] = {
    "age_range": age_range,
    "diagnosis_window": diagnosis_window,
    "bmi_range": bmi_range,
    "informed_consent": informed_consent,
    "yes_no": yes_no,
    "serious_complications": serious_complications,
}

# The rule names a protocol's criteria may use. A criterion naming any other rule is a
# protocol error (system check trialsite.E003).
KNOWN_RULES = frozenset(RULES)


# What each rule reads from its criterion's params, and from the protocol's [rules].
REQUIRED_PARAMS = {
    "age_range": ("min_years", "max_years"),
    "diagnosis_window": ("max_days", "severities"),
    "bmi_range": ("min", "max"),
    "serious_complications": ("nyha_min_class", "ckd_min_stage", "child_pugh_above"),
}
REQUIRED_SETTINGS = {
    "bmi_decimals": (),
    "severity_findings": ("respiratory_rate_min", "spo2_max", "pao2_fio2_max"),
    "input_limits": ("height_cm", "weight_kg", "max_age_years"),
}


def settings_problems(criteria: Sequence[Criterion], protocol_rules: Mapping) -> list[str]:
    """What the rules would miss in a protocol definition; empty when it can be screened.
    (For the protocol checks: a missing value should stop start-up, not a screening.)"""
    problems = []
    for key, subkeys in REQUIRED_SETTINGS.items():
        if key not in protocol_rules:
            problems.append(f"[rules] has no {key}.")
            continue
        problems += [
            f"[rules.{key}] has no {sub}." for sub in subkeys if sub not in protocol_rules[key]
        ]
    for criterion in criteria:
        problems += [
            f"Criterion {criterion.code} ({criterion.rule}) has no parameter {name}."
            for name in REQUIRED_PARAMS.get(criterion.rule, ())
            if name not in criterion.params
        ]
    return problems


def reason_key(criterion: Criterion) -> str:
    return f"{criterion.code}_reason"


def rule_inputs(criterion: Criterion) -> tuple[str, ...]:
    """The answers a criterion reads: the screening form asks for each of them once."""
    if criterion.rule == "yes_no":
        if criterion.params.get("reason_required"):
            return (criterion.code, reason_key(criterion))
        return (criterion.code,)
    return {
        "age_range": ("date_of_birth", "screening_date"),
        "diagnosis_window": ("screening_date", "diagnosis_date", "severity", *SEVERITY_FINDINGS),
        "bmi_range": ("height_cm", "weight_kg"),
        "informed_consent": ("informed_consent",),
        "serious_complications": ("nyha_class", "ckd_stage", "child_pugh"),
    }[criterion.rule]


def is_asked(criterion: Criterion, sex: str | None) -> bool:
    return not criterion.asked_for_sex or sex is None or sex in criterion.asked_for_sex


def evaluate(
    criteria: Sequence[Criterion], answers: Answers, protocol_rules: Mapping
) -> Evaluation:
    """Decide every criterion. Any failure: ineligible; else any unanswered: incomplete
    (never eligible); else eligible."""
    results = []
    for criterion in criteria:
        if not is_asked(criterion, answers.get("sex")):
            outcome, reason = Outcome.NOT_ASKED, _("Not asked for this participant's sex")
        else:
            outcome, reason = RULES[criterion.rule](answers, criterion, protocol_rules)
        results.append(CriterionResult(criterion.code, criterion.kind, outcome, reason))
    outcomes = {r.outcome for r in results}
    if Outcome.FAILED in outcomes:
        decision = INELIGIBLE
    elif Outcome.UNANSWERED in outcomes:
        decision = INCOMPLETE
    else:
        decision = ELIGIBLE
    return Evaluation(decision, tuple(results))


# --- Input checks: what is a typing error, not an eligibility finding ------------------------


def date_of_birth_error(born: date, *, today: date, protocol_rules: Mapping) -> str | None:
    if born > today:
        return _("The date of birth cannot be in the future.")
    max_age = int(protocol_rules["input_limits"]["max_age_years"])
    if whole_years(born, today) > max_age:
        return _("This date of birth gives an age over %(max)s.") % {"max": max_age}
    return None


def screening_input_errors(
    answers: Answers, criteria: Sequence[Criterion], *, today: date, protocol_rules: Mapping
) -> dict[str, str]:
    """Field -> message for answers no patient can have (a future date, 300 cm)."""
    errors: dict[str, str] = {}
    screened, diagnosed = answers.get("screening_date"), answers.get("diagnosis_date")
    if screened is not None and screened > today:
        errors["screening_date"] = _("The date of screening cannot be in the future.")
    if diagnosed is not None and diagnosed > today:
        errors["diagnosis_date"] = _("The date of diagnosis cannot be in the future.")
    elif diagnosed is not None and screened is not None and diagnosed > screened:
        errors["diagnosis_date"] = _("The date of diagnosis is after the date of screening.")
    limits = protocol_rules["input_limits"]
    for key, label, unit in (("height_cm", _("Height"), "cm"), ("weight_kg", _("Weight"), "kg")):
        low, high = limits[key]
        value = answers.get(key)
        if value is not None and not low <= value <= high:
            errors[key] = _("%(label)s must be between %(low)s and %(high)s %(unit)s.") % {
                "label": label,
                "low": low,
                "high": high,
                "unit": unit,
            }
    severity = answers.get("severity")
    if severity:
        problem = severity_error(severity, answers, protocol_rules["severity_findings"])
        if problem:
            errors["severity"] = problem
    for criterion in criteria:
        if (
            criterion.rule == "yes_no"
            and criterion.params.get("reason_required")
            and answers.get(criterion.code)
            and not (answers.get(reason_key(criterion)) or "").strip()
            and is_asked(criterion, answers.get("sex"))
        ):
            errors[reason_key(criterion)] = _("Give the reason.")
    return errors


# --- What the eligibility sign-off signs ------------------------------------------------------


def signoff_content(signoff, screening) -> dict[str, Any]:
    """The values an eligibility sign-off signs: its manifestation and the screening it attests
    to (the participant, the protocol, the date, every answer and the decision criterion by
    criterion). When and by whom the screening was typed in are not signed. Reads attributes
    only, so that the data migration's historical models fit too."""
    return {
        "record": "eligibility_signoff",
        "signature": {
            "signer_id": signoff.signer_id,
            "printed_name": signoff.printed_name,
            "signed_at": signoff.signed_at,
            "meaning": signoff.meaning,
        },
        "screening": {
            "id": screening.pk,
            "participant_id": screening.participant_id,
            "protocol_id": screening.protocol_id,
            "screening_date": screening.screening_date,
            "answers": screening.answers,
            "decision": screening.decision,
            "results": screening.results,
            "failures": screening.failures,
        },
    }
