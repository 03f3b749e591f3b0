"""The eligibility rules at their boundaries, on the protocol file itself. No database."""

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from django.conf import settings

from enrollment.rules import (
    ELIGIBLE,
    INCOMPLETE,
    INELIGIBLE,
    Outcome,
    bmi,
    date_of_birth_error,
    evaluate,
    rule_inputs,
    screening_input_errors,
    settings_problems,
    severity_error,
    severity_supported,
    whole_years,
)
from trialsite.core.protocol import definition_from_toml

PROTOCOL = definition_from_toml(settings.PROTOCOL_FILE)
CRITERIA = {c.code: c for c in PROTOCOL.sections["criteria"]}
RULES = PROTOCOL.rules
THRESHOLDS = RULES["severity_findings"]
SCREENED = date(2026, 3, 10)


def eligible_answers(**changes):
    """Answers of a woman who meets every criterion; tests change one thing at a time."""
    answers = {
        "sex": "F",
        "date_of_birth": date(1970, 5, 1),
        "screening_date": SCREENED,
        "diagnosis_date": date(2026, 3, 8),
        "severity": "severe",
        "respiratory_rate": 32,
        "spo2": 95,
        "pao2_fio2": None,
        "imaging_progression": False,
        "mechanical_ventilation": False,
        "shock": False,
        "icu_organ_failure": False,
        "height_cm": Decimal("170"),
        "weight_kg": Decimal("70"),
        "informed_consent": True,
        "nyha_class": 0,
        "ckd_stage": 0,
        "child_pugh": 0,
        "E12_reason": "",
    }
    for code in ("E1", "E2", "E3", "E4", "E5", "E6", "E7", "E9", "E10", "E11", "E12"):
        answers[code] = False
    answers.update(changes)
    return answers


def result(code, **changes):
    return evaluate(PROTOCOL.sections["criteria"], eligible_answers(**changes), RULES).result(code)


def test_every_criterion_met_is_eligible():
    evaluation = evaluate(PROTOCOL.sections["criteria"], eligible_answers(), RULES)
    assert evaluation.decision == ELIGIBLE
    assert [r.code for r in evaluation.results] == [c.code for c in PROTOCOL.sections["criteria"]]
    assert {r.outcome for r in evaluation.results} == {Outcome.MET}
    assert evaluation.failures == {}


# --- I1: age on the exact birthday -------------------------------------------------------------


@pytest.mark.parametrize(
    ("born", "outcome", "reason"),
    [
        (date(2008, 3, 11), Outcome.FAILED, "Age 17 is below 18"),  # 18 tomorrow
        (date(2008, 3, 10), Outcome.MET, "Age 18 is within 18 to 75"),  # 18th birthday
        (date(1950, 3, 11), Outcome.MET, "Age 75 is within 18 to 75"),  # 76 tomorrow
        (date(1950, 3, 10), Outcome.FAILED, "Age 76 is above 75"),  # 76th birthday
    ],
)
def test_age_boundaries_on_the_exact_birthday(born, outcome, reason):
    r = result("I1", date_of_birth=born)
    assert (r.outcome, r.reason) == (outcome, reason)


def test_whole_years_of_a_leap_day_birthday():
    assert whole_years(date(2008, 2, 29), date(2026, 2, 28)) == 17
    assert whole_years(date(2008, 2, 29), date(2026, 3, 1)) == 18


# --- I2: diagnosis within a week, severe or critical -------------------------------------------


@pytest.mark.parametrize(
    ("diagnosed", "outcome", "reason"),
    [
        (date(2026, 3, 3), Outcome.MET, "Severe, diagnosed 7 days before screening"),
        (
            date(2026, 3, 2),
            Outcome.FAILED,
            "Diagnosed 8 days before screening; at most 7 allowed",
        ),
        (date(2026, 3, 10), Outcome.MET, "Severe, diagnosed 0 days before screening"),
        (date(2026, 3, 11), Outcome.FAILED, "The diagnosis date is after the screening date"),
    ],
)
def test_diagnosis_window_boundaries(diagnosed, outcome, reason):
    r = result("I2", diagnosis_date=diagnosed)
    assert (r.outcome, r.reason) == (outcome, reason)


def test_moderate_disease_fails_i2():
    r = result("I2", severity="moderate", respiratory_rate=20)
    assert (r.outcome, r.reason) == (Outcome.FAILED, "Severity moderate is not severe or critical")


def test_critical_disease_meets_i2():
    r = result("I2", severity="critical", mechanical_ventilation=True)
    assert r.outcome == Outcome.MET


