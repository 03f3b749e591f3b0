"""A reminder links to the site where the staff reach the trial: SITE_URL, never a literal,
and `make run` sets it to the port it serves."""

import shutil
import subprocess

import pytest
import time_machine
from django.core import mail

from dosing.services import reminder_link, reminders_dispatch
from tests.conftest import ROOT
from tests.dosing.conftest import randomize, site_time

pytestmark = pytest.mark.django_db


def test_a_reminder_links_to_site_url_whatever_host_and_port(
    settings, participant_a, site_a, coordinator_a
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = "https://ctms.east-hospital.test:8443/"
    randomized = site_time(site_a, 2026, 3, 10, 8, 0)
    with time_machine.travel(randomized, tick=False):
        day1, _ = randomize(participant_a, "MSC", at=randomized, user=coordinator_a)
    with time_machine.travel(site_time(site_a, 2026, 3, 10, 9, 0, 30), tick=False):
        assert reminders_dispatch(worker="test").sent == 1  # the 24 h reminder of day 1
    link = f"https://ctms.east-hospital.test:8443/dosing/doses/{day1.pk}/record/"
    assert f"Record it here: {link}" in mail.outbox[0].body
    assert "127.0.0.1" not in mail.outbox[0].body
    assert reminder_link(day1.reminders.first()) == link


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"PORT": "9001"}, "SITE_URL='http://127.0.0.1:9001'"),
        ({}, "SITE_URL='http://127.0.0.1:8000'"),
        ({"PORT": "9001", "SITE_URL": "https://ctms.test"}, "SITE_URL='https://ctms.test'"),
    ],
)
def test_make_run_gives_the_demo_the_site_url_of_its_own_port(variables, expected):
    arguments = [f"{name}={value}" for name, value in variables.items()]
    dry_run = subprocess.run(  # noqa: S603 - fixed arguments
        ["make", "--dry-run", "--always-make", "run", *arguments],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    rundemo = next(line for line in dry_run.stdout.splitlines() if "rundemo" in line)
    assert expected in rundemo
