"""The participant list: search by a part of the study number, and the status columns
(consent, sign-off, arm, study day at the site's date), scoped to the user's sites, in the same
queries for 30 rows as for 3."""

import datetime
import re

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.dosing.conftest import screened_participant
from tests.factories import (
    ConsentVersionFactory,
    ParticipantFactory,
    active_randomization_list,
    bulk_allocated,
    ready_participant,
)

LIST = reverse("enrollment:participant_list")
# 10:00 in Shanghai, where both sites are.
NOON = datetime.datetime(2026, 3, 20, 2, 0, tzinfo=datetime.UTC)


@pytest.fixture(autouse=True)
def _pinned_clock():
    with time_machine.travel(NOON, tick=False):
        yield


def rows(html: str) -> dict[str, dict[str, str]]:
    """Study number -> the row's status cells, read from their data attributes."""
    found = {}
    for number, body in re.findall(
        r'data-testid="participant-row" data-study-number="([^"]+)">(.*?)</tr>', html, re.S
    ):
        found[number] = dict(re.findall(r'data-(consent|signoff|arm|study-day)="([^"]*)"', body))
    return found


def listed(client, **params) -> str:
    response = client.get(LIST, params)
    assert response.status_code == 200
    return response.content.decode()


def test_search_finds_a_part_of_the_study_number_in_any_case_and_keeps_it_in_the_box(
    client_for, protocol, site_a, coordinator_a
):
    for _ in range(12):
        ParticipantFactory(site=site_a, user=coordinator_a)
    client = client_for(coordinator_a)
    assert set(rows(listed(client, q="she-001"))) == {"SHE-0010", "SHE-0011", "SHE-0012"}
    assert set(rows(listed(client, q=" 0012 "))) == {"SHE-0012"}
    page = listed(client, q="she-001")
    assert 'name="q" id="id_q" value="she-001"' in page
    assert len(rows(listed(client))) == 12
    nothing = listed(client, q="ZZZ")
    assert rows(nothing) == {}
    assert "No participant's study number contains “ZZZ”." in nothing


def test_bad_search_input_is_a_page_not_an_error(client_for, protocol, site_a, coordinator_a):
    ParticipantFactory(site=site_a, user=coordinator_a)
    client = client_for(coordinator_a)
    for typed in ["%", "_", "'; DROP TABLE x; --", '<script>alert("x")</script>', "é" * 500]:
        page = listed(client, q=typed)
        assert "<script>alert" not in page
        assert rows(page) == {}  # nothing matches; the wildcard characters are taken literally
    # NUL, which PostgreSQL refuses in a query, is dropped: an empty search lists everyone.
    assert set(rows(listed(client, q="\x00"))) == {"SHE-0001"}


def test_search_never_finds_another_sites_participant(
    client_for, protocol, site_a, site_b, coordinator_a, coordinator_b
):
    ParticipantFactory(site=site_a, user=coordinator_a)
    ParticipantFactory(site=site_b, user=coordinator_b)
    outsider = client_for(coordinator_b)
    assert rows(listed(outsider, q="SHE")) == {}
    assert set(rows(listed(outsider, q="0001"))) == {"WUH-0001"}
    assert "SHE-0001" not in listed(outsider, q="0001")


def test_status_columns_say_consent_sign_off_arm_and_study_day(
    client_for, protocol, site_a, coordinator_a, investigator_a, administrator, cast
):
    registered = ParticipantFactory(site=site_a, user=coordinator_a)  # SHE-0001
    awaiting = screened_participant(site=site_a, user=coordinator_a)  # eligible, not signed
    ready = ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)
    randomization_list = active_randomization_list(administrator=administrator, seed=2)
    allocations = bulk_allocated(
        site=site_a, user=coordinator_a, randomization_list=randomization_list, count=2
    )
    # The second allocation was made a day and a minute before the first (09:59 yesterday).
    for monitor_or_staff in ("coordinator_a", "monitor", "data_manager"):
        found = rows(listed(client_for(cast[monitor_or_staff])))
        assert found[registered.study_number] == {
            "consent": "none",
            "signoff": "none",
            "arm": "",
            "study-day": "",
        }
        assert found[awaiting.study_number]["signoff"] == "awaited"
        assert found[ready.study_number] == {
            "consent": "current",
            "signoff": "signed",
            "arm": "",
            "study-day": "",
        }
        first, second = (found[a.participant.study_number] for a in allocations)
        assert (first["arm"], first["study-day"]) == (allocations[0].arm.code, "0")
        assert (second["arm"], second["study-day"]) == (allocations[1].arm.code, "1")

    # A new version in force: the consent on the old one needs re-consent.
    ConsentVersionFactory(
        version="2.0",
        created_by=administrator,
        irb_approval_date=datetime.date(2026, 3, 1),
        effective_date=datetime.date(2026, 3, 19),
    )
    found = rows(listed(client_for(coordinator_a)))
    assert found[ready.study_number]["consent"] == "reconsent"


def test_the_study_day_turns_at_midnight_at_the_site(client_for, protocol, site_a, cast):
    randomization_list = active_randomization_list(administrator=cast["administrator"], seed=4)
    # Randomized at 23:50 Shanghai time.
    randomized = datetime.datetime(2026, 3, 20, 23, 50, tzinfo=site_a.zone)
    with time_machine.travel(randomized, tick=False):
        (allocation,) = bulk_allocated(
            site=site_a, user=cast["coordinator_a"], randomization_list=randomization_list, count=1
        )
    assert allocation.randomized_at == randomized
    number = allocation.participant.study_number
    for local, day in (((23, 59), "0"), ((0, 0), "1"), ((0, 1), "1")):
        date = randomized.date() + datetime.timedelta(days=1 if local[0] == 0 else 0)
        at = datetime.datetime.combine(date, datetime.time(*local), tzinfo=site_a.zone)
        with time_machine.travel(at, tick=False):
            client = client_for(cast["coordinator_a"])  # a session of that hour
            assert rows(listed(client, q=number))[number]["study-day"] == day, local


def test_the_list_costs_the_same_queries_for_30_rows_as_for_3(
    client_for, protocol, site_a, coordinator_a, investigator_a, django_assert_max_num_queries
):
    def add(count):
        for _ in range(count):
            ParticipantFactory(site=site_a, user=coordinator_a)
            screened_participant(site=site_a, user=coordinator_a)
            ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)

    add(1)
    client = client_for(coordinator_a)
    with CaptureQueriesContext(connection) as captured:
        assert len(rows(listed(client))) == 3
    add(9)
    with django_assert_max_num_queries(len(captured)):
        assert len(rows(listed(client))) == 30
