"""The simulated users of the load test (bench/load.py runs them): coordinators who register,
screen (eligible or not) and consent patients, and investigators who sign off (their password
typed again), randomize, record the first dose and read the roster and the worklist.

Each user works as a browser does: it GETs the page, reads the form from the HTML (its hidden
fields, the CSRF token among them, and the defaults the page fills in), changes what a person
would type and POSTs it back with the cookies the server set. Every POST is timed on its own
(redirects not followed); the page the browser is sent to next is a step of its own.

Login takes a second factor when the server asks for one: if the page after the password has
a one-time-code field, the user types the code of its authenticator app, computed here from
the device's key by RFC 6238 (`totp`), as a phone would.
"""

from __future__ import annotations

import datetime
import os
import random
import re
import uuid
from collections import defaultdict, deque
from pathlib import Path
from zoneinfo import ZoneInfo

import gevent
from gevent.event import Event
from gevent.lock import BoundedSemaphore
from locust import FastHttpUser, task
from locust.exception import StopUser

from bench.load_forms import errors_in, fill, form_with, screening_answers, totp

# Set by bench/load.py before the users start.
CONFIG: dict = {}
# Study numbers waiting for an investigator's sign-off, by site code (the coordinator has
# screened them eligible and recorded consent).
AWAITING_SIGNOFF: dict[str, deque] = defaultdict(deque)
# Everyone logged in: the measured work starts together, after the login burst.
ALL_LOGGED_IN = Event()
LOGINS_AT_ONCE = BoundedSemaphore(2)  # set to the server's workers by `prepare`
_logged_in = [0]
_accounts: dict[str, deque] = {}

OTP_FIELDS = ("otp_token", "token", "code", "otp")
STUDY_NUMBER = re.compile(r"/participants/([A-Z]{2,10}-\d+)/$")
DOSE_RECORD = re.compile(r"/dosing/doses/(\d+)/record/")


# --- The users -----------------------------------------------------------------------------------


class TrialUser(FastHttpUser):
    abstract = True
    role = ""
    # Pauses come from `think` between steps, as a person reads and types.
    wait_time = staticmethod(lambda: 0)

    def on_start(self):
        self.account = _accounts[self.role].popleft()
        self.site = self.account["site"]
        self.zone = ZoneInfo(self.account["time_zone"])
        try:
            # A few at a time, as a ward's staff arrive: each login hashes the password
            # (PBKDF2, most of a second of CPU), and sixty at once would hold every worker.
            with LOGINS_AT_ONCE:
                self.log_in()
        except RuntimeError as exc:
            CONFIG.setdefault("login_failures", []).append(str(exc))
            raise StopUser() from exc
        finally:
            _logged_in[0] += 1
            if _logged_in[0] >= CONFIG["total_users"]:
                ALL_LOGGED_IN.set()
        ALL_LOGGED_IN.wait()

    # Helpers ------------------------------------------------------------------------------------

    def think(self):
        low, high = CONFIG["think"]
        if high > 0:
            gevent.sleep(random.uniform(low, high))  # noqa: S311 - pacing, not security

    def page(self, url: str, name: str) -> str | None:
        with self.client.get(url, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}")
                return None
            return response.text

    def submit(self, url: str, step: str, form: dict, expect: str = "", **typed) -> str | None:
        """POST the form as the browser would; the redirect's target, or None (a failure)."""
        data = fill(form, **typed)
        action = form["action"] or url
        headers = {"Referer": self.host + url, "Origin": self.host}
        with self.client.post(
            action,
            data=data,
            name=step,
            headers=headers,
            allow_redirects=False,
            catch_response=True,
        ) as response:
            # No answer at all (status 0: refused or timed out) has no headers.
            location = (response.headers or {}).get("Location", "")
            if response.status_code == 302 and expect in location:
                return location
            detail = location or errors_in(response.text or "")
            if dump := os.environ.get("LOAD_DUMP_DIR"):  # the page as refused, to read
                (Path(dump) / f"{step.replace(' ', '_').replace(':', '')}.html").write_text(
                    response.text or ""
                )
            response.failure(f"{response.status_code}: {detail}")
            return None

    def get_form(self, url: str, name: str, field: str) -> dict | None:
        html = self.page(url, name)
        if html is None:
            return None
        form = form_with(html, field)
        if form is None:
            self.environment.events.request.fire(
                request_type="GET",
                name=name,
                response_time=0,
                response_length=0,
                exception=RuntimeError(f"no form with {field} on {url}"),
                context={},
            )
        return form

    def log_in(self):
        form = self.get_form("/accounts/login/", "login: form", "password")
        if form is None:
            raise RuntimeError("no login form")
        location = self.submit(
            "/accounts/login/",
            "login: POST password",
            form,
            username=self.account["username"],
            password=CONFIG["password"],
        )
        if location is None:
            raise RuntimeError(f"{self.account['username']} could not log in")
        html, url = self.follow(location, "login: next page")
        if html is None:
            raise RuntimeError(f"{self.account['username']}: no page after the password")
        form = code_field = None
        for code_field in OTP_FIELDS:
            form = form_with(html or "", code_field)
            if form is not None:
                break
        if form is None:
            return
        # The second factor: the authenticator app's current code.
        device = self.account.get("totp")
        if not device:
            raise RuntimeError(f"{self.account['username']} is asked for a code but has no device")
        code = totp(device["key"], step=device["step"], t0=device["t0"], digits=device["digits"])
        if self.submit(url, "login: POST one-time code", form, **{code_field: code}) is None:
            raise RuntimeError(f"{self.account['username']}: the one-time code was refused")

    def follow(self, url: str, name: str) -> tuple[str | None, str]:
        """GET `url` and the redirects after it, as a browser does: the last page and its URL
        (the second-factor page's form posts back to its own address)."""
        for _hop in range(5):
            with self.client.get(
                url, name=name, allow_redirects=False, catch_response=True
            ) as response:
                if response.status_code in (301, 302, 303) and response.headers:
                    url = response.headers["Location"]
                    continue
                if response.status_code != 200:
                    response.failure(f"{response.status_code}")
                    return None, url
                return response.text, url
        return None, url

    def floor(self):
        self.page("/bench/floor/", "floor: bare logged-in page")

    def site_now(self) -> datetime.datetime:
        return datetime.datetime.now(self.zone)


