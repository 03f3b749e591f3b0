"""The short fault drills of bench/drills.py, against the real PostgreSQL (the test database)
and a redis-server of the drill's own (which it kills and restarts; never the shared one),
with real worker and beat processes. Each asserts what the drill prints: nothing lost, nothing
doubled but the one message a killed worker had in flight, which the system flags.

The PostgreSQL restart needs a cluster of its own and a gunicorn: it runs in the bench script
only (`bench/drills.py postgres-restart`); test_database_unavailable.py covers its 503 page.
"""

import pytest

from bench import drills
from tests.conftest import service_missing
from tests.factories import active_randomization_list
from trialsite.celery import app

pytestmark = [pytest.mark.drill, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def drill(
    postgres,
    child_env,
    tmp_path,
    monkeypatch,
    protocol,
    site_a,
    site_b,
    administrator,
    coordinator_a,
    investigator_a,
):
    try:
        redis_server = drills.PrivateRedis(tmp_path / "redis")
        redis_server.start()
    except drills.DrillError as exc:
        service_missing("redis", str(exc))

    def drop_pools():
        # Dropped, not closed: this process publishes to the drill's Redis, then to the
        # configured broker again.
        app._pool = None
        app.amqp._producer_pool = None

    drop_pools()
    monkeypatch.setitem(app.conf, "broker_url", redis_server.url)
    active_randomization_list(administrator=administrator, per_stratum=40)
    yield drills.Drill(
        env=child_env,
        folder=tmp_path / "runs",
        redis=redis_server,
        site=site_a,
        coordinator=coordinator_a,
        investigator=investigator_a,
    )
    redis_server.kill()
    drop_pools()
    monkeypatch.undo()


def test_a_worker_killed_mid_batch_loses_nothing_and_flags_the_one_in_flight(drill):
    outcome = drills.worker_kill(drill, count=12)
    print(outcome)
    assert outcome.ok, outcome
    assert outcome.lost == [] and len(outcome.flagged) <= 1, outcome


def test_redis_restarted_twice_loses_no_reminder_and_no_notice(drill):
    outcome = drills.redis_restart(drill)
    print(outcome)
    assert outcome.ok, outcome
    assert (outcome.expected, outcome.lost, outcome.doubled) == (20, [], []), outcome


def test_two_beats_by_mistake_double_no_reminder(drill):
    outcome = drills.two_beats(drill, count=20, spread=4.0)
    print(outcome)
    assert (outcome.lost, outcome.doubled, outcome.flagged) == ([], [], []), outcome


def test_a_beat_stopped_for_ten_minutes_sends_each_reminder_due_meanwhile_once(drill):
    outcome = drills.beat_stopped(drill, count=20, minutes=10)
    print(outcome)
    assert (outcome.lost, outcome.doubled, outcome.flagged) == ([], [], []), outcome
