"""Reminder delivery through real Celery workers on a real broker, read from the workers' own
mail files (Django's file backend): exactly once; two workers at once; a worker SIGKILLed
mid-batch; a Redis restarted between scheduling and sending.

The broker is the configured one (kombu's filesystem transport, or Redis with REDIS_URL),
except the Redis-restart test, which starts and restarts a private redis-server of its own.
The beat is simulated by sending the dispatch task, as the beat does every minute.
"""

import re
import shutil
import signal
import socket
import subprocess
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery
from django.utils import timezone

from dosing.models import Reminder, ReminderKind, ReminderStatus
from dosing.services import CLAIM_LEASE
from dosing.tasks import reminders_dispatch
from tests.conftest import ROOT, service_missing, wait_for, worker_command
from tests.dosing.conftest import randomize, screened_participant
from trialsite.celery import app

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TASK = "dosing.tasks.reminders_dispatch"
SLOW = "tests.dosing.fakes.SlowFileBackend"


def mailed_ids(*folders: Path) -> Counter:
    """How many times each reminder id went out, read from the workers' mail files."""
    counts: Counter = Counter()
    for folder in folders:
        for path in folder.glob("*.log") if folder.exists() else []:
            for match in re.finditer(r"^X-Reminder-Id: (\d+)$", path.read_text(), re.M):
                counts[int(match.group(1))] += 1
    return counts


