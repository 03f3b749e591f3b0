"""Many coordinators randomizing in one stratum at the same moment.

Each thread has its own database connection (Django's connections are per thread). On
PostgreSQL the stratum row lock serialises them; on SQLite the IMMEDIATE transaction does.
Either way: every participant gets exactly one entry, the stratum's entries are used in
sequence with no gap and no repeat, and the arms are those of the list.
"""

import threading
import uuid
from collections import Counter

import pytest
from django.db import connection, connections

from arms import selectors, services
from arms.models import Allocation
from tests.factories import active_randomization_list, ready_participant

THREADS = 8
PARTICIPANTS = 200


def randomize_all_at_once(participants, users) -> list[BaseException]:
    """THREADS threads, released together by a barrier, each randomizing its share."""
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []
    shares = [participants[i::THREADS] for i in range(THREADS)]

    def work(share, user):
        try:
            barrier.wait(timeout=60)
            for participant in share:
                services.participant_randomize(
                    participant=participant, user=user, idempotency_key=uuid.uuid4()
                )
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()  # this thread's connections only

    threads = [
        threading.Thread(target=work, args=(share, users[i % len(users)]))
        for i, share in enumerate(shares)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a randomizing thread hung"
    return errors


def check_the_stratum(randomization_list, participants):
    allocations = list(
        Allocation.objects.filter(participant__in=participants).select_related("entry", "arm")
    )
    # Every participant exactly once.
    assert sorted(a.participant_id for a in allocations) == sorted(p.pk for p in participants)
    # Entries 1..N of the stratum, each once: no gap, no repeat.
    assert {a.stratum.code for a in allocations} == {"SHE-severe"}
    assert sorted(a.entry.sequence for a in allocations) == list(range(1, len(participants) + 1))
    # The arms are the list's arms for those entries.
    planned = [e for e in selectors.list_entries(randomization_list) if e.stratum == "SHE-severe"]
    assert Counter(a.arm.code for a in allocations) == Counter(
        e.arm for e in planned[: len(participants)]
    )
    for a in allocations:
        assert a.arm.code == planned[a.entry.sequence - 1].arm


def make_stratum_of_ready_participants(site_a, administrator, coordinator_a, investigator_a):
    randomization_list = active_randomization_list(
        administrator=administrator, per_stratum=PARTICIPANTS
    )
    participants = [
        ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)
        for _ in range(PARTICIPANTS)
    ]
    return randomization_list, participants


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_eight_connections_randomize_one_stratum_at_once_on_postgresql(
    postgres, protocol, site_a, site_b, administrator, coordinator_a, investigator_a
):
    randomization_list, participants = make_stratum_of_ready_participants(
        site_a, administrator, coordinator_a, investigator_a
    )
    errors = randomize_all_at_once(participants, [coordinator_a, investigator_a])
    assert errors == []
    check_the_stratum(randomization_list, participants)


@pytest.mark.django_db(transaction=True)
def test_eight_threads_randomize_one_stratum_at_once_on_sqlite(
    protocol, site_a, site_b, administrator, coordinator_a, investigator_a
):
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite variant; PostgreSQL has its own test")
    randomization_list, participants = make_stratum_of_ready_participants(
        site_a, administrator, coordinator_a, investigator_a
    )
    errors = randomize_all_at_once(participants, [coordinator_a, investigator_a])
    assert errors == []
    check_the_stratum(randomization_list, participants)


@pytest.mark.django_db(transaction=True)
def test_a_double_click_from_two_connections_randomizes_once(
    protocol, site_a, site_b, administrator, coordinator_a, investigator_a
):
    """The same key sent by eight threads at once (a double click, retried requests)."""
    active_randomization_list(administrator=administrator, per_stratum=10)
    participant = ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)
    key = uuid.uuid4()
    barrier = threading.Barrier(THREADS)
    results, errors = [], []

    def work():
        try:
            barrier.wait(timeout=60)
            results.append(
                services.participant_randomize(
                    participant=participant, user=coordinator_a, idempotency_key=key
                ).pk
            )
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(set(results)) == 1 and len(results) == THREADS
    assert Allocation.objects.filter(participant=participant).count() == 1
