"""The Django admin, audited: no protocol or trial data deleted, every delete and every
account change with its reason, and the accounts on the audit page."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest
import time_machine
from django.contrib.auth.models import Group, Permission, User
from django.contrib.messages import get_messages
from django.forms import MultiWidget
from django.urls import reverse

from arms.models import Arm
from enrollment.models import EligibilityCriterion
from tests.factories import PASSWORD, ready_participant
from trialsite.core.models import Protocol, Role, RoleAssignment, Site

pytestmark = pytest.mark.django_db

WHEN = datetime(2026, 11, 26, 3, 30, 12, tzinfo=UTC)


@pytest.fixture
def at_when():
    """The clock stands at WHEN (first in a test's fixtures, so the session is not idle)."""
    with time_machine.travel(WHEN, tick=False):
        yield


@pytest.fixture
def superuser(administrator):
    administrator.is_staff = administrator.is_superuser = True
    administrator.save()
    return administrator


@pytest.fixture
def admin_client(superuser, client_for):
    return client_for(superuser)


def admin_url(obj, view: str) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[obj.pk])


def changelist_url(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def form_data(response) -> dict:
    """What the admin's change form would post back unchanged."""
    form = response.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if field.disabled or value is None:
            continue
        if isinstance(field.widget, MultiWidget):
            for i, part in enumerate(field.widget.decompress(value)):
                data[f"{name}_{i}"] = "" if part is None else str(part)
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        else:
            data[name] = value
    return data


# --- Protocol-defining and trial data: never deleted here ---------------------------------------


@pytest.fixture
def undeletable(protocol, site_a, coordinator_a, investigator_a, superuser):
    from arms.models import Allocation
    from arms.services import participant_randomize
    from tests.factories import active_randomization_list

    active_randomization_list(administrator=superuser, per_stratum=3)
    participant = ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)
    participant_randomize(participant=participant, user=coordinator_a, idempotency_key=uuid4())
    return [
        EligibilityCriterion.objects.get(protocol=protocol, code="E1"),
        Arm.objects.get(protocol=protocol, code="MSC"),
        protocol,
        site_a,
        Allocation.objects.get(participant=participant),
        coordinator_a,
    ]


def test_protocol_and_trial_data_cannot_be_deleted_in_the_admin(undeletable, admin_client):
    for obj in undeletable:
        model = type(obj)
        change = admin_client.get(admin_url(obj, "change"))
        assert change.status_code == 200, model
        assert admin_url(obj, "delete") not in change.content.decode(), model
        assert admin_client.get(admin_url(obj, "delete")).status_code == 403, model
        response = admin_client.post(
            admin_url(obj, "delete"), {"post": "yes", "change_reason": "Not needed"}
        )
        assert response.status_code == 403, model
        assert model.objects.filter(pk=obj.pk).exists(), model
        changelist = admin_client.get(changelist_url(model))
        assert "delete_selected" not in changelist.content.decode(), model
        admin_client.post(
            changelist_url(model),
            {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"},
        )
        assert model.objects.filter(pk=obj.pk).exists(), model
        assert not model.history.filter(id=obj.pk, history_type="-").exists(), model


# --- Role assignments: deleted with a reason ----------------------------------------------------


def test_deleting_a_role_assignment_asks_for_a_reason(coordinator_a, admin_client):
    assignment = RoleAssignment.objects.get(user=coordinator_a)
    url = admin_url(assignment, "delete")
    assert b'name="change_reason"' in admin_client.get(url).content

    response = admin_client.post(url, {"post": "yes", "change_reason": "  "})

    assert response.status_code == 302
    assert response.url == url
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Give a reason for deleting this record."
    ]
    assert RoleAssignment.objects.filter(pk=assignment.pk).exists()
    assert not RoleAssignment.history.filter(history_type="-").exists()


