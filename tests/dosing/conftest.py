"""Dosing fixtures: randomized participants with a screening weight, and their schedules."""

import datetime
from decimal import Decimal

import pytest
import time_machine

from arms.models import Arm
from dosing.services import participant_dosing_schedule_create
from enrollment.models import Decision, Screening
from tests.factories import ParticipantFactory
from trialsite.core.audit import audited_save
from trialsite.core.clock import site_today

NAME = "Li Wenjing"
MRN = "SHE-MRN-55102"


def screened_participant(*, site, user, weight_kg="62", name=None, mrn=None, **answers):
    participant = ParticipantFactory(
        site=site, user=user, **({"name": name} if name else {}), **({"mrn": mrn} if mrn else {})
    )
    audited_save(
        Screening(
            participant=participant,
            protocol=Arm.objects.get(code="MSC").protocol,
            screened_by=user,
            screening_date=site_today(site),
            answers={"severity": "severe", "weight_kg": weight_kg, **answers},
            decision=Decision.ELIGIBLE,
            results=[{"code": "I3", "outcome": "met", "reason": "BMI in range"}],
        ),
        user=user,
    )
    return participant


def randomize(participant, arm_code, *, at, user, **kwargs):
    """What the allocation service does with dosing: one call, in its transaction."""
    return participant_dosing_schedule_create(
        participant=participant,
        arm=Arm.objects.get(code=arm_code),
        randomized_at=at,
        user=user,
        **kwargs,
    )


@pytest.fixture
def participant_a(protocol, site_a, coordinator_a, investigator_a):
    return screened_participant(site=site_a, user=coordinator_a, name=NAME, mrn=MRN)


@pytest.fixture
def pax_doses(protocol, site_a, coordinator_a, investigator_a):
    """Ten nirmatrelvir doses of 300 mg (eGFR 90), randomized 2026-03-10 10:00 site time."""
    participant = screened_participant(site=site_a, user=coordinator_a, egfr="90")
    at = site_time(site_a, 2026, 3, 10, 10, 0)
    with time_machine.travel(at, tick=False):
        return randomize(participant, "PAX", at=at, user=coordinator_a)


def site_time(site, *parts) -> datetime.datetime:
    return datetime.datetime(*parts, tzinfo=site.zone)


@pytest.fixture
def cells_per_kg():
    return Decimal("1000000")
