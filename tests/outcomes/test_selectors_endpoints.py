"""A participant's derived endpoints from the records themselves, in a fixed number of
queries, and on the participant page."""

import datetime
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from outcomes.models import ScheduledVisit
from outcomes.rules import TimeToEvent
from outcomes.selectors import ParticipantEndpoints, participant_endpoints
from outcomes.services import adverse_event_record, visit_record
from tests.factories import ready_participant
from tests.outcomes.visit_helpers import randomized, site_time

pytestmark = pytest.mark.django_db

MEASURED = {
    "spo2": 93,
    "pao2": Decimal("80"),
    "fio2": Decimal("40"),
    "lymphocytes": Decimal("0.8"),
    "crp": Decimal("35.5"),
    "il6": Decimal("12.0"),
    "chest_ct": "stable",
}


@pytest.fixture
def allocation(protocol, site_a, coordinator_a, investigator_a, administrator):
    # Day 0 is 2026-03-10 at the site.
    return randomized(
        site=site_a,
        coordinator=coordinator_a,
        investigator=investigator_a,
        administrator=administrator,
        at=site_time(site_a, 2026, 3, 10, 10, 0),
    )


def record(allocation, code, user, *, day, who_score, support, **dates):
    visit = ScheduledVisit.objects.get(participant=allocation.participant, definition__code=code)
    visit_date = datetime.date(2026, 3, 10) + datetime.timedelta(days=day)
    with time_machine.travel(site_time(allocation.participant.site, 2026, 3, 10 + day, 18, 0)):
        visit_record(
            scheduled_visit=visit,
            user=user,
            visit_date=visit_date,
            vital_status="alive",
            measurements={**MEASURED, "who_score": who_score, "respiratory_support": support},
            **dates,
        )


def test_not_randomized_has_no_endpoints(protocol, site_a, coordinator_a, investigator_a):
    participant = ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)
    assert participant_endpoints(participant) is None


def test_on_study_the_improvement_is_known_and_the_rest_waits_for_day_28(
    allocation, coordinator_a, django_assert_num_queries
):
    record(allocation, "D0", coordinator_a, day=0, who_score=6, support="high_flow")
    record(allocation, "D1", coordinator_a, day=1, who_score=7, support="invasive")
    record(allocation, "D4", coordinator_a, day=4, who_score=4, support="oxygen")
    participant = allocation.participant
    at = site_time(participant.site, 2026, 3, 15, 9, 0)
    with time_machine.travel(at, tick=False), django_assert_num_queries(4):
        endpoints = participant_endpoints(participant)
    assert endpoints == ParticipantEndpoints(
        died_by_day_28=None,
        improvement=TimeToEvent(4, event=True),
        ventilation_free_days=None,
        worst_who_score=7,
        on_study=True,
    )


def test_a_grade_5_event_before_improvement(allocation, coordinator_a, django_assert_num_queries):
    record(allocation, "D0", coordinator_a, day=0, who_score=6, support="high_flow")
    record(allocation, "D1", coordinator_a, day=1, who_score=8, support="invasive")
    participant = allocation.participant
    with time_machine.travel(site_time(participant.site, 2026, 3, 16, 18, 0), tick=False):
        adverse_event_record(
            participant=participant,
            user=coordinator_a,
            term="Respiratory failure",
            onset_date=datetime.date(2026, 3, 14),
            end_date=None,
            grade=5,
            death_date=datetime.date(2026, 3, 16),
            serious=True,
            criteria={"death"},
            action_taken="not_applicable",
            outcome="fatal",
        )
    at = site_time(participant.site, 2026, 4, 20, 9, 0)
    with time_machine.travel(at, tick=False), django_assert_num_queries(4):
        endpoints = participant_endpoints(participant)
    # Died on day 6, ventilated from day 1: no day alive and free of the ventilator.
    assert endpoints == ParticipantEndpoints(
        died_by_day_28=True,
        improvement=TimeToEvent(28, event=False),
        ventilation_free_days=0,
        worst_who_score=10,
        on_study=False,
    )


def test_discharge_recorded_at_a_visit_is_the_improvement(allocation, coordinator_a):
    record(allocation, "D0", coordinator_a, day=0, who_score=5, support="oxygen")
    record(
        allocation,
        "D4",
        coordinator_a,
        day=4,
        who_score=4,
        support="none",
        discharged_on=datetime.date(2026, 3, 13),
    )
    with time_machine.travel(site_time(allocation.participant.site, 2026, 3, 15, 9, 0)):
        endpoints = participant_endpoints(allocation.participant)
    assert endpoints.improvement == TimeToEvent(3, event=True)


def test_the_participant_page_shows_the_endpoints(client_for, investigator_a, allocation):
    record(allocation, "D0", investigator_a, day=0, who_score=6, support="high_flow")
    with time_machine.travel(site_time(allocation.participant.site, 2026, 3, 12, 9, 0)):
        html = (
            client_for(investigator_a)
            .get(
                reverse("enrollment:participant_detail", args=[allocation.participant.study_number])
            )
            .content.decode()
        )
    assert 'data-testid="endpoints"' in html
    assert '<dd class="col-5" data-testid="endpoint-mortality">Unknown</dd>' in html
    assert 'data-testid="endpoint-improvement">Censored at study day 2</dd>' in html
    assert 'data-testid="endpoint-worst-who">6</dd>' in html
    assert "Provisional while follow-up goes on." in html