def test_a_deleted_role_assignment_keeps_who_when_and_why(
    at_when, coordinator_a, superuser, admin_client
):
    assignment = RoleAssignment.objects.get(user=coordinator_a)
    response = admin_client.post(
        admin_url(assignment, "delete"), {"post": "yes", "change_reason": "Left the study team"}
    )
    assert response.status_code == 302
    assert not RoleAssignment.objects.filter(pk=assignment.pk).exists()
    record = RoleAssignment.history.get(id=assignment.pk, history_type="-")
    assert (record.history_user, record.history_date, record.history_change_reason) == (
        superuser,
        WHEN,
        "Left the study team",
    )


def test_role_assignments_have_no_bulk_delete(coordinator_a, investigator_a, admin_client):
    url = changelist_url(RoleAssignment)
    assert "delete_selected" not in admin_client.get(url).content.decode()
    pks = list(RoleAssignment.objects.values_list("pk", flat=True))

    admin_client.post(url, {"action": "delete_selected", "_selected_action": pks, "post": "yes"})

    assert RoleAssignment.objects.count() == len(pks)
    assert not RoleAssignment.history.filter(history_type="-").exists()


def test_deleting_a_group_asks_for_a_reason_and_keeps_it(superuser, admin_client):
    group = Group.objects.create(name="Pharmacists")
    url = admin_url(group, "delete")
    admin_client.post(url, {"post": "yes"})
    assert Group.objects.filter(pk=group.pk).exists()

    admin_client.post(url, {"post": "yes", "change_reason": "Role no longer used"})

    assert not Group.objects.filter(pk=group.pk).exists()
    record = Group.history.get(id=group.pk, history_type="-")
    assert (record.history_user, record.history_change_reason) == (superuser, "Role no longer used")


# --- Accounts in the audit trail ----------------------------------------------------------------


def test_a_superuser_flag_needs_a_reason_and_nothing_is_written_without_one(monitor, admin_client):
    url = admin_url(monitor, "change")
    data = form_data(admin_client.get(url)) | {"is_superuser": "on"}
    rows_before = monitor.history.count()

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "change_reason": ["Give a reason for changing this record."]
    }
    monitor.refresh_from_db()
    assert not monitor.is_superuser
    assert monitor.history.count() == rows_before


def test_a_superuser_flag_set_in_the_admin_is_on_the_audit_page(
    at_when, monitor, superuser, data_manager, admin_client, client_for
):
    url = admin_url(monitor, "change")
    data = form_data(admin_client.get(url)) | {
        "is_superuser": "on",
        "change_reason": "Covers for the administrator",
    }
    rows_before = monitor.history.count()

    assert admin_client.post(url, data).status_code == 302

    assert monitor.history.count() == rows_before + 1
    record = monitor.history.first()
    assert (record.history_type, record.history_user, record.history_date) == ("~", superuser, WHEN)
    assert record.history_change_reason == "Covers for the administrator"

    page = client_for(data_manager).get(reverse("audit_log"))
    entry = next(e for e in page.context["entries"] if e.reason == "Covers for the administrator")
    assert (entry.who, entry.model, entry.object, entry.action) == (
        "adam",
        "user",
        f"#{monitor.pk} mona",
        "Changed",
    )
    assert entry.changes == [{"field": "is_superuser", "old": False, "new": True}]
    assert "2026-11-26 03:30 UTC" in page.content.decode()


def test_groups_joined_in_the_admin_are_one_row_with_before_and_after(
    monitor, admin_client, data_manager, client_for
):
    monitors = Group.objects.create(name="Monitors")
    url = admin_url(monitor, "change")
    data = form_data(admin_client.get(url)) | {
        "groups": [monitors.pk],
        "change_reason": "Joins the monitoring team",
    }
    rows_before = monitor.history.count()

    assert admin_client.post(url, data).status_code == 302

    assert monitor.history.count() == rows_before + 1
    page = client_for(data_manager).get(reverse("audit_log"))
    entry = next(e for e in page.context["entries"] if e.reason == "Joins the monitoring team")
    assert entry.changes == [{"field": "groups", "old": "—", "new": "Monitors"}]


