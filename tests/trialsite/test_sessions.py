"""Sessions: the absolute lifetime beside the idle timeout; deactivating a user or taking a role
away ends their sessions at once; an expired account can neither log in nor keep a session."""

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from tests.conftest import totp_code, totp_device_for, verified_login
from tests.factories import PASSWORD
from trialsite.core.models import (
    AccessEvent,
    AccessEventKind,
    AccountProfile,
    Role,
    RoleAssignment,
    UserSession,
)
from trialsite.core.services import account_expiry_set
from trialsite.core.sessions import session_outlived

pytestmark = pytest.mark.django_db

START = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


def log_in(client, username: str) -> None:
    """The login form, then the second factor's code for a user who needs one."""
    device = totp_device_for(User.objects.get(username=username))
    response = client.post(reverse("login"), {"username": username, "password": PASSWORD})
    assert response.status_code == 302 and response.url == reverse("home"), response
    if device is not None:
        response = client.post(reverse("mfa:verify"), {"code": totp_code(device)})
        assert response.status_code == 302 and response.url == reverse("home"), response


def sent_to_login(response) -> bool:
    return response.status_code == 302 and response.url.startswith(reverse("login") + "?next=")


# --- The absolute lifetime ----------------------------------------------------------------------


def test_the_absolute_lifetime_is_12_hours_beside_the_30_minute_idle_timeout(settings):
    assert settings.SESSION_ABSOLUTE_HOURS == 12
    assert settings.SESSION_COOKIE_AGE == 30 * 60


def test_the_session_outlived_rule_at_the_exact_instant():
    login_at = START.timestamp()
    assert not session_outlived(login_at, now=START + timedelta(hours=11, minutes=59, seconds=59))
    assert session_outlived(login_at, now=START + timedelta(hours=12))
    assert session_outlived(None, now=START)  # a session from before the limit existed


def test_an_active_session_ends_12_hours_after_the_login(client, coordinator_a):
    with time_machine.travel(START, tick=False):
        log_in(client, "alice")
    # Busy all day: a request every 25 minutes keeps the idle timeout away.
    moment = START
    while moment < START + timedelta(hours=11, minutes=35):
        moment += timedelta(minutes=25)
        with time_machine.travel(moment, tick=False):
            assert client.get(reverse("site_list")).status_code == 200, moment
    with time_machine.travel(START + timedelta(hours=11, minutes=59, seconds=59), tick=False):
        assert client.get(reverse("site_list")).status_code == 200
    with time_machine.travel(START + timedelta(hours=12), tick=False):
        assert sent_to_login(client.get(reverse("site_list")))
        assert "_auth_user_id" not in client.session
    event = AccessEvent.objects.filter(kind=AccessEventKind.SESSION_ENDED).get()
    assert (event.username, event.at, event.detail) == (
        "alice",
        START + timedelta(hours=12),
        "absolute session lifetime reached",
    )
    assert not UserSession.objects.filter(user=coordinator_a).exists()
    # Logging in again starts a new day.
    with time_machine.travel(START + timedelta(hours=12, minutes=1), tick=False):
        log_in(client, "alice")
        assert client.get(reverse("site_list")).status_code == 200


def test_the_lifetime_is_a_setting(client, coordinator_a, settings):
    settings.SESSION_ABSOLUTE_HOURS = 1
    with time_machine.travel(START, tick=False):
        log_in(client, "alice")
    with time_machine.travel(START + timedelta(minutes=29), tick=False):
        assert client.get(reverse("site_list")).status_code == 200
    with time_machine.travel(START + timedelta(minutes=58), tick=False):
        assert client.get(reverse("site_list")).status_code == 200
    with time_machine.travel(START + timedelta(minutes=60), tick=False):
        assert sent_to_login(client.get(reverse("site_list")))


# --- Access taken away ends the sessions ---------------------------------------------------------


@pytest.fixture
def admin_client(administrator):
    administrator.is_staff = administrator.is_superuser = True
    administrator.save()
    return verified_login(Client(), administrator)


def user_change_data(admin_client, user) -> dict:
    form = (
        admin_client.get(reverse("admin:auth_user_change", args=[user.pk]))
        .context["adminform"]
        .form
    )
    data = {
        name: form[name].value()
        for name in ("username", "first_name", "last_name", "email")
        if form[name].value() is not None
    }
    data["is_active"] = "on"
    return data


@pytest.fixture
def two_tablets(coordinator_a, investigator_a):
    """alice logged in on two tablets, bob on a third."""
    tablets = [Client(), Client(), Client()]
    log_in(tablets[0], "alice")
    log_in(tablets[1], "alice")
    log_in(tablets[2], "bob")
    for tablet in tablets:
        assert tablet.get(reverse("site_list")).status_code == 200
    return tablets