class Coordinator(TrialUser):
    role = "coordinator"

    @task
    def enroll_one_patient(self):
        self.floor()
        self.think()
        form = self.get_form("/participants/register/", "register: form", "mrn")
        if form is None:
            return
        self.think()
        eligible = random.random() < CONFIG["eligible_share"]  # noqa: S311
        location = self.submit(
            "/participants/register/",
            "register: POST",
            form,
            name=f"Loadtest Patient {uuid.uuid4().hex[:8]}",
            mrn=f"LT{uuid.uuid4().hex[:12].upper()}",
            sex=random.choice("FM"),  # noqa: S311
            date_of_birth="1968-04-12",
        )
        match = STUDY_NUMBER.search(location or "")
        if not match:
            return
        number = match.group(1)
        detail = f"/participants/{number}/"
        self.page(detail, "participant page")
        self.think()

        url = f"{detail}screen/"
        form = self.get_form(url, "screen: form", "screening_date")
        if form is None:
            return
        answers = screening_answers(
            form,
            today=self.site_now().date(),
            eligible=eligible,
            severity=random.choice(("severe", "critical")),  # noqa: S311 - two strata a site
        )
        self.think()
        name = "screen: POST, eligible" if eligible else "screen: POST, not eligible"
        if self.submit(url, name, form, expect=detail, **answers) is None:
            return
        self.page(detail, "participant page")
        if not eligible:
            return
        self.think()

        url = f"{detail}consent/"
        form = self.get_form(url, "consent: form", "consented_at")
        if form is None:
            return
        consented = self.site_now() - datetime.timedelta(minutes=20)
        # The version the patient read: the first one offered (the list starts with a blank).
        version = next((v for v in form["options"]["version"] if v), None)
        self.think()
        location = self.submit(
            url,
            "consent: POST",
            form,
            expect=detail,
            version=version,
            consented_at=consented.strftime("%Y-%m-%dT%H:%M"),
            signer="participant",
            copy_given="on",
        )
        if location is None:
            return
        self.page(detail, "participant page")
        # The screening asked for the sign-off (its notice went to the site's investigators
        # through the worker); an investigator of the site picks the patient up.
        AWAITING_SIGNOFF[self.site].append(number)


class Investigator(TrialUser):
    role = "investigator"

    @task
    def work(self):
        self.floor()
        # Between the pages they read, the sign-offs their coordinators asked for come first.
        for url, name in (
            ("/arms/roster/", "roster: all arms"),
            ("/dosing/today/", "dosing worklist"),
        ):
            queue = AWAITING_SIGNOFF[self.site]
            if queue:
                self.sign_randomize_and_dose(queue.popleft())
            self.think()
            self.page(url, name)
        self.think()

    def sign_randomize_and_dose(self, number: str):
        detail = f"/participants/{number}/"
        url = f"{detail}sign-off/"
        form = self.get_form(url, "sign-off: form", "password")
        if form is None:
            return
        self.think()
        if (
            self.submit(
                url, "sign-off: POST (password)", form, expect=detail, password=CONFIG["password"]
            )
            is None
        ):
            return
        self.page(detail, "participant page")
        self.think()

        url = f"/arms/randomize/{number}/"
        form = self.get_form(url, "randomize: form", "idempotency_key")
        if form is None:
            return
        self.think()
        allocation = self.submit(url, "randomize: POST", form, expect=f"/allocations/{number}/")
        if allocation is None:
            return
        self.page(allocation, "allocation page")
        self.think()

        html = self.page(f"/dosing/participants/{number}/", "dosing timeline")
        doses = DOSE_RECORD.findall(html or "")
        if not doses:
            return  # standard care: no study dose
        url = f"/dosing/doses/{doses[0]}/record/"
        form = self.get_form(url, "dose: form", "outcome")
        if form is None:
            return
        self.think()
        # Recorded at once: a just-randomized patient's first dose is due from the next
        # morning, so "now" is outside its window and is confirmed with a reason (a deviation).
        self.submit(
            url,
            "dose: POST",
            form,
            outcome="given",
            lot_number="LT-001",
            confirm_outside_window="on",
            outside_window_reason="Given on the ward's instruction (load test).",
        )


def prepare(config: dict) -> None:
    """Hand the seeded accounts and the run's settings to the users (before they start)."""
    CONFIG.clear()
    CONFIG.update(config)
    _accounts.clear()
    for role in ("coordinator", "investigator"):
        _accounts[role] = deque(a for a in config["accounts"] if a["role"] == role)
    Coordinator.fixed_count = len(_accounts["coordinator"])
    Investigator.fixed_count = len(_accounts["investigator"])
    CONFIG["total_users"] = Coordinator.fixed_count + Investigator.fixed_count
    AWAITING_SIGNOFF.clear()
    for site, numbers in config.get("awaiting", {}).items():
        AWAITING_SIGNOFF[site].extend(numbers)
    global LOGINS_AT_ONCE
    LOGINS_AT_ONCE = BoundedSemaphore(config.get("logins_at_once", 2))