# --- Severity and its findings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("findings", "severity"),
    [
        ({"respiratory_rate": 29, "spo2": 94, "pao2_fio2": 301}, "moderate"),
        ({"respiratory_rate": 30}, "severe"),
        ({"spo2": 93}, "severe"),
        ({"pao2_fio2": 300}, "severe"),
        ({"imaging_progression": True}, "severe"),
        ({"respiratory_rate": 35, "mechanical_ventilation": True}, "critical"),
        ({"shock": True}, "critical"),
        ({"icu_organ_failure": True}, "critical"),
        ({}, "moderate"),
    ],
)
def test_severity_supported_by_findings(findings, severity):
    assert severity_supported(findings, THRESHOLDS) == severity


def test_severity_not_supported_is_explained():
    assert severity_error("severe", {"respiratory_rate": 29}, THRESHOLDS) == (
        "Severe needs respiratory rate >= 30/min, SpO2 <= 93%, PaO2/FiO2 <= 300 mmHg, "
        "or lesions progressing > 50% on imaging."
    )
    assert severity_error("critical", {"spo2": 90}, THRESHOLDS) == (
        "Critical needs mechanical ventilation, shock or organ failure needing ICU care."
    )
    assert severity_error("severe", {"shock": True}, THRESHOLDS) == (
        "The findings recorded show critical disease, not severe."
    )
    assert severity_error("severe", {"spo2": 93}, THRESHOLDS) is None


# --- I3: BMI after rounding half up to one decimal ---------------------------------------------
# At 200 cm, BMI = weight / 4: weight 79.8 gives 19.95, rounded up to 20.0.


@pytest.mark.parametrize(
    ("weight", "outcome", "reason"),
    [
        ("79.79", Outcome.FAILED, "BMI 19.9 kg/m2 is below 20"),  # 19.9475
        ("79.80", Outcome.MET, "BMI 20.0 kg/m2 is within 20 to 30"),  # 19.95 -> 20.0
        ("120.19", Outcome.MET, "BMI 30.0 kg/m2 is within 20 to 30"),  # 30.0475 -> 30.0
        ("120.20", Outcome.FAILED, "BMI 30.1 kg/m2 is above 30"),  # 30.05 -> 30.1
    ],
)
def test_bmi_boundaries_after_rounding(weight, outcome, reason):
    r = result("I3", height_cm=Decimal("200"), weight_kg=Decimal(weight))
    assert (r.outcome, r.reason) == (outcome, reason)


def test_bmi_of_31_fails_i3():
    r = result("I3", height_cm=Decimal("170"), weight_kg=Decimal("89.6"))
    assert (r.outcome, r.reason) == (Outcome.FAILED, "BMI 31.0 kg/m2 is above 30")


def test_bmi_rounding_follows_the_protocol_setting():
    assert bmi(height_cm=Decimal("200"), weight_kg=Decimal("79.8"), decimals=1) == Decimal("20.0")
    assert bmi(height_cm=Decimal("200"), weight_kg=Decimal("79.8"), decimals=2) == Decimal("19.95")


# --- E8: serious complications -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "outcome", "reason"),
    [
        ({"nyha_class": 2}, Outcome.MET, "No serious complication"),
        ({"nyha_class": 3}, Outcome.FAILED, "Serious complication: NYHA class III"),
        ({"ckd_stage": 2}, Outcome.MET, "No serious complication"),
        ({"ckd_stage": 3}, Outcome.FAILED, "Serious complication: CKD stage 3"),
        ({"child_pugh": 7}, Outcome.MET, "No serious complication"),
        ({"child_pugh": 8}, Outcome.FAILED, "Serious complication: Child-Pugh score 8"),
        (
            {"nyha_class": 4, "ckd_stage": 5},
            Outcome.FAILED,
            "Serious complication: NYHA class IV; CKD stage 5",
        ),
    ],
)
def test_serious_complication_boundaries(changes, outcome, reason):
    r = result("E8", **changes)
    assert (r.outcome, r.reason) == (outcome, reason)


# --- Yes / no exclusions, E5 and E12 -------------------------------------------------------------


def test_a_yes_to_an_exclusion_makes_ineligible():
    evaluation = evaluate(PROTOCOL.sections["criteria"], eligible_answers(E3=True), RULES)
    assert evaluation.decision == INELIGIBLE
    assert evaluation.failures == {"E3": "Yes"}


def test_pregnancy_is_not_asked_of_a_male():
    answers = eligible_answers(sex="M")
    del answers["E5"]
    evaluation = evaluate(PROTOCOL.sections["criteria"], answers, RULES)
    assert evaluation.result("E5").outcome == Outcome.NOT_ASKED
    assert evaluation.decision == ELIGIBLE


def test_each_criterion_asks_for_its_inputs():
    assert rule_inputs(CRITERIA["E5"]) == ("E5",)
    assert rule_inputs(CRITERIA["E12"]) == ("E12", "E12_reason")
    assert rule_inputs(CRITERIA["I3"]) == ("height_cm", "weight_kg")
    assert rule_inputs(CRITERIA["E8"]) == ("nyha_class", "ckd_stage", "child_pugh")


