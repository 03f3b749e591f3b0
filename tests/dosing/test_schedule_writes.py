"""A participant's dose schedule is written in bulk: a fixed number of queries whether the arm
has two infusions or ten tablets, each dose still with its history row (who, when), and a
constraint the database holds still refuses the whole schedule."""

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from dosing.models import ScheduledDose
from tests.dosing.conftest import randomize, screened_participant, site_time
from trialsite.core.audit import audited_bulk_create

pytestmark = pytest.mark.django_db


def schedule_queries(participant, arm_code, user) -> int:
    at = site_time(participant.site, 2026, 3, 10, 10, 0)
    with time_machine.travel(at, tick=False), CaptureQueriesContext(connection) as captured:
        randomize(participant, arm_code, at=at, user=user)
    return len(captured)


def test_ten_doses_cost_the_queries_of_two_and_each_has_its_history(
    protocol, site_a, coordinator_a
):
    msc = screened_participant(site=site_a, user=coordinator_a, egfr="90")
    pax = screened_participant(site=site_a, user=coordinator_a, egfr="90")
    two = schedule_queries(msc, "MSC", coordinator_a)
    ten = schedule_queries(pax, "PAX", coordinator_a)
    assert ScheduledDose.objects.filter(participant=pax).count() == 10
    assert ten == two
    assert ten <= 12  # a query or more per dose would be twenty
    history = ScheduledDose.history.filter(participant=pax)
    assert history.count() == 10
    assert {(h.history_type, h.history_user_id) for h in history} == {("+", coordinator_a.pk)}


def test_a_dose_the_database_refuses_writes_no_history(protocol, site_a, coordinator_a):
    participant = screened_participant(site=site_a, user=coordinator_a, egfr="90")
    at = site_time(site_a, 2026, 3, 10, 10, 0)
    first = randomize(participant, "MSC", at=at, user=coordinator_a)[0]
    # The unique (participant, schedule, sequence) is held by the database, not re-checked
    # in Python: a second dose 1 is refused, with its history row, as one.
    twin = ScheduledDose(
        **{
            f.attname: getattr(first, f.attname)
            for f in ScheduledDose._meta.concrete_fields
            if not f.primary_key
        }
    )
    before = ScheduledDose.history.count()
    with pytest.raises(IntegrityError), transaction.atomic():
        audited_bulk_create([twin], user=coordinator_a)
    assert ScheduledDose.objects.filter(participant=participant).count() == 2
    assert ScheduledDose.history.count() == before
