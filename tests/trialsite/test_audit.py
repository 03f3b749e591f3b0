"""Every change is audited: who, when, old and new values, and why."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse

from trialsite.core.audit import MissingChangeReason, audited_save, changes_of
from trialsite.core.models import Site
from trialsite.core.selectors import audited_models
from trialsite.core.services import site_update

pytestmark = pytest.mark.django_db


def test_a_change_without_a_reason_is_refused_and_nothing_is_written(site_a, administrator):
    history_before = site_a.history.count()
    with pytest.raises(ValidationError) as excinfo:
        site_update(site=site_a, user=administrator, reason="  ", name="Renamed")
    assert excinfo.value.message_dict == {"reason": ["Give a reason for changing this record."]}
    site_a.refresh_from_db()
    assert site_a.name == "Shanghai East Hospital"
    assert site_a.history.count() == history_before


def test_no_path_changes_an_audited_record_silently(site_a):
    site_a.name = "Renamed"
    with pytest.raises(MissingChangeReason):
        site_a.save()
    assert Site.objects.get(pk=site_a.pk).name == "Shanghai East Hospital"


def test_a_change_with_a_reason_records_user_time_old_new_and_why(site_a, administrator):
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    with time_machine.travel(when, tick=False):
        site_update(
            site=site_a, user=administrator, reason="Name per IRB letter", name="East Hospital"
        )
    record = site_a.history.first()
    assert record.history_type == "~"
    assert record.history_user == administrator
    assert record.history_date == when
    assert record.history_change_reason == "Name per IRB letter"
    assert changes_of(record) == [
        {"field": "name", "old": "Shanghai East Hospital", "new": "East Hospital"}
    ]


def test_creation_needs_no_reason_and_is_recorded(administrator):
    site = audited_save(Site(code="NEW", name="New Hospital"), user=administrator)
    assert site.history.get().history_type == "+"


def test_site_edit_page_keeps_typed_input_and_shows_the_reason_error(
    site_a, administrator, client_for
):
    client = client_for(administrator)
    url = reverse("site_edit", args=["SHE"])
    response = client.post(
        url, {"name": "Typed name", "time_zone": "Asia/Shanghai", "language": "en", "reason": ""}
    )
    assert response.status_code == 200
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    assert b'value="Typed name"' in response.content
    site_a.refresh_from_db()
    assert site_a.name == "Shanghai East Hospital"


def test_site_edit_page_rejects_an_unknown_time_zone_next_to_the_field(
    site_a, administrator, client_for
):
    response = client_for(administrator).post(
        reverse("site_edit", args=["SHE"]),
        {"name": "East", "time_zone": "Mars/Olympus", "language": "en", "reason": "typo"},
    )
    assert response.context["form"].errors == {
        "time_zone": ["Mars/Olympus is not a known time zone."]
    }
    site_a.refresh_from_db()
    assert site_a.time_zone == "Asia/Shanghai"


def test_site_edit_through_the_page_is_in_the_audit_trail(
    site_a, administrator, data_manager, client_for
):
    response = client_for(administrator).post(
        reverse("site_edit", args=["SHE"]),
        {
            "name": "East",
            "time_zone": "Asia/Shanghai",
            "language": "en",
            "is_active": "on",
            "reason": "Rename",
        },
    )
    assert response.status_code == 302
    record = site_a.history.first()
    assert (record.history_user, record.history_change_reason) == (administrator, "Rename")
    page = client_for(data_manager).get(reverse("audit_log"))
    entry = next(e for e in page.context["entries"] if e.reason == "Rename")
    assert (entry.who, entry.action) == ("adam", "Changed")
    assert entry.changes == [{"field": "name", "old": "Shanghai East Hospital", "new": "East"}]


def test_every_trial_data_model_is_audited():
    names = {m._meta.label for m in audited_models()}
    assert {
        "trialsite.Site",
        "trialsite.RoleAssignment",
        "trialsite.Protocol",
        "arms.Arm",
        "dosing.DoseSchedule",
        "enrollment.EligibilityCriterion",
        "outcomes.VisitDefinition",
    } <= names


def test_randomization_lists_are_in_the_audit_trail_of_the_administrator_only(
    protocol, site_a, site_b, administrator, monitor, data_manager, client_for
):
    from arms.models import RandomizationList, Stratum
    from tests.factories import active_randomization_list

    active_randomization_list(administrator=administrator, per_stratum=3)
    # The entries have no history row each: the list's creation is their audit event.
    concealed = {str(m._meta.verbose_name) for m in (RandomizationList, Stratum)}

    def models_seen(user):
        entries = client_for(user).get(reverse("audit_log")).context["entries"]
        return {e.model for e in entries}

    assert concealed <= models_seen(administrator)
    assert not concealed & models_seen(monitor)
    assert not concealed & models_seen(data_manager)


def test_the_audit_trail_says_an_identifier_changed_but_never_shows_it(
    protocol, site_a, coordinator_a, monitor, client_for
):
    from tests.factories import ParticipantFactory

    participant = ParticipantFactory(site=site_a, user=coordinator_a, name="Zhang Wei")
    participant.name = "Zhang Weiming"
    audited_save(participant, user=coordinator_a, reason="Spelling per ID card")
    assert changes_of(participant.history.first()) == [
        {
            "field": "name",
            "old": "(identifier: value not shown)",
            "new": "(identifier: value not shown)",
        }
    ]
    page = client_for(monitor).get(reverse("audit_log"))
    assert b"Spelling per ID card" in page.content
    assert b"Zhang Wei" not in page.content


def test_the_audit_page_takes_no_more_queries_for_30_changes_than_for_3(
    site_a, site_b, administrator, monitor, data_manager, client_for
):
    """Trial data, role assignments given and taken away, accounts and groups (with their
    memberships): the page's queries do not grow with the rows."""
    from django.contrib.auth.models import Group, Permission
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from trialsite.core.models import RoleAssignment

    client = client_for(data_manager)
    group = Group.objects.create(name="Monitors")
    permissions = list(Permission.objects.order_by("pk")[:30])

    def changes(n):
        for i in range(n):
            site_update(site=site_a, user=administrator, reason=f"edit {i}", name=f"Name {i}")
            assignment = audited_save(
                RoleAssignment(user=monitor, role="coordinator", site=site_b), user=administrator
            )
            assignment._change_reason = f"removed {i}"
            assignment.delete()
            monitor.is_staff = not monitor.is_staff
            monitor._change_reason = f"staff {i}"
            monitor.save()
            monitor.groups.add(group) if i % 2 else monitor.groups.remove(group)
            group._change_reason = f"permission {i}"
            group.permissions.add(permissions[i])

    def queries():
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse("audit_log")).status_code == 200
        return len(ctx)

    changes(3)
    few = queries()
    changes(27)
    # A query or two per kind of record on the page, never per row: with more rows, the
    # older kinds (the data manager's login) leave the first page, so never more queries.
    assert queries() <= few
    entries = client.get(reverse("audit_log")).context["entries"]
    assert {"site", "role assignment", "user", "group"} <= {e.model for e in entries}


def test_the_audit_page_shows_its_times_in_utc_and_says_so(
    site_a, administrator, data_manager, client_for, settings
):
    settings.TIME_ZONE = "Asia/Shanghai"
    when = datetime(2026, 11, 26, 3, 30, 12, tzinfo=UTC)
    with time_machine.travel(when, tick=False):
        site_update(site=site_a, user=administrator, reason="Rename", name="East")
        page = client_for(data_manager).get(reverse("audit_log")).content.decode()
    assert "2026-11-26 03:30 UTC" in page
    assert "11:30" not in page


def test_changed_amounts_and_times_read_as_people_write_them(protocol, administrator):
    from decimal import Decimal

    from dosing.models import DoseSchedule

    schedule = DoseSchedule.objects.get(arm__code="PAX")
    schedule.amount = Decimal("150")
    audited_save(schedule, user=administrator, reason="Renal dose for the amendment")
    assert {"field": "amount", "old": "300", "new": "150"} in changes_of(schedule.history.first())
