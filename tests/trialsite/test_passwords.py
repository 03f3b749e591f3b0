"""Passwords are stored as Argon2id at OWASP's minimum; a hash in an older format still
works and is stored again as Argon2id at the next login, which the audit trail does not
count as a change of password."""

import pytest
from django.contrib.auth.hashers import check_password, identify_hasher, make_password
from django.urls import reverse

from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def project_hashers(settings):
    from trialsite import settings as project

    settings.PASSWORD_HASHERS = project.PASSWORD_HASHERS


def test_new_passwords_are_argon2id_with_owasp_parameters(project_hashers):
    encoded = make_password("a long enough passphrase")
    assert encoded.startswith("argon2$argon2id$v=19$m=19456,t=2,p=1$"), encoded
    assert check_password("a long enough passphrase", encoded)
    assert not check_password("a long enough passphrase.", encoded)


def test_an_older_pbkdf2_hash_logs_in_and_is_stored_again_as_argon2id(
    project_hashers, client, coordinator_a
):
    coordinator_a.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    coordinator_a.save(update_fields=["password"])
    changes_before = coordinator_a.history.count()

    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})

    assert response.status_code == 302 and response.url == reverse("home")
    coordinator_a.refresh_from_db()
    assert identify_hasher(coordinator_a.password).algorithm == "argon2"
    assert "m=19456,t=2,p=1" in coordinator_a.password
    # A re-hash at login is not a new password: no row in the account's history.
    assert coordinator_a.history.count() == changes_before


def test_the_wrong_password_against_an_older_hash_changes_nothing(
    project_hashers, client, coordinator_a
):
    old = make_password(PASSWORD, hasher="pbkdf2_sha256")
    coordinator_a.password = old
    coordinator_a.save(update_fields=["password"])

    response = client.post(reverse("login"), {"username": "alice", "password": "not it at all"})

    assert response.status_code == 200
    coordinator_a.refresh_from_db()
    assert coordinator_a.password == old
