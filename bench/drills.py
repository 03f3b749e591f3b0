"""Fault drills: what the trial's background work and web app survive, each counted.

    DEBUG=1 .venv/bin/python bench/drills.py all              # every drill, about 2 minutes
    DEBUG=1 .venv/bin/python bench/drills.py worker-kill      # or one of them:
        worker-kill  redis-restart  two-beats  beat-stopped  postgres-restart

The script runs its own throw-away PostgreSQL cluster (initdb on a free port, as the
`postgres` user when run as root) and its own redis-server (no persistence: a restart loses
every queued message, the worst case), so that it can restart them; the shared servers are
never touched. Workers are real `celery worker` processes, beats real `celery beat` processes
on a shortened schedule (bench/drill_beat.py); their mail goes to files, counted afterwards by
each message's id header.

Each drill prints what it lost (the goal: nothing) and what it doubled (the goal: nothing,
except the one message a killed worker had in flight, which the reminders page flags).
tests/trialsite/test_drills.py runs the short ones against CI's PostgreSQL and Redis.

- worker-kill: a worker SIGKILLed in the middle of a batch of due reminders; the claim lease
  (task time limit + 60 s) is passed on the clock; a second worker and the next tick finish.
- redis-restart: Redis killed and restarted twice: with notices and a tick queued and no
  worker running, then under a running worker and beat with new rows written while it is down.
- two-beats: two beats started by mistake, with two workers, while reminders come due.
- beat-stopped: the beat down for 10 minutes (the reminders due over those 10 minutes are
  brought to them on the clock); nothing goes out until it returns, then each goes out once.
- postgres-restart: PostgreSQL stopped (-m fast) for 5 s and started under 4 clients randomizing
  through gunicorn (DEBUG off, CONN_MAX_AGE=60): every response is a page or a 503 asking to
  retry, nothing is half-written, and the same gunicorn serves again once the database is up.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SLOW_MAIL = "tests.dosing.fakes.SlowFileBackend"
DISPATCH = "dosing.tasks.reminders_dispatch"
# The demo key of settings.py (DEBUG=1): the gunicorn of the PostgreSQL drill runs with DEBUG
# off and must read the identifiers this process wrote.
DEMO_FIELD_KEY = "ZGVtby1vbmx5LWtleS1ub3Qtc2VjcmV0LTAwMDAwMDA="


# --- Waiting and ports ---------------------------------------------------------------------------


def wait_for(predicate, timeout: float = 60.0, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DrillError(RuntimeError):
    """A service of the drill did not start: the drill could not be run (not a lost row)."""


# --- Private servers: never the shared ones ------------------------------------------------------


class PrivateRedis:
    """A redis-server of the drill's own, without persistence, that it may kill and restart."""

    def __init__(self, folder: Path):
        self.binary = shutil.which("redis-server")
        if not self.binary:
            raise DrillError("redis-server is not installed")
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        if not wait_for(answers, timeout=15):
            raise DrillError("the drill's redis-server did not start")

    def kill(self) -> None:
        """SIGKILL: no chance to write anything down (and nothing is persisted anyway)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise DrillError(f"{name} is not installed")
    return path


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free port, trust authentication, fsync off. Run as
    `postgres` when this process is root (PostgreSQL refuses to run as root)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = list(args)
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def url(self, database: str = "trialsite") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(_postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                  "-A", "trust", "-E", "UTF8", "--no-instructions")  # fmt: skip
        self.start()

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"),
                  "-o", options, "-w", action, *extra)  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def restart(self, down: float = 0.0) -> None:
        """Fast: open connections are cut and their transactions rolled back; then `down`
        seconds with nothing listening (a slow restart, a fail-over) before it starts."""
        self._ctl("stop", "-m", "fast")
        time.sleep(down)
        self.start()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("stop", "-m", "immediate")

    def createdb(self, name: str) -> None:
        self._run(_postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "postgres", name)  # fmt: skip


# --- Workers, beats, web: real processes ---------------------------------------------------------


class Processes:
    """The drill's child processes, each with its log and (workers) its own mail folder."""

    def __init__(self, env: dict, folder: Path):
        self.env = env
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def mail(self, name: str) -> Path:
        return self.folder / f"mail-{name}"

    def log_text(self, name: str) -> str:
        path = self.log(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def _start(self, name: str, command: list[str], ready: str, **env) -> subprocess.Popen:
        child = {**self.env, **{k: str(v) for k, v in env.items()}}
        with open(self.log(name), "a") as log:
            proc = subprocess.Popen(
                command, cwd=ROOT, env=child, stdout=log, stderr=subprocess.STDOUT
            )
        self.procs[name] = proc
        if not wait_for(lambda: ready in self.log_text(name) or proc.poll() is not None, 60):
            raise DrillError(f"{name} did not start:\n{self.log_text(name)[-2000:]}")
        if proc.poll() is not None:
            raise DrillError(f"{name} exited:\n{self.log_text(name)[-2000:]}")
        return proc

    def worker(self, name: str, *, slow: float = 0.0, **env) -> subprocess.Popen:
        """A worker as production runs it but one task at a time (solo), named `name`."""
        command = [
            sys.executable, "-m", "celery", "-A", "trialsite", "worker", "--pool=solo",
            "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"{name}-{os.getpid()}@%h",
        ]  # fmt: skip
        return self._start(
            name, command, "ready.", EMAIL_BACKEND=SLOW_MAIL,
            EMAIL_FILE_PATH=self.mail(name), SLOW_MAIL_SECONDS=slow, **env,
        )  # fmt: skip

    def beat(self, name: str, *, tick: float = 1.0, **env) -> subprocess.Popen:
        command = [
            sys.executable, "-m", "celery", "-A", "bench.drill_beat", "beat", "--loglevel=INFO",
            "-s", str(self.folder / f"{name}-schedule"), "--max-interval", str(max(1, int(tick))),
        ]  # fmt: skip
        return self._start(name, command, "beat: Starting", DRILL_TICK_SECONDS=tick, **env)

    def web(self, name: str, port: int, **env) -> subprocess.Popen:
        command = [
            sys.executable, "-m", "gunicorn", "trialsite.wsgi:application",
            "-b", f"127.0.0.1:{port}", "--workers", "2", "--timeout", "60",
        ]  # fmt: skip
        return self._start(name, command, "Booting worker", **env)

    def finished(self, name: str, task: str = DISPATCH) -> int:
        return len(re.findall(rf"Task {re.escape(task)}\[[^\]]+\] succeeded", self.log_text(name)))

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


# --- Counting what went out ----------------------------------------------------------------------


def _mail_text(folders) -> str:
    return "".join(
        path.read_text(errors="replace")
        for folder in folders
        if folder.exists()
        for path in sorted(folder.glob("*.log"))
    )


def reminders_mailed(*folders: Path) -> Counter:
    """How many times each dose reminder went out (its X-Reminder-Id header)."""
    text = _mail_text(folders)
    return Counter(int(m) for m in re.findall(r"^X-Reminder-Id: (\d+)$", text, re.M))


def notices_mailed(*folders: Path) -> Counter:
    """How many times each allocation notice went out, by its participant's study number."""
    text = _mail_text(folders)
    return Counter(re.findall(r"^Subject: Randomized: (\S+) to ", text, re.M))


@dataclass
class Outcome:
    """What one drill lost and doubled. `flagged`: rows the system itself marks as possibly
    sent twice (a worker killed mid-send); a doubled row outside them is a failure."""

    drill: str
    expected: int
    lost: list = field(default_factory=list)
    doubled: list = field(default_factory=list)
    flagged: list = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.lost and set(self.doubled) <= set(self.flagged)

    def __str__(self) -> str:
        lines = [
            f"{self.drill}: {'PASS' if self.ok else 'FAIL'} in {self.seconds:.1f} s; "
            f"{self.expected} expected, lost {len(self.lost)}, doubled {len(self.doubled)} "
            f"(flagged as possibly doubled: {len(self.flagged)})"
        ]
        if self.lost:
            lines.append(f"  lost: {self.lost[:20]}")
        if self.doubled:
            lines.append(f"  doubled: {self.doubled[:20]}, flagged: {self.flagged[:20]}")
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


def _doubled(counts: Counter) -> list:
    return sorted(key for key, n in counts.items() if n > 1)


# --- The trial the drills run on ---------------------------------------------------------------


@dataclass
class Drill:
    """One drill's world: the database this process uses (and its children's environment),
    the drill's own Redis, a folder, the site and its staff."""

    env: dict
    folder: Path
    redis: PrivateRedis
    site: object
    coordinator: object
    investigator: object

    def processes(self, name: str) -> Processes:
        """A fresh start: the messages an earlier drill's beats left in the queue are not
        this drill's (the rows are the work; a queued tick is only "go and look")."""
        import redis

        redis.Redis.from_url(self.redis.url).flushdb()
        env = {**self.env, "REDIS_URL": self.redis.url, "SITE_URL": "https://ctms.test"}
        return Processes(env, self.folder / name)

    def randomized(self, count: int) -> list:
        """`count` participants through the randomization service: allocation, notice row (its
        message enqueued on commit), dose and visit schedules with their reminder rows."""
        from arms.services import participant_randomize
        from tests.factories import ready_participant

        allocations = []
        for _ in range(count):
            participant = ready_participant(
                site=self.site, user=self.coordinator, investigator=self.investigator
            )
            allocations.append(
                participant_randomize(
                    participant=participant, user=self.coordinator, idempotency_key=uuid.uuid4()
                )
            )
        return allocations

    def reminders(self, count: int) -> list[int]:
        """`count` future dose reminders of newly randomized participants (the first lead
        reminders of each), for a drill to bring due."""
        from dosing.models import Reminder, ReminderKind, ReminderStatus

        ids: list[int] = []
        while len(ids) < count:
            (allocation,) = self.randomized(1)
            ids += list(
                Reminder.objects.filter(
                    participant=allocation.participant_id,
                    kind=ReminderKind.LEAD,
                    status=ReminderStatus.PENDING,
                )
                .order_by("due_at", "pk")
                .values_list("pk", flat=True)
            )
        return ids[:count]


def _due(ids, *, at) -> None:
    from dosing.models import Reminder

    Reminder.objects.filter(pk__in=ids).update(due_at=at)


def _status_of(ids) -> Counter:
    from dosing.models import Reminder

    return Counter(Reminder.objects.filter(pk__in=ids).values_list("status", flat=True))


def _tick() -> None:
    """What the beat sends every minute, sent once by hand."""
    from trialsite.celery import app

    app.send_task(DISPATCH)


def _reminder_outcome(name, ids, counts: Counter, started: float, flagged=()) -> Outcome:
    from dosing.models import Reminder

    unsent = sorted(
        set(ids)
        - set(Reminder.objects.filter(pk__in=ids, status="sent").values_list("pk", flat=True))
    )
    never_mailed = sorted(set(ids) - set(counts))
    return Outcome(
        drill=name,
        expected=len(ids),
        lost=sorted(set(unsent) | set(never_mailed)),
        doubled=_doubled(Counter({k: v for k, v in counts.items() if k in set(ids)})),
        flagged=sorted(flagged),
        seconds=time.monotonic() - started,
    )


# --- The drills ----------------------------------------------------------------------------------


def worker_kill(drill: Drill, count: int = 20) -> Outcome:
    from django.utils import timezone

    from dosing.models import Reminder, ReminderStatus
    from dosing.services import CLAIM_LEASE

    started = time.monotonic()
    procs = drill.processes("worker-kill")
    try:
        ids = drill.reminders(count)
        _due(ids, at=timezone.now() - timedelta(seconds=5))
        procs.worker("doomed", slow=0.3)
        _tick()
        if not wait_for(lambda: sum(reminders_mailed(procs.mail("doomed")).values()) >= 3, 60):
            raise DrillError("the worker sent nothing:\n" + procs.log_text("doomed")[-2000:])
        procs.kill("doomed")  # SIGKILL: no clean-up, no acknowledgement
        at_kill = _status_of(ids)
        in_flight = list(
            Reminder.objects.filter(pk__in=ids, status=ReminderStatus.SENDING).values_list(
                "pk", flat=True
            )
        )
        # The claim lease passes (task hard time limit + 60 s), on the clock.
        Reminder.objects.filter(pk__in=in_flight).update(
            claimed_at=timezone.now() - CLAIM_LEASE - timedelta(seconds=1)
        )
        procs.worker("rescue")
        _tick()
        wait_for(lambda: _status_of(ids) == Counter({"sent": count}), 60)
        counts = reminders_mailed(procs.mail("doomed"), procs.mail("rescue"))
        flagged = list(
            Reminder.objects.filter(pk__in=ids, interrupted__gt=0).values_list("pk", flat=True)
        )
        outcome = _reminder_outcome("worker-kill", ids, counts, started, flagged)
        outcome.notes.append(
            f"at the kill: {dict(at_kill)}; in flight {in_flight}, flagged after: {flagged}"
        )
        return outcome
    finally:
        procs.stop_all()


def redis_restart(drill: Drill) -> Outcome:
    from django.utils import timezone

    from arms.models import AllocationNotice, NoticeStatus

    started = time.monotonic()
    procs = drill.processes("redis-restart")
    try:
        # 1. Nothing running but Redis: notices (enqueued on commit) and a tick wait in it.
        first = drill.randomized(4)
        reminders = drill.reminders(8)
        _due(reminders, at=timezone.now() - timedelta(seconds=5))
        _tick()
        queued = _queue_length(drill.redis)
        drill.redis.restart()  # every queued message is gone
        after = _queue_length(drill.redis)
        procs.worker("worker")
        procs.beat("beat")
        # 2. Under a running worker and beat: Redis dies, rows are written while it is down.
        wait_for(lambda: _status_of(reminders) == Counter({"sent": 8}), 60)
        drill.redis.kill()
        second = drill.randomized(3)  # their on-commit message finds no broker (logged)
        more = drill.reminders(5)
        _due(more, at=timezone.now() - timedelta(seconds=5))
        drill.redis.start()
        allocations = first + second
        numbers = {a.participant.study_number for a in allocations}
        notices = AllocationNotice.objects.filter(allocation__in=allocations)
        wait_for(
            lambda: (
                _status_of(reminders + more) == Counter({"sent": 13})
                and notices.filter(status=NoticeStatus.SENT).count() == len(allocations)
            ),
            90,
        )
        counts = reminders_mailed(procs.mail("worker"))
        outcome = _reminder_outcome("redis-restart", reminders + more, counts, started)
        mailed = notices_mailed(procs.mail("worker"))
        outcome.expected += len(numbers)
        outcome.lost += sorted(numbers - set(mailed))
        outcome.lost += [
            f"notice {n.pk} {n.status}" for n in notices.exclude(status=NoticeStatus.SENT)
        ]
        outcome.doubled += _doubled(Counter({k: v for k, v in mailed.items() if k in numbers}))
        outcome.notes.append(
            f"13 reminders and {len(numbers)} allocation notices; messages queued at the first "
            f"restart: {queued}, left after it: {after}"
        )
        return outcome
    finally:
        procs.stop_all()


def _queue_length(redis_server: PrivateRedis) -> int:
    import redis

    return redis.Redis.from_url(redis_server.url).llen("celery")


def two_beats(drill: Drill, count: int = 30, spread: float = 6.0) -> Outcome:
    from django.utils import timezone

    started = time.monotonic()
    procs = drill.processes("two-beats")
    try:
        ids = drill.reminders(count)
        procs.worker("one", slow=0.05)
        procs.worker("two", slow=0.05)
        procs.beat("beat-a")
        procs.beat("beat-b")
        # They come due one after another while both beats tick.
        now = timezone.now()
        for i, pk in enumerate(ids):
            _due([pk], at=now + timedelta(seconds=spread * i / count))
        wait_for(lambda: _status_of(ids) == Counter({"sent": count}), spread + 60)
        time.sleep(3)  # more ticks from both: nothing may go out again
        counts = reminders_mailed(procs.mail("one"), procs.mail("two"))
        outcome = _reminder_outcome("two-beats", ids, counts, started)
        sent = [
            procs.log_text(b).count("Sending due task dosing-reminders")
            for b in ("beat-a", "beat-b")
        ]
        runs = procs.finished("one") + procs.finished("two")
        outcome.notes.append(
            f"dispatch ticks sent by the two beats: {sent[0]} + {sent[1]}; dispatch runs: {runs}"
        )
        if min(sent) == 0:
            outcome.lost.append("one beat never ticked: the drill did not test two beats")
        return outcome
    finally:
        procs.stop_all()


def beat_stopped(drill: Drill, count: int = 30, minutes: int = 10) -> Outcome:
    from django.utils import timezone

    started = time.monotonic()
    procs = drill.processes("beat-stopped")
    try:
        ids = drill.reminders(count)
        # The beat stopped `minutes` ago; these came due one after another since then.
        now = timezone.now()
        for i, pk in enumerate(ids):
            _due([pk], at=now - timedelta(minutes=minutes) + timedelta(minutes=minutes) * i / count)
        procs.worker("worker", slow=0.02)
        time.sleep(3)  # a worker alone sends nothing: the beat is what says "go and look"
        early = _status_of(ids)
        procs.beat("beat")
        wait_for(lambda: _status_of(ids) == Counter({"sent": count}), 60)
        time.sleep(2)  # more ticks: nothing goes out twice
        counts = reminders_mailed(procs.mail("worker"))
        outcome = _reminder_outcome("beat-stopped", ids, counts, started)
        outcome.notes.append(
            f"{count} reminders due over the {minutes} minutes without a beat; "
            f"sent before it returned: {early.get('sent', 0)}"
        )
        if early.get("sent"):
            outcome.lost.append("reminders went out without a beat: the drill tested nothing")
        return outcome
    finally:
        procs.stop_all()


# --- PostgreSQL restarted under load ----------------------------------------------------------


class Client:
    """One coordinator's browser: logs in through the form, randomizes through the page."""

    def __init__(self, base: str, username: str, password: str):
        import requests

        self.base = base
        self.http = requests.Session()
        page = self.http.get(f"{base}/accounts/login/", timeout=30)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = self.http.post(
            f"{base}/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            timeout=30,
        )
        if 'data-testid="current-user"' not in response.text:
            raise DrillError(f"login as {username} failed: {response.status_code}")

    def randomize(self, study_number: str) -> tuple[int, str]:
        """GET the page (its idempotency key), POST it. The status of the first failure or of
        the POST, with the page's text."""
        url = f"{self.base}/arms/randomize/{study_number}/"
        page = self.http.get(url, timeout=30, allow_redirects=False)
        if page.status_code != 200:
            return page.status_code, page.text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        key = re.search(r'name="idempotency_key" value="([^"]+)"', page.text).group(1)
        response = self.http.post(
            url,
            data={"csrfmiddlewaretoken": token, "idempotency_key": key},
            timeout=30,
            allow_redirects=False,
        )
        return response.status_code, response.text

    def read(self) -> tuple[int, str]:
        response = self.http.get(f"{self.base}/participants/", timeout=30)
        return response.status_code, response.text


RETRY_TEXT = "The database did not answer: it may be restarting."


def postgres_restart(
    drill: Drill, cluster: PrivatePostgres, clients: int = 4, down: float = 5.0
) -> Outcome:
    from django.db import connection

    from arms.models import Allocation
    from dosing.models import ScheduledDose
    from outcomes.models import ScheduledVisit
    from tests.factories import PASSWORD, ready_participant

    started = time.monotonic()
    procs = drill.processes("postgres-restart")
    ready = [
        ready_participant(site=drill.site, user=drill.coordinator, investigator=drill.investigator)
        for _ in range(60)
    ]
    numbers = [p.study_number for p in ready]
    port = free_port()
    procs.env.update(
        DEBUG="0", SECRET_KEY="drill-" + uuid.uuid4().hex * 2, ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0", SESSION_COOKIE_SECURE="0", CSRF_COOKIE_SECURE="0",
        SECURE_HSTS_SECONDS="0", CONN_MAX_AGE="60", FIELD_ENCRYPTION_KEY=DEMO_FIELD_KEY,
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT, env=procs.env, check=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        web = procs.web("web", port)
        sessions = [Client(base, drill.coordinator.username, PASSWORD) for _ in range(clients)]
        results: list[tuple[str, str, int, bool, float]] = []  # who, what, status, clean, when
        todo = list(numbers)
        lock = threading.Lock()
        restarted_at: list[float] = []

        def load(client: Client, who: int) -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    number = todo.pop(0)
                for what in ("randomize", "read"):
                    try:
                        if what == "randomize":
                            status, text = client.randomize(number)
                        else:
                            status, text = client.read()
                    except Exception as exc:  # noqa: BLE001 - a dropped connection is a finding
                        status, text = 0, repr(exc)
                    clean = status in (200, 302) or (status == 503 and RETRY_TEXT in text)
                    with lock:
                        results.append((number, what, status, clean, time.monotonic()))
                    if status != 200 and status != 302:
                        time.sleep(0.5)  # as a person reading "try again in a moment" would

        threads = [threading.Thread(target=load, args=(s, i)) for i, s in enumerate(sessions)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(results) >= 12, 60, 0.05)
        restarted_at.append(time.monotonic())
        cluster.restart(down=down)
        restarted_at.append(time.monotonic())
        for thread in threads:
            thread.join(timeout=300)
        # The failed ones again, as the 503 page asks: the same gunicorn, no restart.
        retried = [n for n, what, status, _, _ in results if what == "randomize" and status != 302]
        again = [sessions[0].randomize(n)[0] for n in retried]
        same_web = web.poll() is None

        connection.close()  # this process's own connection was cut too
        allocated = set(
            Allocation.objects.filter(participant__in=ready).values_list(
                "participant__study_number", flat=True
            )
        )
        succeeded = {
            n for n, what, status, _, _ in results if what == "randomize" and status == 302
        }
        half_written = _half_written(ready, Allocation, ScheduledDose, ScheduledVisit)
        lost = sorted(succeeded - allocated) + sorted(set(numbers) - allocated)
        by_status = Counter(status for _, _, status, _, _ in results)
        unclean = [(n, w, s) for n, w, s, clean, _ in results if not clean]
        failed_at = [t for _, _, status, _, t in results if status not in (200, 302)]
        recovered = [
            t for _, _, status, _, t in results if status in (200, 302) and t > restarted_at[1]
        ]
        outcome = Outcome(
            drill="postgres-restart",
            expected=len(numbers),
            lost=lost
            + [f"half-written: {h}" for h in half_written]
            + [f"unclean: {u}" for u in unclean],
            doubled=_doubled(
                Counter(
                    Allocation.objects.filter(participant__in=ready).values_list(
                        "participant__study_number", flat=True
                    )
                )
            ),
            seconds=time.monotonic() - started,
        )  # fmt: skip
        outcome.notes += [
            f"{len(results)} requests by {clients} clients: {dict(sorted(by_status.items()))} "
            "(0 = connection dropped)",
            f"PostgreSQL stopped (-m fast) and started {down:.0f} s later, back after "
            f"{restarted_at[1] - restarted_at[0]:.1f} s; failures "
            f"from {min(failed_at, default=0) - restarted_at[0]:+.1f} s to "
            f"{max(failed_at, default=0) - restarted_at[0]:+.1f} s of it; first success after it "
            f"{(min(recovered) - restarted_at[1]) if recovered else float('nan'):.1f} s later",
            f"retried after the restart: {len(retried)}, answered {dict(Counter(again))}; "
            f"the same gunicorn throughout: {same_web}",
        ]
        if not same_web:
            outcome.lost.append("gunicorn died")
        return outcome
    finally:
        procs.stop_all()


def _half_written(participants, Allocation, ScheduledDose, ScheduledVisit) -> list[str]:
    """An allocation without its notice, doses or visits, or a schedule without its
    allocation: what a transaction cut in half would leave."""
    problems = []
    doses_by_arm: dict[str, set[int]] = {}
    for participant in participants:
        allocation = (
            Allocation.objects.filter(participant=participant).select_related("arm").first()
        )
        doses = ScheduledDose.objects.filter(participant=participant).count()
        visits = ScheduledVisit.objects.filter(participant=participant).count()
        if allocation is None:
            if doses or visits:
                problems.append(f"{participant.study_number}: schedule without allocation")
            continue
        if not hasattr(allocation, "notice"):
            problems.append(f"{participant.study_number}: allocation without its notice")
        if not visits:
            problems.append(f"{participant.study_number}: allocation without its visits")
        doses_by_arm.setdefault(allocation.arm.code, set()).add(doses)
    problems += [
        f"arm {arm}: allocations with {sorted(counts)} doses"
        for arm, counts in doses_by_arm.items()
        if len(counts) > 1
    ]
    return problems


# --- The command -----------------------------------------------------------------------------

SHORT = {
    "worker-kill": worker_kill,
    "redis-restart": redis_restart,
    "two-beats": two_beats,
    "beat-stopped": beat_stopped,
}
ALL = [*SHORT, "postgres-restart"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("drills", nargs="+", choices=["all", *ALL])
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    chosen = ALL if "all" in args.drills else args.drills

    folder = Path(tempfile.mkdtemp(prefix="drills-"))
    # The postgres user must reach its cluster folder inside it.
    os.chmod(folder, 0o755)  # noqa: S103 - a scratch folder of throw-away data
    cluster = PrivatePostgres(folder / "postgres")
    redis_server = PrivateRedis(folder / "redis")
    print(f"Scratch folder {folder}; machine: {os.cpu_count()} CPUs, load {os.getloadavg()}")
    try:
        cluster.init()
        cluster.createdb("trialsite")
        redis_server.start()
        env = {
            **os.environ,
            "DEBUG": "1",
            "DATABASE_URL": cluster.url(),
            "REDIS_URL": redis_server.url,
            "SITE_URL": "https://ctms.test",
        }
        os.environ.update(DEBUG="1", DATABASE_URL=cluster.url(), REDIS_URL=redis_server.url)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trialsite.settings")
        import django

        django.setup()
        drill = _seed(env, folder, redis_server)
        outcomes = []
        for name in chosen:
            print(f"--- {name}", flush=True)
            if name == "postgres-restart":
                outcome = postgres_restart(drill, cluster)
            else:
                outcome = SHORT[name](drill)
            print(outcome, flush=True)
            outcomes.append(outcome)
        for o in outcomes:
            print(
                f"{o.drill:18} lost {len(o.lost):3}  doubled {len(o.doubled):3}  "
                f"flagged {len(o.flagged):3}  {o.seconds:6.1f} s  {'PASS' if o.ok else 'FAIL'}"
            )
        return 0 if all(o.ok for o in outcomes) else 1
    finally:
        redis_server.kill()
        cluster.stop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def _seed(env: dict, folder: Path, redis_server: PrivateRedis) -> Drill:
    from django.conf import settings
    from django.core.management import call_command

    from tests.factories import SiteFactory, active_randomization_list, user_with_role
    from trialsite.core.models import Role
    from trialsite.core.protocol import definition_from_toml
    from trialsite.core.services import protocol_load

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    protocol_load(definition=definition_from_toml(settings.PROTOCOL_FILE))
    site = SiteFactory(code="SHE", name="Shanghai East Hospital", time_zone="Asia/Shanghai")
    SiteFactory(code="WUH", name="Wuhan Jinyintan Hospital", time_zone="Asia/Shanghai")
    administrator = user_with_role(Role.ADMINISTRATOR, username="drill-admin")
    active_randomization_list(administrator=administrator, per_stratum=200)
    drill = Drill(
        env=env,
        folder=folder / "runs",
        redis=redis_server,
        site=site,
        coordinator=user_with_role(Role.COORDINATOR, site, username="drill-coordinator"),
        investigator=user_with_role(Role.INVESTIGATOR, site, username="drill-investigator"),
    )
    print(f"Migrated and seeded in {time.monotonic() - started:.1f} s", flush=True)
    return drill


if __name__ == "__main__":
    sys.exit(main())