def alice_sessions() -> int:
    keys = UserSession.objects.filter(user__username="alice").values_list("session_key")
    return Session.objects.filter(session_key__in=keys).count()


def test_deactivating_a_user_ends_each_of_their_sessions_at_once(two_tablets, coordinator_a):
    assert alice_sessions() == 2
    keys = list(
        UserSession.objects.filter(user=coordinator_a).values_list("session_key", flat=True)
    )

    coordinator_a.is_active = False
    coordinator_a.save()

    assert not Session.objects.filter(session_key__in=keys).exists()
    assert not UserSession.objects.filter(user=coordinator_a).exists()
    assert sent_to_login(two_tablets[0].get(reverse("site_list")))
    assert sent_to_login(two_tablets[1].get(reverse("site_list")))
    # Bob works on.
    assert two_tablets[2].get(reverse("site_list")).status_code == 200
    event = AccessEvent.objects.get(kind=AccessEventKind.SESSION_ENDED)
    assert (event.user, event.detail) == (coordinator_a, "account deactivated")


def test_deactivating_a_user_in_the_admin_ends_their_sessions(
    two_tablets, coordinator_a, admin_client
):
    url = reverse("admin:auth_user_change", args=[coordinator_a.pk])
    data = user_change_data(admin_client, coordinator_a) | {"change_reason": "Left the hospital"}
    del data["is_active"]  # the box unticked
    response = admin_client.post(url, data)
    assert response.status_code == 302
    coordinator_a.refresh_from_db()
    assert not coordinator_a.is_active
    assert sent_to_login(two_tablets[0].get(reverse("site_list")))
    assert sent_to_login(two_tablets[1].get(reverse("site_list")))
    assert two_tablets[2].get(reverse("site_list")).status_code == 200


def test_removing_a_role_ends_the_holders_sessions(two_tablets, coordinator_a):
    assignment = RoleAssignment.objects.get(user=coordinator_a)
    assignment._change_reason = "Left the study team"
    assignment.delete()

    assert alice_sessions() == 0
    assert sent_to_login(two_tablets[0].get(reverse("site_list")))
    assert sent_to_login(two_tablets[1].get(reverse("site_list")))
    assert two_tablets[2].get(reverse("site_list")).status_code == 200
    event = AccessEvent.objects.get(kind=AccessEventKind.SESSION_ENDED)
    assert (event.user, event.detail) == (coordinator_a, "role assignment removed or changed")


def test_moving_a_role_to_another_site_ends_the_holders_sessions(two_tablets, site_b):
    assignment = RoleAssignment.objects.get(user__username="alice")
    assignment.site = site_b
    assignment._change_reason = "Moves to Wuhan"
    assignment.save()
    assert sent_to_login(two_tablets[0].get(reverse("site_list")))


def test_giving_a_new_role_keeps_the_sessions(two_tablets, coordinator_a, site_b):
    RoleAssignment.objects.create(user=coordinator_a, role=Role.COORDINATOR, site=site_b)
    assert alice_sessions() == 2
    assert two_tablets[0].get(reverse("site_list")).status_code == 200


def test_a_new_role_that_needs_a_second_factor_asks_for_it_in_the_open_sessions(
    two_tablets, coordinator_a
):
    RoleAssignment.objects.create(user=coordinator_a, role=Role.MONITOR)
    assert alice_sessions() == 2
    response = two_tablets[0].get(reverse("site_list"))
    assert (response.status_code, response.url) == (302, "/accounts/mfa/enrol/?next=%2Fsites%2F")


def test_logging_out_unregisters_the_session(client, coordinator_a):
    log_in(client, "alice")
    assert UserSession.objects.filter(user=coordinator_a).count() == 1
    client.post(reverse("logout"))
    assert not UserSession.objects.filter(user=coordinator_a).exists()


def test_the_sessions_are_ended_in_the_configured_backend():
    # The DB backend is what the deployment uses; sessions_end asks whichever is configured.
    assert django_settings.SESSION_ENGINE == "django.contrib.sessions.backends.db"


# --- Account expiry ------------------------------------------------------------------------------


def expire(user, on: date):
    return account_expiry_set(account=user, expires_on=on, user=None, reason="Contract ends")


def test_an_account_logs_in_until_its_expiry_date_and_not_from_it(client, coordinator_a):
    expire(coordinator_a, date(2026, 12, 1))
    with time_machine.travel(datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), tick=False):
        log_in(client, "alice")
        client.post(reverse("logout"))
    with time_machine.travel(datetime(2026, 12, 1, 0, 0, tzinfo=UTC), tick=False):
        response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "This account expired on 2026-12-01 (UTC). Ask the trial administrator to extend it."
    ]
    assert "This account expired on 2026-12-01 (UTC)." in response.content.decode()
    assert "_auth_user_id" not in client.session
    event = AccessEvent.objects.filter(kind=AccessEventKind.LOGIN_FAILED).get()
    assert (event.user, event.detail) == (coordinator_a, "account expired")