def test_pregnancy_unanswered_for_a_female_is_incomplete():
    answers = eligible_answers()
    del answers["E5"]
    evaluation = evaluate(PROTOCOL.sections["criteria"], answers, RULES)
    assert evaluation.result("E5").outcome == Outcome.UNANSWERED
    assert evaluation.decision == INCOMPLETE


def test_investigator_judgement_carries_its_reason():
    r = result("E12", E12=True, E12_reason="Unlikely to attend follow-up")
    assert (r.outcome, r.reason) == (Outcome.FAILED, "Yes: Unlikely to attend follow-up")


def test_investigator_judgement_without_reason_is_unanswered():
    r = result("E12", E12=True, E12_reason=" ")
    assert r.outcome == Outcome.UNANSWERED


# --- Unanswered, pending consent ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "code"),
    [
        ("date_of_birth", "I1"),
        ("diagnosis_date", "I2"),
        ("severity", "I2"),
        ("weight_kg", "I3"),
        ("E9", "E9"),
        ("ckd_stage", "E8"),
        ("informed_consent", "I4"),
    ],
)
def test_an_unanswered_criterion_gives_incomplete_never_eligible(missing, code):
    evaluation = evaluate(PROTOCOL.sections["criteria"], eligible_answers(**{missing: None}), RULES)
    assert evaluation.decision == INCOMPLETE
    assert evaluation.result(code).outcome == Outcome.UNANSWERED


def test_a_failure_outweighs_an_unanswered_criterion():
    answers = eligible_answers(E9=None, E3=True)
    assert evaluate(PROTOCOL.sections["criteria"], answers, RULES).decision == INELIGIBLE


def test_consent_not_yet_recorded_is_pending_not_a_failure():
    evaluation = evaluate(
        PROTOCOL.sections["criteria"], eligible_answers(informed_consent=False), RULES
    )
    assert evaluation.result("I4").outcome == Outcome.PENDING
    assert evaluation.decision == ELIGIBLE


# --- Input checks --------------------------------------------------------------------------------


def test_impossible_screening_input_is_a_field_error():
    answers = eligible_answers(
        screening_date=date(2026, 3, 11),
        diagnosis_date=date(2026, 3, 9),
        height_cm=Decimal("99"),
        weight_kg=Decimal("300.1"),
        severity="critical",
        E12=True,
    )
    errors = screening_input_errors(
        answers, PROTOCOL.sections["criteria"], today=date(2026, 3, 10), protocol_rules=RULES
    )
    assert errors == {
        "screening_date": "The date of screening cannot be in the future.",
        "height_cm": "Height must be between 100 and 250 cm.",
        "weight_kg": "Weight must be between 20 and 300 kg.",
        "severity": (
            "Critical needs mechanical ventilation, shock or organ failure needing ICU care."
        ),
        "E12_reason": "Give the reason.",
    }


def test_diagnosis_after_screening_is_a_field_error():
    answers = eligible_answers(screening_date=date(2026, 3, 8), diagnosis_date=date(2026, 3, 9))
    errors = screening_input_errors(
        answers, PROTOCOL.sections["criteria"], today=date(2026, 3, 10), protocol_rules=RULES
    )
    assert errors == {"diagnosis_date": "The date of diagnosis is after the date of screening."}


def test_plausible_input_at_the_limits_is_accepted():
    answers = eligible_answers(height_cm=Decimal("100"), weight_kg=Decimal("20"))
    assert (
        screening_input_errors(
            answers, PROTOCOL.sections["criteria"], today=SCREENED, protocol_rules=RULES
        )
        == {}
    )
    answers = eligible_answers(height_cm=Decimal("250"), weight_kg=Decimal("300"))
    assert (
        screening_input_errors(
            answers, PROTOCOL.sections["criteria"], today=SCREENED, protocol_rules=RULES
        )
        == {}
    )


def test_date_of_birth_checks():
    today = date(2026, 3, 10)
    assert date_of_birth_error(date(2026, 3, 11), today=today, protocol_rules=RULES) == (
        "The date of birth cannot be in the future."
    )
    assert date_of_birth_error(date(1905, 3, 10), today=today, protocol_rules=RULES) == (
        "This date of birth gives an age over 120."
    )
    assert date_of_birth_error(date(1905, 3, 11), today=today, protocol_rules=RULES) is None


def test_the_protocol_file_gives_every_rule_its_settings():
    assert settings_problems(PROTOCOL.sections["criteria"], RULES) == []


def test_missing_rule_settings_are_named():
    broken_i3 = replace(CRITERIA["I3"], params={"min": "20"})
    rules_without = {k: v for k, v in RULES.items() if k != "input_limits"}
    rules_without["severity_findings"] = {"spo2_max": 93, "pao2_fio2_max": 300}
    assert settings_problems([CRITERIA["I1"], broken_i3], rules_without) == [
        "[rules.severity_findings] has no respiratory_rate_min.",
        "[rules] has no input_limits.",
        "Criterion I3 (bmi_range) has no parameter max.",
    ]