class Workers:
    """Real worker processes on this test's database, each with its own mail folder."""

    def __init__(self, child_env, tmp_path):
        self.env = child_env
        self.tmp = tmp_path
        self.procs: dict[str, subprocess.Popen] = {}

    def mail(self, name: str) -> Path:
        return self.tmp / f"mail-{name}"

    def log(self, name: str) -> Path:
        return self.tmp / f"worker-{name}.log"

    def start(self, name: str, *, slow: float = 0.0, **env) -> subprocess.Popen:
        child = dict(self.env)
        child.update(
            EMAIL_BACKEND=SLOW,
            EMAIL_FILE_PATH=str(self.mail(name)),
            SLOW_MAIL_SECONDS=str(slow),
            SITE_URL="https://ctms.test",
            **env,
        )
        with open(self.log(name), "a") as log:
            proc = subprocess.Popen(
                worker_command(name),
                cwd=ROOT,
                env=child,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        if not wait_for(lambda: "ready." in self.log(name).read_text(), timeout=30):
            self.stop_all()
            service_missing("worker", self.log(name).read_text()[-2000:])
        return proc

    def finished(self, name: str) -> int:
        return len(
            re.findall(rf"Task {re.escape(TASK)}\[[^\]]+\] succeeded", self.log(name).read_text())
        )

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()


@pytest.fixture
def workers(child_env, tmp_path, request):
    if app.conf.broker_url.startswith("redis"):
        request.getfixturevalue("redis_broker")
    _purge_dispatch_queue()
    pool = Workers(child_env, tmp_path)
    yield pool
    pool.stop_all()


def _purge_dispatch_queue():
    """Messages left by earlier tests of this run (resend, the beat) are not this test's."""
    with app.connection_for_write() as conn:
        app.control.purge(connection=conn)


def make_due(site, user, n: int) -> list[int]:
    """Schedule MSC participants now, then bring `n` of their lead reminders to now: as if
    their time had come. The other reminders stay in the future and must not go out."""
    ids: list[int] = []
    while len(ids) < n:
        participant = screened_participant(site=site, user=user)
        randomize(participant, "MSC", at=timezone.now(), user=user)
        ids += list(
            Reminder.objects.filter(participant=participant, kind=ReminderKind.LEAD)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    ids = ids[:n]
    Reminder.objects.filter(pk__in=ids).update(due_at=timezone.now() - timedelta(seconds=5))
    return ids


def status_of(ids) -> Counter:
    return Counter(Reminder.objects.filter(pk__in=ids).values_list("status", flat=True))


# --- Exactly once -----------------------------------------------------------------------------


def test_due_reminders_are_delivered_exactly_once_by_a_real_worker(
    workers, protocol, site_a, coordinator_a, investigator_a
):
    due = make_due(site_a, coordinator_a, 12)
    not_due = set(Reminder.objects.values_list("pk", flat=True)) - set(due)
    workers.start("solo")
    for _ in range(3):  # three beat ticks (or one tick delivered three times)
        reminders_dispatch.delay()
    assert wait_for(lambda: workers.finished("solo") == 3), workers.log("solo").read_text()[-3000:]
    mailed = mailed_ids(workers.mail("solo"))
    assert mailed == Counter({pk: 1 for pk in due})
    assert status_of(due) == Counter({"sent": 12})
    assert not Reminder.objects.filter(pk__in=not_due).exclude(status="pending").exists()
    # What the worker wrote is the reminder text: study number, dose, site time, link.
    text = next(workers.mail("solo").glob("*.log")).read_text()
    assert "Asia/Shanghai" in text and "https://ctms.test/dosing/doses/" in text


def test_two_workers_at_once_still_deliver_exactly_once(
    workers, protocol, site_a, coordinator_a, investigator_a
):
    due = make_due(site_a, coordinator_a, 30)
    workers.start("one", slow=0.1)
    workers.start("two", slow=0.1)
    for _ in range(6):
        reminders_dispatch.delay()
    assert wait_for(lambda: workers.finished("one") + workers.finished("two") == 6, timeout=90)
    mailed = mailed_ids(workers.mail("one"), workers.mail("two"))
    assert mailed == Counter({pk: 1 for pk in due})
    assert status_of(due) == Counter({"sent": 30})
    # Both really worked on the same rows at the same time: each sent some, none twice.
    by_worker = Counter(
        claim.split("-")[0]
        for claim in Reminder.objects.filter(pk__in=due).values_list("claimed_by", flat=True)
    )
    assert set(by_worker) == {"one", "two"}, by_worker
    assert mailed_ids(workers.mail("one")) and mailed_ids(workers.mail("two"))


# --- A worker killed mid-batch ------------------------------------------------------------------


def test_a_worker_killed_mid_batch_loses_nothing_and_only_the_message_in_flight_can_double(
    workers, protocol, site_a, coordinator_a, investigator_a
):
    due = make_due(site_a, coordinator_a, 20)
    workers.start("doomed", slow=0.5)
    reminders_dispatch.delay()
    assert wait_for(lambda: sum(mailed_ids(workers.mail("doomed")).values()) >= 3, timeout=60)
    workers.kill("doomed")  # SIGKILL: no clean-up, no ack
    before = status_of(due)
    assert 3 <= before["sent"] < 20, before
    assert before["sending"] <= 1, before  # one row in flight at most: one worker, one send
    in_flight = set(
        Reminder.objects.filter(pk__in=due, status=ReminderStatus.SENDING).values_list(
            "pk", flat=True
        )
    )
    # The claim lease (task hard time limit + 60 s) passes: the dead worker's claim expires.
    Reminder.objects.filter(pk__in=in_flight).update(
        claimed_at=timezone.now() - CLAIM_LEASE - timedelta(seconds=1)
    )
    workers.start("rescue")
    reminders_dispatch.delay()  # the next beat tick
    assert wait_for(lambda: status_of(due) == Counter({"sent": 20}), timeout=60), status_of(due)
    mailed = mailed_ids(workers.mail("doomed"), workers.mail("rescue"))
    assert set(mailed) == set(due), "every reminder went out"
    doubled = {pk for pk, n in mailed.items() if n > 1}
    assert doubled <= in_flight, "only the message in flight at the kill may go out twice"
    assert all(n <= 2 for n in mailed.values())
    for reminder in Reminder.objects.filter(pk__in=in_flight):
        assert (reminder.interrupted, reminder.attempts) == (1, 2)  # shown on the page
    assert not Reminder.objects.filter(pk__in=set(due) - in_flight, interrupted__gt=0).exists()


# --- Redis restarted between scheduling and sending ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test's own, with append-only persistence, that the test may
    kill and restart (never the shared one)."""

    def __init__(self, folder: Path):
        self.binary = shutil.which("redis-server")
        if not self.binary:
            service_missing("redis", "redis-server is not installed")
        self.port = _free_port()
        self.folder = folder
        self.folder.mkdir()
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1)

        def answers():
            try:
                return client.ping()
            except redis.RedisError:
                return False

        assert wait_for(answers, timeout=15), "private redis-server did not start"

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    if server.proc and server.proc.poll() is None:
        server.kill()


def test_redis_restarted_between_scheduling_and_sending_loses_nothing(
    workers, private_redis, protocol, site_a, coordinator_a, investigator_a
):
    # Not the current app: shared tasks elsewhere in the run must keep the configured broker.
    beat = Celery(broker=private_redis.url, set_as_current=False)  # the beat side
    first = make_due(site_a, coordinator_a, 8)
    beat.send_task(TASK)  # a tick while no worker runs: the message sits in Redis...
    private_redis.kill()  # ...and Redis dies without a chance to write it down
    private_redis.start()
    workers.start("redis", REDIS_URL=private_redis.url)
    beat.send_task(TASK)  # the next tick
    assert wait_for(lambda: status_of(first) == Counter({"sent": 8}), timeout=60)

    # Again, with the worker running through the restart.
    second = make_due(site_a, coordinator_a, 5)
    private_redis.kill()
    private_redis.start()
    assert wait_for(lambda: _send_when_up(beat), timeout=30)
    assert wait_for(lambda: status_of(second) == Counter({"sent": 5}), timeout=90), workers.log(
        "redis"
    ).read_text()[-3000:]
    assert mailed_ids(workers.mail("redis")) == Counter({pk: 1 for pk in first + second})
    beat.close()


def _send_when_up(celery_app) -> bool:
    try:
        celery_app.send_task(TASK)
    except Exception:  # noqa: BLE001 - the connection comes back in its own time
        return False
    return True


def test_the_dispatcher_is_on_the_beat_every_minute_and_never_as_a_countdown():
    entry = app.conf.beat_schedule["dosing-reminders"]
    assert (entry["task"], entry["schedule"]) == (TASK, 60.0)
    assert reminders_dispatch.acks_late is True
    source = (ROOT / "dosing").glob("*.py")
    assert not any(re.search(r"\b(countdown|eta)\s*=", p.read_text()) for p in source)
