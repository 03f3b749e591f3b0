"""The access review: each account, its roles at which sites, active or not, its expiry, its
last login and its MFA status; for the trial administrator only, and as CSV."""

import csv
import io
import re
from datetime import UTC, date, datetime

import pytest
import time_machine
from django.urls import reverse

from tests.factories import ParticipantFactory, UserFactory, user_with_role
from trialsite.core.models import Role, RoleAssignment
from trialsite.core.selectors import access_review
from trialsite.core.services import account_expiry_set

pytestmark = pytest.mark.django_db

WHEN = datetime(2026, 11, 26, 3, 30, 12, tzinfo=UTC)


@pytest.fixture
def at_when():
    with time_machine.travel(WHEN, tick=False):
        yield


@pytest.fixture
def reviewed(at_when, cast, site_a):
    """alice also investigates at SHE and expired yesterday; bob left (inactive); mona logged in
    at WHEN; a newcomer holds no role yet."""
    alice = cast["coordinator_a"]
    RoleAssignment.objects.create(user=alice, role=Role.INVESTIGATOR, site=site_a)
    account_expiry_set(account=alice, expires_on=date(2026, 11, 26), user=None, reason="Left")
    bob = cast["investigator_a"]
    bob.is_active = False
    bob.save()
    account_expiry_set(
        account=cast["monitor"], expires_on=date(2027, 6, 30), user=None, reason="Contract"
    )
    mona = cast["monitor"]
    mona.last_login = WHEN
    mona.save(update_fields=["last_login"])
    UserFactory(username="newcomer", first_name="New", last_name="Comer")
    return cast


def test_the_review_reads_every_account(reviewed):
    rows = {row.username: row for row in access_review()}
    assert sorted(rows) == ["adam", "alice", "bob", "charlie", "dana", "mona", "newcomer"]
    alice = rows["alice"]
    assert [(a.role, a.site.code) for a in alice.assignments] == [
        ("coordinator", "SHE"),
        ("investigator", "SHE"),
    ]
    assert (alice.is_active, alice.expires_on, alice.expired) == (True, date(2026, 11, 26), True)
    assert (rows["bob"].is_active, rows["bob"].expired) == (False, False)
    assert (rows["mona"].expires_on, rows["mona"].expired) == (date(2027, 6, 30), False)
    assert rows["mona"].last_login == WHEN
    assert rows["newcomer"].assignments == []
    assert {row.mfa for row in rows.values()} == {"none"}
    assert {name for name, row in rows.items() if row.mfa_required} == {
        "adam",
        "bob",
        "dana",
        "mona",
        "alice",
    }


def test_the_page_shows_the_review(reviewed, client_for):
    response = client_for(reviewed["administrator"]).get(reverse("access_review"))
    assert response.status_code == 200
    content = response.content.decode()
    for text in ("alice", "Research coordinator", "2026-11-26", "expired", "2026-11-26 03:30"):
        assert text in content, text
    # The administrator's own authenticator app, set up to log in; nobody else has one.
    assert re.search(r'data-testid="mfa-adam">\s*authenticator app\s*<span[^>]*>needed<', content)
    assert re.search(r'data-testid="mfa-newcomer">\s*none\s*</td>', content)


@pytest.mark.parametrize("role", ["coordinator_a", "investigator_a", "data_manager", "monitor"])
def test_only_the_administrator_reviews_access(cast, client_for, role):
    client = client_for(cast[role])
    assert client.get(reverse("access_review")).status_code == 403
    assert client.get(reverse("access_review_csv")).status_code == 403


def read_csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))


def test_the_csv_holds_the_review_in_codes_and_utc(reviewed, client_for):
    response = client_for(reviewed["administrator"]).get(reverse("access_review_csv"))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="access-review-20261126T033012Z.csv"'
    )
    rows = {row["username"]: row for row in read_csv(response)}
    assert list(next(iter(rows.values()))) == [
        "username",
        "full_name",
        "roles",
        "active",
        "account_expires_on",
        "account_expired",
        "last_login_utc",
        "mfa",
        "mfa_required",
    ]
    assert rows["alice"]["roles"] == "coordinator@SHE; investigator@SHE"
    assert rows["alice"]["account_expires_on"] == "2026-11-26"
    assert rows["alice"]["account_expired"] == "yes"
    assert rows["adam"]["roles"] == "administrator@all"
    assert rows["bob"]["active"] == "no"
    assert rows["mona"]["last_login_utc"] == "2026-11-26T03:30:12+00:00"
    assert rows["newcomer"] == {
        "username": "newcomer",
        "full_name": "New Comer",
        "roles": "",
        "active": "yes",
        "account_expires_on": "",
        "account_expired": "no",
        "last_login_utc": "",
        "mfa": "none",
        "mfa_required": "no",
    }
    # Logged in to download this, with the authenticator app the role needs.
    assert (rows["adam"]["mfa"], rows["adam"]["mfa_required"]) == ("totp", "yes")
    assert (rows["charlie"]["mfa"], rows["charlie"]["mfa_required"]) == ("none", "no")


def test_csv_cells_cannot_become_formulas(at_when, administrator, client_for):
    UserFactory(username="mallory", first_name='=HYPERLINK("http://x")', last_name="-1+1")
    response = client_for(administrator).get(reverse("access_review_csv"))
    (mallory,) = [row for row in read_csv(response) if row["username"] == "mallory"]
    assert mallory["full_name"] == '\'=HYPERLINK("http://x") -1+1'


def test_the_review_costs_the_same_queries_for_10_or_100_accounts(
    administrator, site_a, client_for, django_assert_max_num_queries
):
    def accounts(n):
        for _ in range(n):
            user = user_with_role(Role.COORDINATOR, site_a)
            account_expiry_set(account=user, expires_on=date(2027, 1, 1), user=None, reason="x")

    client = client_for(administrator)
    accounts(10)
    with django_assert_max_num_queries(12) as ten:
        client.get(reverse("access_review"))
    accounts(90)
    with django_assert_max_num_queries(len(ten.captured_queries)):
        assert client.get(reverse("access_review")).status_code == 200
    with django_assert_max_num_queries(len(ten.captured_queries)):
        assert client.get(reverse("access_review_csv")).status_code == 200


def test_the_csv_holds_no_patient_data(reviewed, site_a, client_for, protocol):
    participant = ParticipantFactory(site=site_a, user=reviewed["coordinator_a"])
    response = client_for(reviewed["administrator"]).get(reverse("access_review_csv"))
    assert participant.study_number not in response.content.decode()
