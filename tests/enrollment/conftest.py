"""Enrollment fixtures: a registered participant at site A, a consent version in force, and
the answers of a patient who meets every criterion."""

import datetime
from decimal import Decimal

import pytest

from tests.factories import ConsentVersionFactory, ParticipantFactory
from trialsite.core.clock import site_today

NAME = "Zhang Xiuying"
MRN = "SHE-MRN-77341"


@pytest.fixture
def participant_a(protocol, site_a, coordinator_a):
    return ParticipantFactory(site=site_a, user=coordinator_a, name=NAME, mrn=MRN, sex="F")


@pytest.fixture
def consent_version(protocol, administrator):
    return ConsentVersionFactory(
        version="1.0",
        created_by=administrator,
        irb_approval_date=datetime.date(2026, 1, 5),
        effective_date=datetime.date(2026, 1, 15),
    )


def eligible_answers(site, **changes) -> dict:
    """Service answers (typed values) of a patient who meets every screened criterion."""
    today = site_today(site)
    answers = {
        "screening_date": today,
        "diagnosis_date": today - datetime.timedelta(days=2),
        "severity": "severe",
        "respiratory_rate": 31,
        "spo2": 95,
        "pao2_fio2": None,
        "imaging_progression": False,
        "mechanical_ventilation": False,
        "shock": False,
        "icu_organ_failure": False,
        "height_cm": Decimal("165"),
        "weight_kg": Decimal("62"),
        "egfr": Decimal("85"),
        "nyha_class": 1,
        "ckd_stage": 0,
        "child_pugh": 0,
        "E12_reason": "",
    }
    for code in ("E1", "E2", "E3", "E4", "E5", "E6", "E7", "E9", "E10", "E11", "E12"):
        answers[code] = False
    answers.update(changes)
    return answers


def eligible_post(site, **changes) -> dict:
    """The same answers as the screening form posts them."""
    data = {}
    for key, value in eligible_answers(site).items():
        if isinstance(value, bool):
            if key.startswith("E"):
                data[key] = "yes" if value else "no"
            elif value:
                data[key] = "on"
        elif value is None:
            continue
        else:
            data[key] = str(value)
    data["submission_token"] = "8d8c1d7e-1111-4a4a-9b9b-000000000001"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}
