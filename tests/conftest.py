"""Shared fixtures: the protocol, two sites and the fixed cast, and the real services.

A test that needs PostgreSQL, Redis, Chromium or a Celery worker skips with the reason when
the service is missing, unless TRIAL_REQUIRE_SERVICES names it (as .ci/run does): then the
missing service is a failure, never a silent skip.
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.utils import translation

from tests.factories import SiteFactory, user_with_role
from trialsite.core.models import Role

ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = ROOT / "tests" / "output"
REQUIRED = {s.strip() for s in os.environ.get("TRIAL_REQUIRE_SERVICES", "").split(",") if s}
CLOCK_UTC = os.environ.get("TRIAL_TEST_CLOCK_UTC", "")


def _private_filesystem_broker() -> None:
    """Give this test run its own broker folders (filesystem transport only), so that a
    `make run` worker or another test run on the same checkout never takes its messages.
    Child processes (workers) inherit BROKER_DIR; this process's Celery app is re-pointed
    before anything has published."""
    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        return
    from trialsite.celery import app

    run_dir = Path(tempfile.mkdtemp(prefix="broker-", dir=settings.VAR_DIR))
    os.environ["BROKER_DIR"] = str(run_dir)
    options = {
        **app.conf.broker_transport_options,
        "data_folder_in": str(run_dir / "queue"),
        "data_folder_out": str(run_dir / "queue"),
        "control_folder": str(run_dir / "control"),
    }
    for key in ("data_folder_in", "control_folder"):
        Path(options[key]).mkdir(parents=True, exist_ok=True)
    app.conf.broker_transport_options = options
    atexit.register(shutil.rmtree, run_dir, ignore_errors=True)


_private_filesystem_broker()


def wait_for(predicate, timeout: float = 60.0, every: float = 0.2) -> bool:
    """Poll until `predicate()` is true or the time is up; the last answer is returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())


def worker_command(name: str) -> list[str]:
    """A real Celery worker process, one task at a time, named `name`."""
    return [
        sys.executable, "-m", "celery", "-A", "trialsite", "worker", "--pool=solo",
        "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", f"{name}-{os.getpid()}@%h",
    ]  # fmt: skip


