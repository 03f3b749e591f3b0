"""The access matrix: each role against each kind of page."""

import pytest
from django.urls import reverse

from trialsite.core.access import access_for, scope_to_sites, sites_for_user
from trialsite.core.models import RoleAssignment, Site

pytestmark = pytest.mark.django_db

ROLES = [
    "coordinator_a",
    "investigator_a",
    "coordinator_b",
    "data_manager",
    "monitor",
    "administrator",
]

# page -> the roles that may open it (200); others get 403, or 404 for another site's object.
MATRIX = {
    "site_list": set(ROLES),
    "protocol_detail": set(ROLES),
    "site_detail_a": {
        "coordinator_a",
        "investigator_a",
        "data_manager",
        "monitor",
        "administrator",
    },
    "site_edit_a": {"administrator"},
    "audit_log": {"data_manager", "monitor", "administrator"},
    "audit_log_csv": {"data_manager", "monitor", "administrator"},
    "user_list": {"administrator"},
    "access_review": {"administrator"},
    "access_review_csv": {"administrator"},
    "exports:bundle": {"data_manager", "administrator"},
    # Oversight: every role, each seeing the participants of its own sites.
    "oversight:consort": set(ROLES),
    "oversight:consort_svg": set(ROLES),
    "oversight:record_status": set(ROLES),
    # One record's history: whoever may see its participant.
    "record_history_a": {
        "coordinator_a",
        "investigator_a",
        "data_manager",
        "monitor",
        "administrator",
    },
}
# Another site's object is a 404, so its existence does not leak; a page of another role is 403.
NOT_FOUND = {("site_detail_a", "coordinator_b"), ("record_history_a", "coordinator_b")}


def url_of(page):
    if page == "site_detail_a":
        return reverse("site_detail", args=["SHE"])
    if page == "site_edit_a":
        return reverse("site_edit", args=["SHE"])
    if page == "record_history_a":
        from tests.factories import ParticipantFactory

        coordinator = RoleAssignment.objects.filter(role="coordinator", site__code="SHE").first()
        participant = ParticipantFactory(site=Site.objects.get(code="SHE"), user=coordinator.user)
        return reverse("record_history", args=["enrollment.participant", participant.pk])
    return reverse(page)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", list(MATRIX))
def test_access_matrix(cast, protocol, client_for, role, page):
    response = client_for(cast[role]).get(url_of(page))
    if role in MATRIX[page]:
        expected = 200
    else:
        expected = 404 if (page, role) in NOT_FOUND else 403
    assert response.status_code == expected, (page, role)


@pytest.mark.parametrize(
    "role,home",
    [
        ("coordinator_a", "coordinator"),
        ("investigator_a", "investigator"),
        ("data_manager", "data_manager"),
        ("monitor", "monitor"),
        ("administrator", "administrator"),
    ],
)
def test_each_role_lands_on_its_home_page(cast, protocol, client_for, role, home):
    client = client_for(cast[role])
    response = client.get("/", follow=True)
    assert response.redirect_chain == [(reverse("role_home", args=[home]), 302)]
    assert response.templates[0].name == f"home/{home}.html"


def test_user_without_role_sees_a_plain_message_and_no_data(client_for, site_a):
    from tests.factories import UserFactory

    client = client_for(UserFactory())
    response = client.get("/")
    assert response.status_code == 200
    assert b"You hold no role in this trial yet" in response.content
    # Every other page is refused before its view runs, even one that would list nothing.
    for url in (
        reverse("site_detail", args=["SHE"]),
        reverse("audit_log"),
        reverse("enrollment:participant_list"),
        reverse("protocol_detail"),
    ):
        assert client.get(url).status_code == 403, url


def test_another_roles_home_redirects_home(cast, client_for):
    response = client_for(cast["coordinator_a"]).get(reverse("role_home", args=["administrator"]))
    assert response.status_code == 302 and response.url == reverse("home")


@pytest.mark.parametrize(
    "path", ["/", "/sites/", "/sites/SHE/", "/protocol/", "/audit/", "/users/"]
)
def test_every_page_requires_login(client, site_a, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.url.startswith(reverse("login") + "?next=")


def test_login_and_healthz_need_no_login(client):
    assert client.get(reverse("login")).status_code == 200
    assert client.get(reverse("healthz")).status_code == 200


def test_site_b_coordinator_sees_only_site_b(cast, site_a, site_b, client_for):
    response = client_for(cast["coordinator_b"]).get(reverse("site_list"))
    assert b"WUH" in response.content and b"SHE" not in response.content
    assert list(sites_for_user(cast["coordinator_b"])) == [site_b]
    assert list(scope_to_sites(Site.objects.all(), cast["coordinator_b"], site_field="pk")) == [
        site_b
    ]
    assert set(sites_for_user(cast["monitor"])) == {site_a, site_b}


def test_a_user_can_hold_different_roles_at_different_sites(site_a, site_b, client_for):
    from tests.factories import RoleAssignmentFactory, UserFactory

    user = UserFactory()
    RoleAssignmentFactory(user=user, role="coordinator", site=site_a)
    RoleAssignmentFactory(user=user, role="investigator", site=site_b)
    access = access_for(user)
    assert access.roles == ["coordinator", "investigator"]
    assert access.site_ids("coordinator") == {site_a.pk}
    assert access.site_ids("investigator") == {site_b.pk}
    assert access.site_ids() == {site_a.pk, site_b.pk}


def test_monitor_is_refused_every_write(cast, site_a, client_for):
    client = client_for(cast["monitor"])
    for path in ["/sites/SHE/edit/", "/sites/", "/protocol/", "/admin/trialsite/site/add/"]:
        assert client.post(path, {"name": "Renamed", "reason": "x"}).status_code == 403, path
    site_a.refresh_from_db()
    assert site_a.name == "Shanghai East Hospital"
    # Logging out is not a change.
    assert client.post(reverse("logout")).status_code == 302


def test_site_scoped_roles_need_a_site(site_a):
    from django.core.exceptions import ValidationError

    from tests.factories import UserFactory

    with pytest.raises(ValidationError, match="Coordinators and investigators hold their role"):
        RoleAssignment(user=UserFactory(), role="coordinator", site=None).full_clean()
    with pytest.raises(ValidationError, match="Coordinators and investigators hold their role"):
        RoleAssignment(user=UserFactory(), role="monitor", site=site_a).full_clean()
