from dataclasses import replace
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from arms.models import Arm
from dosing.models import DoseSchedule
from enrollment.models import EligibilityCriterion
from trialsite.core.audit import audited_save
from trialsite.core.models import Protocol
from trialsite.core.protocol import (
    ProtocolInvalid,
    definition_from_db,
    definition_from_toml,
    protocol_problems,
)
from trialsite.core.services import protocol_load


@pytest.fixture
def definition():
    return definition_from_toml(settings.PROTOCOL_FILE)


# --- Pure validation, no database --------------------------------------------------------------


def test_shipped_protocol_has_no_problems(definition):
    assert protocol_problems(definition) == []


def test_ratio_that_does_not_fit_a_block_size_is_e001(definition):
    broken = replace(definition, block_sizes=[3, 4])
    problems = protocol_problems(broken)
    assert [(p.id, p.msg) for p in problems] == [
        ("trialsite.E001", "Block size 4 does not fit the allocation ratio 1:1:1.")
    ]


def test_arm_without_schedule_is_e002_but_no_intervention_arm_is_fine(definition):
    schedules = {**definition.sections["dose_schedules"], "MSC": []}
    problems = protocol_problems(definition.with_section("dose_schedules", schedules))
    assert [(p.id, p.msg) for p in problems] == [
        ("trialsite.E002", "Arm MSC (experimental) has no dose schedule.")
    ]


def test_criterion_without_rule_or_with_unknown_rule_is_e003(definition):
    criteria = list(definition.sections["criteria"])
    criteria[0] = replace(criteria[0], rule="")
    criteria[1] = replace(criteria[1], rule="coin_toss")
    problems = protocol_problems(definition.with_section("criteria", criteria))
    assert [(p.id, p.msg) for p in problems] == [
        ("trialsite.E003", "Criterion I1 has no rule."),
        ("trialsite.E003", "Criterion I2 names an unknown rule 'coin_toss'."),
    ]


def test_missing_rule_settings_and_parameters_are_e007(definition):
    rules = {k: v for k, v in definition.rules.items() if k != "bmi_decimals"}
    criteria = [
        replace(c, params={"min_years": 18}) if c.code == "I1" else c
        for c in definition.sections["criteria"]
    ]
    problems = protocol_problems(
        replace(definition, rules=rules).with_section("criteria", criteria)
    )
    assert [(p.id, p.msg) for p in problems] == [
        ("trialsite.E007", "[rules] has no bmi_decimals."),
        ("trialsite.E007", "Criterion I1 (age_range) has no parameter max_years."),
    ]


def test_a_dose_adjustment_on_an_unknown_value_is_e008(definition):
    def bad(schedule):
        return replace(schedule, adjustments=[{"when": "creatinine", "amount": "150"}])

    schedules = definition.sections["dose_schedules"]
    schedules = {**schedules, "PAX": [bad(s) for s in schedules["PAX"]]}
    problems = protocol_problems(definition.with_section("dose_schedules", schedules))
    assert [(p.id, p.msg) for p in problems] == [
        (
            "trialsite.E008",
            "Arm PAX: a dose adjustment depends on 'creatinine', which no form asks for.",
        )
    ]


# --- Loading -----------------------------------------------------------------------------------


def test_protocol_loads_as_protocol_md_describes(protocol):
    assert protocol.is_current and protocol.code == "NCT05682586"
    assert protocol.block_sizes == [3, 6]
    assert protocol.severity_strata == ["severe", "critical"]
    assert protocol.reminder_lead_hours == [24, 1]
    arms = {a.code: a for a in Arm.objects.filter(protocol=protocol)}
    assert {c: (a.arm_type, a.ratio) for c, a in arms.items()} == {
        "STD": ("no_intervention", 1),
        "PAX": ("active_comparator", 1),
        "MSC": ("experimental", 1),
    }
    assert not arms["STD"].dose_schedules.exists()
    msc = DoseSchedule.objects.get(arm=arms["MSC"])
    assert (msc.study_days, msc.window_kind, msc.amount, msc.per_kg) == (
        [1, 4],
        "calendar_day",
        Decimal("1000000"),
        True,
    )
    pax = DoseSchedule.objects.get(arm=arms["PAX"])
    assert (pax.study_days, pax.times, pax.dose_count) == ([1, 2, 3, 4, 5], ["08:00", "20:00"], 10)
    assert pax.adjustments[0]["amount"] == "150"
    codes = list(
        EligibilityCriterion.objects.filter(protocol=protocol).values_list("code", flat=True)
    )
    assert codes == [f"I{i}" for i in range(1, 5)] + [f"E{i}" for i in range(1, 13)]
    assert EligibilityCriterion.objects.get(code="E5").asked_for_sex == ["F"]
    assert [(v.code, v.study_day, v.window_days) for v in protocol.visits.all()] == [
        ("D0", 0, 0),
        ("D1", 1, 0),
        ("D4", 4, 0),
        ("D7", 7, 1),
        ("D14", 14, 2),
        ("D28", 28, 3),
    ]