def service_missing(service: str, reason: str):
    if service in REQUIRED or "all" in REQUIRED:
        pytest.fail(f"{service} is required here (TRIAL_REQUIRE_SERVICES) but {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _clock_at_the_set_hour():
    if not CLOCK_UTC:
        yield
        return
    start = datetime.strptime(CLOCK_UTC, "%H:%M").replace(tzinfo=UTC).timetz()
    with time_machine.travel(datetime.combine(datetime.now(UTC).date(), start), tick=True):
        yield


@pytest.fixture(autouse=True)
def _installation_language_after_each_test():
    # A page asked for in Chinese leaves Chinese active in the thread (as any request leaves
    # its language): the next test's messages would be Chinese.
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 at full strength costs a third of a second per user; tests need no strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- The protocol, the sites, the cast ---------------------------------------------------------


@pytest.fixture
def protocol(db):
    from trialsite.core.protocol import definition_from_toml
    from trialsite.core.services import protocol_load

    return protocol_load(definition=definition_from_toml(settings.PROTOCOL_FILE))


@pytest.fixture
def site_a(db):
    return SiteFactory(code="SHE", name="Shanghai East Hospital", time_zone="Asia/Shanghai")


@pytest.fixture
def site_b(db):
    return SiteFactory(code="WUH", name="Wuhan Jinyintan Hospital", time_zone="Asia/Shanghai")


@pytest.fixture
def coordinator_a(site_a):
    return user_with_role(Role.COORDINATOR, site_a, username="alice")


@pytest.fixture
def investigator_a(site_a):
    return user_with_role(Role.INVESTIGATOR, site_a, username="bob")


@pytest.fixture
def coordinator_b(site_b):
    """The outsider: a coordinator at the other site."""
    return user_with_role(Role.COORDINATOR, site_b, username="charlie")


@pytest.fixture
def data_manager(db):
    return user_with_role(Role.DATA_MANAGER, username="dana")


@pytest.fixture
def monitor(db):
    return user_with_role(Role.MONITOR, username="mona")


@pytest.fixture
def administrator(db):
    return user_with_role(Role.ADMINISTRATOR, username="adam")


@pytest.fixture
def cast(coordinator_a, investigator_a, coordinator_b, data_manager, monitor, administrator):
    return {
        "coordinator_a": coordinator_a,
        "investigator_a": investigator_a,
        "coordinator_b": coordinator_b,
        "data_manager": data_manager,
        "monitor": monitor,
        "administrator": administrator,
    }


def totp_device_for(user):
    """The user's authenticator app (a real django-otp TOTP device), made for them if their
    roles or sites need a second factor and they have none; None when they need none."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from trialsite.core.mfa import TOTP_NAME, mfa_required

    device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()
    if device is not None:
        return device
    # A fresh copy: the fixture's user object may carry roles cached before the test changed them.
    if not mfa_required(type(user)._default_manager.get(pk=user.pk)):
        return None
    return TOTPDevice.objects.create(user=user, name=TOTP_NAME, confirmed=True)


def totp_code(device) -> str:
    """The code the user's authenticator app would show now, computed from the device's key as
    the app does (RFC 6238). A code already accepted is refused as a replay, so after a login in
    this same 30-second step, the next step's code is given (the device accepts one step ahead)."""
    from django_otp.oath import hotp

    device.refresh_from_db()
    now_t = (int(time.time()) - device.t0) // device.step + device.drift
    t = max(now_t, device.last_t + 1)
    if t > now_t + device.tolerance:
        raise AssertionError(
            f"{device.user} logged in more than {device.tolerance + 1} times within one "
            "30-second step of a stopped clock: every code of that step is used"
        )
    return f"{hotp(device.bin_key, t, digits=device.digits):0{device.digits}d}"


def verified_login(client, user):
    """Log `user` in on a test client, with the second factor where they need one: Django's
    login, then django-otp's login of their real TOTP device into the session (what
    `django_otp.login(request, device)` writes after a code is accepted)."""
    from django_otp import DEVICE_ID_SESSION_KEY

    client.force_login(user)
    device = totp_device_for(user)
    if device is not None:
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
    return client


@pytest.fixture
def client_for(client):
    def login(user):
        return verified_login(client, user)

    return login


# --- Real services ----------------------------------------------------------------------------


@pytest.fixture
def postgres(db):
    if connection.vendor != "postgresql":
        service_missing("postgres", "the database is not PostgreSQL (set DATABASE_URL)")


@pytest.fixture
def redis_broker():
    if not settings.REDIS_URL:
        service_missing("redis", "REDIS_URL is not set")
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        service_missing("redis", f"Redis at REDIS_URL does not answer ({exc})")


@pytest.fixture
def dead_broker(monkeypatch):
    """The Celery app pointed at a broker that refuses connections (nothing listens on port
    1), then back. The app's cached producer pool is dropped both ways, or the dead address
    would outlive the test."""
    from trialsite.celery import app

    def drop_pools():
        # Dropped, not closed: kombu's global producer pools may still hold the old ones.
        app._pool = None
        app.amqp._producer_pool = None

    drop_pools()
    monkeypatch.setitem(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    monkeypatch.setitem(app.conf, "broker_connection_max_retries", 0)
    yield
    drop_pools()
    monkeypatch.undo()


def _database_url_for_children() -> str:
    """The URL of the database this test runs on (the test database), for a child process."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def child_env(transactional_db):
    """Environment for a child process (worker, server) that shares this test's database."""
    env = dict(os.environ)
    env.update(DEBUG="1", DATABASE_URL=_database_url_for_children())
    return env


@pytest.fixture
def celery_worker_process(child_env, tmp_path):
    """A real Celery worker in its own process, on the configured broker."""
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        worker_command("test"), cwd=ROOT, env=child_env, stdout=log, stderr=subprocess.STDOUT
    )
    time.sleep(0.5)
    if proc.poll() is not None:
        log.close()
        service_missing("worker", (tmp_path / "worker.log").read_text()[-2000:])
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


# --- The browser --------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def chromium():
    # Module scope, not session: Playwright's event loop lives while the browser does, and
    # Django's async views (healthz) refuse to run in a thread with a running loop.
    if not Path(CHROMIUM).exists():
        service_missing("browser", f"Debian's Chromium is not installed at {CHROMIUM}")
    # Playwright's sync API runs an event loop in this thread; the ORM calls that the test
    # makes between page actions are still plain synchronous calls.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, live_server, request):
    """A fresh browser page on the live server; its screenshot is kept in tests/output."""
    context = chromium.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    shots = OUTPUT_DIR / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"{request.node.name}-final.png"), full_page=True)
    context.close()


def log_in(page, user, password: str = "") -> None:
    """Through the real login form, as a person would, and for a user who needs a second
    factor, the code their authenticator app shows (computed from the device's key)."""
    from tests.factories import PASSWORD

    device = totp_device_for(user)
    page.goto("/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", password or PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("[data-testid=current-user]")
    if device is not None:
        second_factor(page, device)


def second_factor(page, device) -> None:
    """On the page that asks for the second factor: enter the app's current code."""
    page.wait_for_selector("[data-testid=mfa-verify]")
    page.fill("#id_code", totp_code(device))
    page.locator("[data-testid=mfa-verify] button[type=submit]").click()
    page.wait_for_url(lambda url: "/accounts/mfa/" not in url)


def screenshot(page, name: str) -> Path:
    path = OUTPUT_DIR / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
