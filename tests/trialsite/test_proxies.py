"""Login lockout keys on the client's address: behind the TLS proxy, the one the proxy saw;
without a proxy, the connection's own, whatever X-Forwarded-For claims."""

import pytest
from django.test import RequestFactory
from django.urls import reverse

from tests.factories import PASSWORD
from trialsite.core.proxies import client_address

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.2"
CLIENT_X, CLIENT_Y = "203.0.113.5", "198.51.100.7"


def login(client, password, forwarded_for=None):
    headers = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for else {}
    return client.post(
        reverse("login"),
        {"username": "alice", "password": password},
        REMOTE_ADDR=PROXY,
        **headers,
    )


def fail_until_locked(client, settings, forwarded_for):
    statuses = [
        login(client, "wrong-password", forwarded_for).status_code
        for _ in range(settings.AXES_FAILURE_LIMIT)
    ]
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]


def test_behind_the_proxy_failures_from_one_client_do_not_lock_out_another(
    client, coordinator_a, settings
):
    settings.TRUSTED_PROXY_COUNT = 1
    fail_until_locked(client, settings, CLIENT_X)

    assert login(client, PASSWORD, CLIENT_X).status_code == 429
    response = login(client, PASSWORD, CLIENT_Y)
    assert response.status_code == 302 and response.url == reverse("home")


def test_behind_the_proxy_addresses_a_client_writes_itself_are_ignored(
    client, coordinator_a, settings
):
    """The proxy appends what it saw: entries to the left of it are the client's own claim."""
    settings.TRUSTED_PROXY_COUNT = 1
    for n in range(settings.AXES_FAILURE_LIMIT):
        login(client, "wrong-password", f"192.0.2.{n}, {CLIENT_X}")
    assert login(client, PASSWORD, f"192.0.2.99, {CLIENT_X}").status_code == 429


def test_without_a_proxy_a_forged_forwarded_for_does_not_dodge_the_lockout(
    client, coordinator_a, settings
):
    assert settings.TRUSTED_PROXY_COUNT == 0
    statuses = [
        login(client, "wrong-password", f"192.0.2.{n}").status_code
        for n in range(settings.AXES_FAILURE_LIMIT)
    ]
    assert statuses[-1] == 429
    assert login(client, PASSWORD, CLIENT_Y).status_code == 429


@pytest.mark.parametrize(
    ("proxies", "forwarded_for", "address"),
    [
        (0, f"{CLIENT_X}", PROXY),
        (1, None, PROXY),  # not through the proxy: its own address
        (1, f"{CLIENT_X}", CLIENT_X),
        (1, f"192.0.2.1,{CLIENT_X}", CLIENT_X),
        (2, f"192.0.2.1, {CLIENT_X}, 10.0.0.1", CLIENT_X),
        (2, "10.0.0.1", PROXY),  # fewer hops than proxies: the header is not trusted
        # Not an address: none, rather than a value the address columns refuse (PostgreSQL).
        (1, "not-an-address", None),
        (1, f"{CLIENT_X}, 300.1.2.3", None),
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_address(settings, proxies, forwarded_for, address):
    settings.TRUSTED_PROXY_COUNT = proxies
    headers = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for else {}
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY, **headers)
    assert client_address(request) == address
