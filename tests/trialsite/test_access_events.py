"""Logins, logouts, failed logins and lockouts in the audit trail: who, when (UTC), what, from
which address; never the password tried."""

from datetime import UTC, datetime

import pytest
import time_machine
from django.urls import reverse

from tests.conftest import verified_login
from tests.factories import PASSWORD
from trialsite.core.models import AccessEvent, AccessEventKind

pytestmark = pytest.mark.django_db

WHEN = datetime(2026, 11, 26, 3, 30, 12, tzinfo=UTC)
ADDRESS = "203.0.113.7"
SECRET = "Tr0ub4dor&3-secret"


@pytest.fixture
def at_when():
    with time_machine.travel(WHEN, tick=False):
        yield


def login(client, username, password):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ADDRESS
    )


def events():
    return list(
        AccessEvent.objects.order_by("id").values_list(
            "kind", "username", "user__username", "at", "client_address", "detail"
        )
    )


def test_a_login_and_a_logout_are_recorded(at_when, client, coordinator_a):
    assert login(client, "alice", PASSWORD).status_code == 302
    client.post(reverse("logout"), REMOTE_ADDR=ADDRESS)
    assert events() == [
        (AccessEventKind.LOGIN, "alice", "alice", WHEN, ADDRESS, ""),
        (AccessEventKind.LOGOUT, "alice", "alice", WHEN, ADDRESS, ""),
    ]


def test_a_failed_login_names_the_account_and_never_keeps_the_password(
    at_when, client, coordinator_a
):
    login(client, "alice", SECRET)
    assert events() == [(AccessEventKind.LOGIN_FAILED, "alice", "alice", WHEN, ADDRESS, "")]
    for event in AccessEvent.objects.values():
        assert not any(SECRET in str(value) for value in event.values())


def test_a_username_that_does_not_exist_is_kept_as_typed_but_truncated(at_when, client):
    typed = '=HYPERLINK("x") ' + SECRET + " and much more typed by mistake"
    login(client, typed, "whatever")
    (event,) = AccessEvent.objects.all()
    assert event.user is None
    assert event.username == typed[:32]
    assert len(event.username) == 32


def test_a_lockout_is_recorded(at_when, client, coordinator_a, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, "alice", "wrong-password")
    kinds = [kind for kind, *_ in events()]
    assert kinds.count(AccessEventKind.LOGIN_FAILED) == settings.AXES_FAILURE_LIMIT
    assert kinds.count(AccessEventKind.LOCKED_OUT) == 1
    # Each try while locked out is a failure and a lockout again, with the right password too.
    assert login(client, "alice", PASSWORD).status_code == 429
    kinds = [kind for kind, *_ in events()]
    assert kinds.count(AccessEventKind.LOCKED_OUT) == 2
    assert AccessEventKind.LOGIN not in kinds
    lockout = AccessEvent.objects.filter(kind=AccessEventKind.LOCKED_OUT).first()
    assert (lockout.username, lockout.client_address, lockout.at) == ("alice", ADDRESS, WHEN)


def test_the_client_address_is_the_one_the_trusted_proxy_saw(at_when, client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    client.post(
        reverse("login"),
        {"username": "nobody", "password": "x"},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.9",
    )
    assert AccessEvent.objects.get().client_address == "198.51.100.9"


def test_access_events_are_on_the_audit_page(at_when, client, coordinator_a, data_manager):
    login(client, "alice", SECRET)
    login(client, "alice", PASSWORD)
    client.post(reverse("logout"), REMOTE_ADDR=ADDRESS)
    verified_login(client, data_manager)
    page = client.get(reverse("audit_log"))
    entries = [
        (e.who, e.model, e.object, e.action, e.when)
        for e in page.context["entries"]
        if e.model == "access event"
    ]
    assert entries[-3:] == [
        ("alice", "access event", f"from {ADDRESS}", "Logged out", WHEN),
        ("alice", "access event", f"from {ADDRESS}", "Logged in", WHEN),
        ("alice", "access event", f"from {ADDRESS}", "Login failed", WHEN),
    ]
    content = page.content.decode()
    assert "Login failed" in content and ADDRESS in content
    assert SECRET not in content


def test_access_events_are_never_changed_or_deleted_in_the_admin(at_when, client, administrator):
    login(client, "nobody", "x")
    event = AccessEvent.objects.get()
    administrator.is_staff = administrator.is_superuser = True
    administrator.save()
    verified_login(client, administrator)
    url = reverse("admin:trialsite_accessevent_change", args=[event.pk])
    assert client.get(url).status_code == 200  # read
    client.post(url, {"username": "someone-else", "kind": "login"})
    assert AccessEvent.objects.get(pk=event.pk).username == "nobody"
    delete = reverse("admin:trialsite_accessevent_delete", args=[event.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert AccessEvent.objects.count() == 1 + 1  # the administrator's own login


def test_a_malformed_forwarded_address_is_left_out_and_the_login_still_works(
    at_when, client, coordinator_a, settings
):
    settings.TRUSTED_PROXY_COUNT = 1
    response = client.post(
        reverse("login"),
        {"username": "alice", "password": PASSWORD},
        HTTP_X_FORWARDED_FOR="not-an-address",
    )
    assert response.status_code == 302
    event = AccessEvent.objects.get()
    assert (event.kind, event.client_address) == (AccessEventKind.LOGIN, None)