def test_loading_twice_writes_nothing_the_second_time(protocol, definition):
    before = sum(m.history.count() for m in (Protocol, Arm, DoseSchedule, EligibilityCriterion))
    protocol_load(definition=definition)
    after = sum(m.history.count() for m in (Protocol, Arm, DoseSchedule, EligibilityCriterion))
    assert after == before
    assert definition_from_db(protocol) == definition


def test_load_command_is_idempotent(db, capsys):
    call_command("load_protocol")
    call_command("load_protocol")
    assert Protocol.objects.count() == 1
    assert "3 arms, 16 criteria, 6 visits" in capsys.readouterr().out


def test_an_amendment_is_a_data_change_recorded_in_the_audit_trail(protocol, definition):
    schedules = definition.sections["dose_schedules"]
    schedules = {**schedules, "PAX": [replace(schedules["PAX"][0], window_hours=3)]}
    protocol_load(
        definition=replace(definition, version="1.1").with_section("dose_schedules", schedules)
    )
    pax = DoseSchedule.objects.get(arm__code="PAX")
    assert pax.window_hours == 3
    latest = pax.history.first()
    assert latest.history_change_reason == "load_protocol NCT05682586 v1.1"
    assert latest.prev_record.window_hours == 2


def test_an_invalid_definition_is_refused_whole(db, definition):
    with pytest.raises(ProtocolInvalid, match="trialsite.E001"):
        protocol_load(definition=replace(definition, block_sizes=[4]))
    assert not Protocol.objects.exists()


def test_an_amendment_cannot_remove_a_schedule_participants_are_dosed_on(
    protocol, definition, site_a, coordinator_a
):
    from django.utils import timezone

    from dosing.services import participant_dosing_schedule_create
    from tests.factories import ParticipantFactory

    participant = ParticipantFactory(site=site_a, user=coordinator_a)
    msc = Arm.objects.get(protocol=protocol, code="MSC")
    participant_dosing_schedule_create(
        participant=participant,
        arm=msc,
        randomized_at=timezone.now(),
        user=coordinator_a,
        weight_kg=Decimal("70"),
    )
    arms = [
        replace(a, arm_type="no_intervention") if a.code == "MSC" else a
        for a in definition.sections["arms"]
    ]
    amended = (
        replace(definition, version="1.1")
        .with_section("arms", arms)
        .with_section("dose_schedules", {**definition.sections["dose_schedules"], "MSC": []})
    )
    with pytest.raises(ProtocolInvalid) as excinfo:
        protocol_load(definition=amended)
    assert str(excinfo.value) == (
        "trialsite.E009: Arm MSC: the schedule of UC-MSC suspension has doses planned for "
        "participants and cannot be removed."
    )
    protocol.refresh_from_db()
    assert protocol.version == "1.0"  # the whole load rolled back
    assert DoseSchedule.objects.filter(arm=msc).count() == 1


def test_manage_py_check_reports_a_broken_loaded_protocol(protocol):
    criterion = EligibilityCriterion.objects.get(protocol=protocol, code="E3")
    criterion.rule = ""
    audited_save(criterion, reason="test: break the protocol")
    arm = Arm.objects.get(protocol=protocol, code="PAX")
    schedule = arm.dose_schedules.get()
    schedule._change_reason = "test: an arm without its schedule"
    schedule.delete()
    with pytest.raises(SystemCheckError) as excinfo:
        call_command("check")
    message = str(excinfo.value)
    assert "(trialsite.E003) Criterion E3 has no rule." in message
    assert "(trialsite.E002) Arm PAX (active_comparator) has no dose schedule." in message


def test_manage_py_check_passes_on_the_shipped_protocol(protocol):
    call_command("check")
