"""Login, lockout after repeated failures, idle-session expiry."""

from datetime import timedelta

import pytest
import time_machine
from axes.models import AccessAttempt
from django.urls import reverse
from django.utils import timezone

from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def login(client, username, password):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_login_lands_on_role_home(client, coordinator_a):
    response = login(client, "alice", PASSWORD)
    assert response.status_code == 302 and response.url == reverse("home")
    assert client.get("/").url == reverse("role_home", args=["coordinator"])


def test_wrong_password_shows_an_error_and_logs_nobody_in(client, coordinator_a):
    response = login(client, "alice", "not-the-password")
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert "_auth_user_id" not in client.session


def test_locked_out_after_repeated_failures_even_with_the_right_password(
    client, coordinator_a, settings
):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "alice", "wrong-password").status_code == 200
    response = login(client, "alice", "wrong-password")
    assert response.status_code == 429
    assert b"Too many failed log-in attempts" in response.content
    response = login(client, "alice", PASSWORD)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    # The try with the right password while locked counts as one more failure.
    attempt = AccessAttempt.objects.get(username="alice")
    assert attempt.failures_since_start == settings.AXES_FAILURE_LIMIT + 1


def test_lockout_ends_after_the_cool_off(client, coordinator_a, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, "alice", "wrong-password")
    with time_machine.travel(timezone.now() + settings.AXES_COOLOFF_TIME + timedelta(seconds=1)):
        assert login(client, "alice", PASSWORD).status_code == 302


def test_session_expires_after_30_idle_minutes(client, coordinator_a, settings):
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        login(client, "alice", PASSWORD)
    with time_machine.travel(start + timedelta(minutes=29), tick=False):
        assert client.get(reverse("site_list")).status_code == 200  # activity renews it
    with time_machine.travel(start + timedelta(minutes=58), tick=False):
        assert client.get(reverse("site_list")).status_code == 200
    with time_machine.travel(start + timedelta(minutes=58 + 31), tick=False):
        response = client.get(reverse("site_list"))
        assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_password_validators_refuse_weak_passwords(coordinator_a):
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    coordinator_a.last_name = "Liddell"
    for weak, message in [
        ("12345678901", "This password is entirely numeric."),
        ("password123", "This password is too common."),
        ("short-pw", "This password is too short. It must contain at least 10 characters."),
        ("liddell123", "The password is too similar to the last name."),
    ]:
        with pytest.raises(ValidationError) as excinfo:
            validate_password(weak, user=coordinator_a)
        assert message in excinfo.value.messages
    validate_password("Ward-7-night-shift", user=coordinator_a)