def test_a_groups_permissions_changed_in_the_admin_are_audited(
    superuser, admin_client, data_manager, client_for
):
    group = Group.objects.create(name="Monitors")
    permission = Permission.objects.get(codename="view_site")
    url = admin_url(group, "change")

    admin_client.post(url, {"name": "Monitors", "permissions": [permission.pk]})
    assert not group.permissions.exists()

    response = admin_client.post(
        url, {"name": "Monitors", "permissions": [permission.pk], "change_reason": "Read sites"}
    )
    assert response.status_code == 302
    page = client_for(data_manager).get(reverse("audit_log"))
    entry = next(e for e in page.context["entries"] if e.reason == "Read sites")
    assert (entry.who, entry.object) == ("adam", f"#{group.pk} Monitors")
    assert entry.changes == [
        {"field": "permissions", "old": "—", "new": "Trial site | site | Can view site"}
    ]


def test_a_password_set_in_the_admin_is_audited_without_the_hash(
    monitor, superuser, admin_client, data_manager, client_for
):
    url = reverse("admin:auth_user_password_change", args=[monitor.pk])
    assert b'name="change_reason"' in admin_client.get(url).content
    new = {"password1": "Another-horse-77", "password2": "Another-horse-77"}
    data = {"usable_password": "true", "set-password": "1", **new}

    refused = admin_client.post(url, data)
    assert refused.context["form"].errors == {
        "change_reason": ["Give a reason for changing this record."]
    }
    monitor.refresh_from_db()
    assert monitor.check_password(PASSWORD)

    assert admin_client.post(url, {**data, "change_reason": "Forgot it"}).status_code == 302

    monitor.refresh_from_db()
    assert monitor.check_password("Another-horse-77")
    record = monitor.history.first()
    assert (record.history_user, record.history_change_reason) == (superuser, "Forgot it")
    assert not hasattr(record, "password")
    page = client_for(data_manager).get(reverse("audit_log"))
    entry = next(e for e in page.context["entries"] if e.reason == "Forgot it")
    assert entry.changes == [
        {
            "field": "password",
            "old": "(password: value not shown)",
            "new": "(password: value not shown)",
        }
    ]
    assert monitor.password not in page.content.decode()


def test_logging_in_is_not_a_change_to_the_account(monitor, client):
    rows_before = monitor.history.count()
    response = client.post(reverse("login"), {"username": "mona", "password": PASSWORD})
    assert response.status_code == 302
    monitor.refresh_from_db()
    assert monitor.last_login is not None
    assert monitor.history.count() == rows_before


def test_a_new_role_assignment_in_the_admin_is_on_the_audit_page(
    site_a, monitor, admin_client, data_manager, client_for
):
    response = admin_client.post(
        reverse("admin:trialsite_roleassignment_add"),
        {"user": monitor.pk, "role": Role.COORDINATOR, "site": site_a.pk},
    )
    assert response.status_code == 302
    assert RoleAssignment.objects.filter(user=monitor, site=site_a).exists()
    entries = client_for(data_manager).get(reverse("audit_log")).context["entries"]
    assert any(e.model == "role assignment" and e.action == "Created" for e in entries)


def test_every_model_in_the_admin_refuses_deletion_unless_it_is_a_role_or_a_group(rf, superuser):
    from django.contrib import admin

    request = rf.get("/")
    request.user = superuser
    ours = {"auth", "trialsite", "enrollment", "arms", "dosing", "outcomes"}
    deletable = {
        model._meta.label
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in ours and model_admin.has_delete_permission(request)
    }
    assert deletable == {"trialsite.RoleAssignment", "auth.Group"}
    assert {Protocol, Site, User} <= set(admin.site._registry)


def test_an_account_created_in_the_admin_is_in_the_audit_trail(superuser, admin_client):
    for url in (reverse("admin:auth_user_add"), reverse("admin:auth_group_add")):
        assert admin_client.get(url).status_code == 200, url
    response = admin_client.post(
        reverse("admin:auth_user_add"),
        {"username": "newcomer", "usable_password": "false", "password1": "", "password2": ""},
    )
    assert response.status_code == 302
    record = User.objects.get(username="newcomer").history.get()
    assert (record.history_type, record.history_user) == ("+", superuser)
    change = admin_client.get(admin_url(record.instance, "change"))
    assert b'name="change_reason"' in change.content