def test_an_expired_account_with_a_wrong_password_is_told_only_that_the_password_is_wrong(
    client, coordinator_a
):
    expire(coordinator_a, date(2026, 12, 1))
    with time_machine.travel(datetime(2026, 12, 2, 9, 0, tzinfo=UTC), tick=False):
        response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert "expired" not in response.content.decode()
    assert "Please enter a correct username and password" in response.content.decode()


def test_a_session_open_when_the_account_expires_ends(client, coordinator_a):
    expire(coordinator_a, date(2026, 12, 1))
    with time_machine.travel(datetime(2026, 11, 30, 23, 50, tzinfo=UTC), tick=False):
        log_in(client, "alice")
    with time_machine.travel(datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), tick=False):
        assert client.get(reverse("site_list")).status_code == 200
    with time_machine.travel(datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC), tick=False):
        assert sent_to_login(client.get(reverse("site_list")))


def test_a_user_without_an_expiry_date_never_expires(client, coordinator_a):
    assert not AccountProfile.objects.filter(user=coordinator_a).exists()
    with time_machine.travel(datetime(2099, 1, 1, tzinfo=UTC), tick=False):
        log_in(client, "alice")


def test_the_administrator_sets_an_expiry_date_in_the_admin_with_a_reason(
    admin_client, administrator, coordinator_a
):
    url = reverse("admin:auth_user_change", args=[coordinator_a.pk])
    data = user_change_data(admin_client, coordinator_a) | {"expires_on": "2027-03-31"}

    refused = admin_client.post(url, data)
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors == {
        "change_reason": ["Give a reason for changing this record."]
    }
    assert not AccountProfile.objects.filter(user=coordinator_a).exists()

    response = admin_client.post(url, data | {"change_reason": "Contract until March"})
    assert response.status_code == 302
    profile = AccountProfile.objects.get(user=coordinator_a)
    assert profile.expires_on == date(2027, 3, 31)
    record = profile.history.get()
    assert (record.history_user, record.history_change_reason) == (
        administrator,
        "Contract until March",
    )
    # Shown again on the form; a later change is a changed row with its reason.
    again = user_change_data(admin_client, coordinator_a)
    form = admin_client.get(url).context["adminform"].form
    assert form["expires_on"].value() == date(2027, 3, 31)
    admin_client.post(url, again | {"expires_on": "", "change_reason": "Contract extended"})
    profile.refresh_from_db()
    assert profile.expires_on is None
    assert profile.history.first().history_change_reason == "Contract extended"


def test_a_bad_expiry_date_in_the_admin_is_an_error_not_a_crash(admin_client, coordinator_a):
    url = reverse("admin:auth_user_change", args=[coordinator_a.pk])
    data = user_change_data(admin_client, coordinator_a) | {
        "expires_on": "2027-02-30",
        "change_reason": "Typo",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "expires_on" in response.context["adminform"].form.errors
    assert not AccountProfile.objects.filter(user=coordinator_a).exists()


def test_the_admins_own_login_page_refuses_an_expired_account_too(client, administrator):
    administrator.is_staff = True
    administrator.save()
    expire(administrator, date(2026, 12, 1))
    with time_machine.travel(datetime(2026, 12, 1, 8, 0, tzinfo=UTC), tick=False):
        response = client.post(reverse("admin:login"), {"username": "adam", "password": PASSWORD})
    assert response.status_code == 200
    assert "This account expired on 2026-12-01 (UTC)." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_session_whose_key_changed_with_its_own_password_can_still_be_ended(
    admin_client, administrator
):
    before = admin_client.session.session_key
    url = reverse("admin:auth_user_password_change", args=[administrator.pk])
    new = {"password1": "Another-horse-77", "password2": "Another-horse-77"}
    data = {"usable_password": "true", "set-password": "1", "change_reason": "Rotated", **new}
    assert admin_client.post(url, data).status_code == 302
    after = admin_client.session.session_key
    assert after != before  # Django cycles the key of the session that changed its password
    assert list(UserSession.objects.values_list("session_key", flat=True)) == [after]
    assert admin_client.get(reverse("site_list")).status_code == 200

    administrator.is_active = False
    administrator.save()
    assert sent_to_login(admin_client.get(reverse("site_list")))
    assert not Session.objects.filter(session_key=after).exists()
