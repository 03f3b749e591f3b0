"""The load test's browser and phone (bench/load_forms.py): the one-time code is the one
django-otp accepts, and a form read from the real page, filled as the simulated coordinator
fills it, is accepted with CSRF checked and gives the decision it aims at."""

import datetime

import pytest
from django.urls import reverse
from django_otp.oath import TOTP

from bench.load_forms import fill, form_with, screening_answers, totp
from enrollment.models import Decision, Screening
from tests.factories import ParticipantFactory
from trialsite.core.clock import site_today

RFC_6238_KEY = b"12345678901234567890".hex()


@pytest.mark.parametrize(
    ("at", "code"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
    ],
)
def test_the_code_is_rfc_6238s(at, code):
    assert totp(RFC_6238_KEY, at=at, digits=8) == code


def test_the_code_is_the_one_django_otp_expects():
    key = "3132333435363738393031323334353637383930aabbccdd"
    for at in (0, 29, 30, 1_764_000_000, 1_764_000_017):
        expected = TOTP(bytes.fromhex(key), step=30, t0=0, digits=6, drift=0)
        expected.time = at
        assert totp(key, at=at) == f"{expected.token():06d}"
    assert totp(key, at=59) != totp(key, at=60)


def test_a_form_keeps_its_hidden_fields_and_defaults_under_what_is_typed():
    html = """
    <form method="post" action="/x/"><input type="hidden" name="csrfmiddlewaretoken" value="t">
    <input name="a" value="1"><input type="radio" name="r" value="yes">
    <input type="radio" name="r" value="no" checked><input type="checkbox" name="c">
    <select name="s"><option value="">-</option><option value="2" selected>two</option></select>
    <textarea name="t">text</textarea><input type="submit" name="go" value="Go"></form>
    <form method="post"><input name="language"></form>
    """
    form = form_with(html, "a")
    assert form["action"] == "/x/"
    assert form["radios"]["r"] == ["yes", "no"]
    assert form["options"]["s"] == ["", "2"]
    assert fill(form, a="5", c="on", t=None) == {
        "csrfmiddlewaretoken": "t",
        "a": "5",
        "r": "no",
        "s": "2",
        "c": "on",
    }
    assert form_with(html, "nothing") is None


@pytest.mark.parametrize(
    ("eligible", "severity", "sex", "decision"),
    [
        (True, "severe", "F", Decision.ELIGIBLE),
        (True, "critical", "M", Decision.ELIGIBLE),
        (False, "severe", "F", Decision.INELIGIBLE),
    ],
)
def test_the_screening_form_as_the_load_test_fills_it(
    client_for, coordinator_a, site_a, protocol, eligible, severity, sex, decision
):
    participant = ParticipantFactory(site=site_a, user=coordinator_a, sex=sex)
    url = reverse("enrollment:participant_screen", args=[participant.study_number])
    client = client_for(coordinator_a)
    client.handler.enforce_csrf_checks = True  # as a browser meets it: the token must be sent
    form = form_with(client.get(url).content.decode(), "screening_date")
    answers = screening_answers(
        form, today=site_today(site_a), eligible=eligible, severity=severity
    )

    response = client.post(url, fill(form, **answers))

    assert response.status_code == 302
    screening = Screening.objects.get(participant=participant)
    assert screening.decision == decision
    assert screening.screening_date == site_today(site_a)
    assert screening.answers["diagnosis_date"] == str(
        site_today(site_a) - datetime.timedelta(days=2)
    )
    if not eligible:
        failing = [r["code"] for r in screening.results if r["outcome"] == "failed"]
        assert failing == ["I3"]
