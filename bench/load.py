"""Load test: simulated coordinators and investigators on gunicorn + PostgreSQL + Redis + a
Celery worker, each step's p50/p95/p99 and errors against a bare logged-in page (the floor)
measured in the same run.

    .venv/bin/pip install -e '.[bench]'        # locust, once
    .venv/bin/python bench/load.py --users 50 --investigators 10 --time 60s

Everything runs on this machine, on loopback only, and is torn down at the end: a throw-away
PostgreSQL database (`--database-name` on the server of `--database-url`, dropped and made
anew), migrated, the protocol loaded, 5 sites with the coordinators and investigators spread
over them, a consent version, an active randomization list and, at each site, `--backlog`
patients screened eligible and consented who await the sign-off; a Redis database
(`--redis-url`, emptied before and after); gunicorn (`--workers`, default 2 x cores + 1) with
production settings (DEBUG off) on a free port, one Celery worker and one beat (the worker
sends the allocation notices at once and the sign-off notices when the beat sweeps). Then
every simulated user logs in, a few at a time (investigators type their authenticator app's
code when the server asks for one), and, once all are in, they work for `--time`:

- coordinators: register a patient, screen (about 70% eligible, the rest with a BMI of 31),
  record consent for the eligible ones, which asks the site's investigators for the sign-off;
- investigators: sign off (the password typed again), randomize, record the first dose of the
  allocated arm (confirmed as outside its window: it is due the next morning), and between
  sign-offs read the roster and the dosing worklist;
- everyone, once per round: the floor, a page behind every middleware that does nothing else.

Each user pauses `--think` seconds (a random time in the range) between steps, as a person
reading and typing; `--think 0` makes them as fast as the server lets them (saturation).
The load average before and after, and the CPU each part used, are printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SITES = [
    ("LDA", "Asia/Shanghai"),
    ("LDB", "Asia/Shanghai"),
    ("LDC", "Asia/Shanghai"),
    ("LDD", "Asia/Shanghai"),
    ("LDE", "Asia/Shanghai"),
]
GOAL_STEP_PREFIX = "screen: POST"
GOAL_P95_MS = 150


def _seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip().lower()
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def _think(text: str) -> tuple[float, float]:
    low, _sep, high = text.partition("-")
    return float(low), float(high or low)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


# --- Preparing the database (a child process: Django never runs beside locust's gevent) ---------


def prepare_database(out: Path, coordinators: int, investigators: int, backlog: int) -> None:
    """Migrate, load the protocol, collect the static files and seed; the accounts to `out`."""
    import django

    django.setup()
    from django.apps import apps
    from django.conf import settings
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)

    import datetime

    from enrollment.models import ConsentVersion
    from enrollment.services import consent_version_create
    from tests.factories import PASSWORD, SiteFactory, active_randomization_list, user_with_role
    from trialsite.core.models import Role
    from trialsite.core.protocol import definition_from_toml
    from trialsite.core.services import protocol_load

    protocol_load(definition=definition_from_toml(settings.PROTOCOL_FILE))
    sites = [SiteFactory(code=code, time_zone=zone) for code, zone in SITES]
    administrator = user_with_role(Role.ADMINISTRATOR, username="load-admin")
    for language in ("en", "zh-hans"):
        consent_version_create(
            user=administrator,
            version="1.0",
            language=language,
            irb_approval_date=datetime.date(2026, 1, 5),
            effective_date=datetime.date(2026, 1, 15),
        )
    # Enough entries that no stratum runs out in a run (2 severities per site).
    active_randomization_list(administrator=administrator, per_stratum=600)

    # One password hash for all (PBKDF2 takes a good part of a second each on this machine):
    # the logins and the sign-off still check it each time, as in real use.
    password_hash = make_password(PASSWORD)
    accounts = []
    for role, count in ((Role.COORDINATOR, coordinators), (Role.INVESTIGATOR, investigators)):
        for i in range(count):
            site = sites[i % len(sites)]
            # password=None: no hash made here; the shared one is saved below.
            user = user_with_role(role, site, username=f"load-{role}-{i:03d}", password=None)
            user.password = password_hash
            user.save(update_fields=["password"])
            accounts.append(
                {
                    "username": user.username,
                    "pk": user.pk,
                    "role": str(role),
                    "site": site.code,
                    "time_zone": site.time_zone,
                }
            )

    # The morning's backlog: at each site, patients screened eligible and consented who
    # wait for an investigator's sign-off, so that the investigators' steps (sign-off,
    # randomize, dose) are measured from the first minute, not only once the coordinators'
    # first patients reach them.
    from django.utils import timezone

    from enrollment import services as enrollment
    from tests.enrollment.conftest import eligible_answers

    version = ConsentVersion.objects.get(language="en")
    awaiting: dict[str, list[str]] = {}
    coordinator_of = {a["site"]: a["pk"] for a in accounts if a["role"] == Role.COORDINATOR}
    for site in sites:
        if site.code not in coordinator_of:
            continue  # fewer coordinators than sites
        user = User.objects.get(pk=coordinator_of[site.code])
        for i in range(backlog):
            participant = enrollment.participant_register(
                site=site,
                user=user,
                name=f"Backlog Patient {i}",
                mrn=f"BL{site.code}{i:05d}",
                sex="F",
                date_of_birth=datetime.date(1968, 4, 12),
            )
            answers = eligible_answers(site, severity=("severe", "critical")[i % 2])
            if i % 2:
                answers["mechanical_ventilation"] = True  # critical needs it (I2)
            enrollment.participant_screen(participant=participant, user=user, answers=answers)
            enrollment.consent_record(
                participant=participant,
                user=user,
                version=version,
                consented_at=timezone.now() - datetime.timedelta(hours=1),
                signer="participant",
                copy_given=True,
            )
            awaiting.setdefault(site.code, []).append(participant.study_number)

    # An authenticator app for each investigator (their role needs a second factor): they
    # type its code when the login asks for one. Coordinators log in with the password alone,
    # as at a site that does not ask them for a second factor.
    if apps.is_installed("django_otp.plugins.otp_totp"):
        from django_otp.plugins.otp_totp.models import TOTPDevice

        for account in accounts:
            if account["role"] != Role.INVESTIGATOR:
                continue
            device = TOTPDevice.objects.create(
                user_id=account["pk"], name="Authenticator app", confirmed=True
            )
            account["totp"] = {
                "key": device.key,
                "step": device.step,
                "t0": device.t0,
                "digits": device.digits,
            }
    out.write_text(json.dumps({"password": PASSWORD, "accounts": accounts, "awaiting": awaiting}))


# --- The run -------------------------------------------------------------------------------------


class Services:
    """The database, Redis, gunicorn and the worker of one run; `close` undoes them all."""

    def __init__(self, args, scratch: Path):
        self.args = args
        self.scratch = scratch
        self.processes: dict[str, subprocess.Popen] = {}
        self.database_url = _with_database(args.database_url, args.database_name)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        from cryptography.fernet import Fernet

        self.env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="bench.load_settings",
            DEBUG="0",
            SECRET_KEY=secrets.token_urlsafe(50),
            FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
            ALLOWED_HOSTS="127.0.0.1",
            SITE_URL=self.url,
            DATABASE_URL=self.database_url,
            CONN_MAX_AGE="60",  # as docker-compose.yml
            REDIS_URL=args.redis_url,
            # Plain HTTP on loopback: no TLS proxy in front, so no HTTPS redirect or secure
            # cookies (a browser would not send them back over HTTP either).
            SECURE_SSL_REDIRECT="0",
            SECURE_HSTS_SECONDS="0",
            SESSION_COOKIE_SECURE="0",
            CSRF_COOKIE_SECURE="0",
            EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
            EMAIL_FILE_PATH=str(scratch / "mail"),
            MEDIA_ROOT=str(scratch / "media"),
            EXPORT_ROOT=str(scratch / "exports"),
            BROKER_DIR=str(scratch / "broker"),
            LOAD_STATIC_ROOT=str(scratch / "static"),
            LOG_LEVEL="WARNING",
            PYTHONPATH=str(ROOT),
        )

    def _admin_sql(self, sql: str) -> None:
        import psycopg2

        connection = psycopg2.connect(_with_database(self.args.database_url, "postgres"))
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
        finally:
            connection.close()

    def _redis_flush(self) -> None:
        import redis

        redis.Redis.from_url(self.args.redis_url).flushdb()  # this run's own db number only

    def open(self) -> dict:
        name = self.args.database_name
        self._admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._admin_sql(f'CREATE DATABASE "{name}"')
        self._redis_flush()
        accounts_file = self.scratch / "accounts.json"
        started = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--prepare-into",
                str(accounts_file),
                "--users",
                str(self.args.users),
                "--investigators",
                str(self.args.investigators),
                "--backlog",
                str(self.args.backlog),
            ],
            env=self.env,
            cwd=ROOT,
            check=True,
        )
        print(f"database {name} migrated and seeded in {time.monotonic() - started:.0f} s")
        log = open(self.scratch / "gunicorn.log", "w")  # noqa: SIM115 - closed with the run
        self.processes["gunicorn"] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "trialsite.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.args.workers),
                "--chdir",
                str(ROOT),
            ],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log = open(self.scratch / "worker.log", "w")  # noqa: SIM115 - closed with the run
        self.processes["worker"] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "trialsite",
                "worker",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"load-{os.getpid()}@%h",
            ],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log = open(self.scratch / "beat.log", "w")  # noqa: SIM115 - closed with the run
        # Exactly one beat, as in docker-compose.yml: it sweeps the notice rows every minute.
        self.processes["beat"] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "trialsite",
                "beat",
                "--loglevel=WARNING",
                "--schedule",
                str(self.scratch / "celerybeat-schedule"),
            ],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._wait_for_server()
        return json.loads(accounts_file.read_text())

    def _wait_for_server(self, timeout: float = 60) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes["gunicorn"].poll() is not None:
                raise SystemExit("gunicorn stopped:\n" + self.tail("gunicorn"))
            try:
                with urllib.request.urlopen(f"{self.url}/accounts/login/", timeout=5) as r:  # noqa: S310 - loopback
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise SystemExit("gunicorn did not answer:\n" + self.tail("gunicorn"))

    def tail(self, name: str) -> str:
        path = self.scratch / f"{name}.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def notices(self) -> dict[str, str]:
        """What the worker sent of the notices the run made: the sign-off notices (sent by
        the beat's sweep, every minute) and the allocation notices (sent on commit)."""
        import psycopg2

        found = {}
        connection = psycopg2.connect(self.database_url)
        connection.autocommit = True
        try:
            for label, table in (
                ("sign-off notices", "enrollment_signoffnotice"),
                ("allocation notices", "arms_allocationnotice"),
            ):
                try:
                    with connection.cursor() as cursor:
                        cursor.execute(
                            f"SELECT status, count(*) FROM {table} GROUP BY status"  # noqa: S608 - our own table names
                        )
                        rows = cursor.fetchall()
                    found[label] = ", ".join(f"{n} {s}" for s, n in rows) or "none"
                except psycopg2.Error as exc:
                    found[label] = f"not read ({exc.pgerror or exc})"
        finally:
            connection.close()
        return found

    def close(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    print(f"{name} did not stop in 20 s: killed")
                    process.kill()
                    process.wait()
        try:
            self._admin_sql(f'DROP DATABASE IF EXISTS "{self.args.database_name}" WITH (FORCE)')
            self._redis_flush()
        except Exception as exc:  # noqa: BLE001 - reported, the rest of the teardown goes on
            print(f"teardown: {exc}")


class CpuMeter:
    """CPU time used by each part during the measured window, in cores (1.00 = one core)."""

    def __init__(self, services: Services):
        import psutil

        self.psutil = psutil
        self.services = services

    def _groups(self) -> dict[str, float]:
        psutil = self.psutil
        totals: dict[str, float] = {}

        def add(name, process):
            try:
                t = process.cpu_times()
                totals[name] = totals.get(name, 0.0) + t.user + t.system
            except psutil.Error:
                pass

        for name, popen in self.services.processes.items():
            try:
                parent = psutil.Process(popen.pid)
            except psutil.Error:
                continue
            add(name, parent)
            for child in parent.children(recursive=True):
                add(name, child)
        add("locust (this process)", psutil.Process())
        for process in psutil.process_iter(["name"]):
            if process.info["name"] in ("postgres", "postmaster"):
                add("postgres (all databases)", process)
            elif process.info["name"] == "redis-server":
                add("redis", process)
        cpu = psutil.cpu_times()
        totals["machine"] = (
            cpu.user + cpu.system + cpu.nice + getattr(cpu, "irq", 0) + getattr(cpu, "softirq", 0)
        )
        return totals

    def start(self):
        self.begin, self.t0 = self._groups(), time.monotonic()

    def stop(self) -> dict[str, float]:
        end, elapsed = self._groups(), time.monotonic() - self.t0
        return {k: (end[k] - self.begin.get(k, 0.0)) / elapsed for k in end}


def run_load(args) -> int:
    # locust first: it patches the standard library for gevent before anything uses it.
    try:
        import gevent
        from locust.env import Environment
    except ImportError:
        raise SystemExit(
            "locust is not installed: pip install -e '.[bench]' (the bench extra), then again."
        ) from None
    from bench import load_users

    duration = _seconds(args.time)
    print(f"load average before: {_load_average()} ({os.cpu_count()} cores)")
    scratch = Path(tempfile.mkdtemp(prefix="bench-load-"))
    services = Services(args, scratch)
    try:
        seeded = services.open()
        load_users.prepare(
            {
                "accounts": seeded["accounts"],
                "password": seeded["password"],
                "think": _think(args.think),
                "eligible_share": 0.7,
                "logins_at_once": args.workers,
                "awaiting": seeded["awaiting"],
            }
        )
        total = load_users.CONFIG["total_users"]
        print(
            f"gunicorn {args.workers} workers at {services.url}, one Celery worker on "
            f"{args.redis_url}; {args.users} coordinators and {args.investigators} "
            f"investigators at {len(SITES)} sites, think {args.think} s"
        )
        environment = Environment(
            user_classes=[load_users.Coordinator, load_users.Investigator], host=services.url
        )
        runner = environment.create_local_runner()
        crashes: dict[str, int] = {}

        def count_crash(user_instance, exception, tb):
            key = f"{type(user_instance).__name__}: {exception!r}"[:200]
            crashes[key] = crashes.get(key, 0) + 1

        environment.events.user_error.add_listener(count_crash)
        started = time.monotonic()
        runner.start(total, spawn_rate=total)
        if not load_users.ALL_LOGGED_IN.wait(timeout=180):
            raise SystemExit("the users were not all logged in after 180 s")
        print(f"all {total} users logged in after {time.monotonic() - started:.1f} s")
        failures = load_users.CONFIG.get("login_failures", [])
        if failures:
            print(f"LOGIN FAILED for {len(failures)}: {failures[0]}")
        meter = CpuMeter(services)
        meter.start()
        window_start = time.monotonic()
        # The login burst is over: the measured window starts with every step's counts at 0
        # (the login steps keep theirs).
        for entry in environment.stats.entries.values():
            if not entry.name.startswith("login"):
                entry.reset()
        gevent.sleep(duration)
        runner.quit()
        window = time.monotonic() - window_start
        cpu = meter.stop()
        time.sleep(3)  # the last notices reach the worker
        notices = services.notices()
        return report(environment.stats, window, cpu, notices, crashes)
    finally:
        services.close()
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"load average after: {_load_average()}")


def report(stats, window: float, cpu: dict[str, float], notices: dict, crashes: dict) -> int:
    floor = next(e for e in stats.entries.values() if e.name.startswith("floor"))

    def ms(entry, q):
        return entry.get_response_time_percentile(q) if entry.num_requests else 0

    f50, f95, f99 = (ms(floor, q) for q in (0.5, 0.95, 0.99))
    print(
        f"\n{window:.0f} s measured; {stats.total.num_requests} requests, "
        f"{stats.total.num_requests / window:.1f}/s; times in ms (locust rounds those over "
        "100 ms to 2 significant digits)\n"
    )
    columns = ("n", "errors", "p50", "p95", "p99")
    header = f"{'step':32} " + " ".join(f"{c:>6}" for c in columns) + " p50/floor p95/floor"
    print(header)
    print("-" * len(header))
    order = sorted(
        stats.entries.values(),
        key=lambda e: (not e.name.startswith("floor"), not e.name.startswith("login"), e.name),
    )
    goal_steps = [e for e in stats.entries.values() if e.name.startswith(GOAL_STEP_PREFIX)]
    goal_met = bool(goal_steps)
    for e in order:
        p50, p95, p99 = (ms(e, q) for q in (0.5, 0.95, 0.99))
        print(
            f"{e.name:32} {e.num_requests:6} {e.num_failures:6} {p50:6.0f} {p95:6.0f} {p99:6.0f}"
            f" {p50 / f50 if f50 else 0:9.1f} {p95 / f95 if f95 else 0:9.1f}"
        )
        if e.name.startswith(GOAL_STEP_PREFIX) and (p95 > GOAL_P95_MS or e.num_failures):
            goal_met = False
    print(f"{'all steps':32} {stats.total.num_requests:6} {stats.total.num_failures:6}")
    if stats.errors:
        print("\nerrors:")
        for error in sorted(stats.errors.values(), key=lambda e: -e.occurrences)[:15]:
            print(f"  {error.occurrences:5} x {error.name}: {str(error.error)[:200]}")
    for crash, count in crashes.items():
        print(f"  {count:5} x a user's step crashed: {crash}")
    print(f"\nfloor (bare logged-in page): p50 {f50:.0f} ms, p95 {f95:.0f} ms, p99 {f99:.0f} ms")
    requests = stats.total.num_requests or 1
    for part in ("gunicorn", "postgres (all databases)"):
        print(f"{part} CPU per request: {1000 * cpu.get(part, 0.0) * window / requests:.1f} ms")
    print(f"CPU used in the window, in cores ({os.cpu_count()} = the whole machine):")
    for name, cores in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"  {name:28} {max(cores, 0.0):5.2f}")
    for name, value in notices.items():
        print(f"{name}: {value}")
    errors = stats.total.num_failures + sum(crashes.values())
    print(
        f"\ngoal: screening POST p95 <= {GOAL_P95_MS} ms and no error: "
        f"{'MET' if goal_met and not errors else 'NOT MET'}"
        f" ({errors} errors in all steps)"
    )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50, help="coordinators (default 50)")
    parser.add_argument("--investigators", type=int, default=10)
    parser.add_argument("--time", default="60s", help="the measured window, e.g. 60s, 2m")
    parser.add_argument("--think", default="1-3", help="pause between steps, s: '1-3' or '0'")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="the PostgreSQL server (its database name is replaced by --database-name)",
    )
    parser.add_argument("--database-name", default="load", help="dropped and re-made")
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/10",
        help="a Redis database of its own: emptied before and after",
    )
    parser.add_argument(
        "--backlog", type=int, default=4, help="patients awaiting sign-off at each site at start"
    )
    parser.add_argument("--prepare-into", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare_into:
        prepare_database(args.prepare_into, args.users, args.investigators, args.backlog)
        return
    for url in (args.database_url, args.redis_url):
        host = urlsplit(url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"{url}: the load test runs on loopback only")
    sys.exit(run_load(args))


if __name__ == "__main__":
    main()
