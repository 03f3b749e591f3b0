"""The audit page as a reviewer's tool: filters, study numbers, links to each record's history,
values of created rows, one row for a list's entries, pages, CSV; a constant number of
queries whatever the page or the data."""

import csv
import io
from datetime import UTC, datetime

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from enrollment.models import ConsentRefusal, EligibilitySignoff, Participant
from tests.factories import ParticipantFactory, current_consent_version, ready_participant
from trialsite.core.audit import audited_save
from trialsite.core.models import AccessEvent, Site
from trialsite.core.services import site_update

pytestmark = pytest.mark.django_db

AUDIT = reverse("audit_log")
CSV = reverse("audit_log_csv")


def _entries(client, **params):
    response = client.get(AUDIT, params)
    assert response.status_code == 200
    return response, list(response.context["entries"])


def _refusal(participant, user, reason="Family declined"):
    return audited_save(
        ConsentRefusal(
            participant=participant,
            refused_on=datetime(2026, 3, 9, tzinfo=UTC).date(),
            reason=reason,
            recorded_by=user,
        ),
        user=user,
    )


# --- Study numbers, links, values ---------------------------------------------------------------


def test_participants_records_show_their_study_number_and_link_to_their_history(
    protocol, site_a, coordinator_a, data_manager, client_for
):
    participant = ready_participant(site=site_a, user=coordinator_a)
    signoff = EligibilitySignoff.objects.get(screening__participant=participant)
    response, entries = _entries(client_for(data_manager))
    by_model = {e.model: e for e in entries}
    # One step (the participant), two steps (screening -> participant), the participant itself.
    for model in ("participant", "screening", "eligibility sign-off"):
        entry = by_model[model]
        assert (entry.object, entry.study_number) == (
            participant.study_number,
            participant.study_number,
        )
    assert by_model["eligibility sign-off"].record_id == signoff.pk
    content = response.content.decode()
    history = reverse("record_history", args=["enrollment.eligibilitysignoff", signoff.pk])
    assert f'href="{history}"' in content
    # A record of no participant (a site) names its id and has no history link here.
    site_update(site=site_a, user=data_manager, reason="Rename", name="East")
    _response, entries = _entries(client_for(data_manager), kind="trialsite.site")
    assert entries[0].object == f"#{site_a.pk}" and not entries[0].participant_bound
    assert "/audit/trialsite.site/" not in _response.content.decode()


def test_a_deleted_participants_records_keep_their_study_number(
    protocol, site_a, coordinator_a, data_manager, client_for
):
    participant = ParticipantFactory(site=site_a, user=coordinator_a)
    number = participant.study_number
    refusal = _refusal(participant, coordinator_a)
    refusal._change_reason = "Wrong patient"
    refusal.delete()
    participant._change_reason = "Registered twice"
    participant.delete()
    _response, entries = _entries(client_for(data_manager), kind="enrollment.consentrefusal")
    assert [(e.action, e.object) for e in entries] == [("Deleted", number), ("Created", number)]


def test_created_rows_show_the_values_they_were_created_with_identifiers_hidden(
    protocol, site_a, coordinator_a, monitor, client_for
):
    participant = ParticipantFactory(site=site_a, user=coordinator_a, name="Zhang Wei")
    _refusal(participant, coordinator_a)
    response, entries = _entries(client_for(monitor))
    refusal = next(e for e in entries if e.model == "consent refusal")
    assert {"field": "reason", "old": "", "new": "Family declined"} in refusal.changes
    created = next(e for e in entries if e.model == "participant")
    assert {"field": "name", "old": "", "new": "(identifier: value not shown)"} in created.changes
    assert "Zhang Wei" not in response.content.decode()
    assert "Family declined" in response.content.decode()


# --- Filters ------------------------------------------------------------------------------------


def test_the_participant_filter_keeps_that_participants_records_only(
    protocol, site_a, coordinator_a, data_manager, client_for
):
    mine = ready_participant(site=site_a, user=coordinator_a)
    other = ready_participant(site=site_a, user=coordinator_a)
    _response, entries = _entries(client_for(data_manager), participant=mine.study_number)
    assert entries
    assert {e.study_number for e in entries} == {mine.study_number}
    assert {"participant", "consent", "screening", "eligibility sign-off"} <= {
        e.model for e in entries
    }
    # Typed in lower case, still found.
    _response, lower = _entries(client_for(data_manager), participant=other.study_number.lower())
    assert {e.study_number for e in lower} == {other.study_number}


def test_the_kind_user_and_action_filters(
    protocol, site_a, coordinator_a, administrator, data_manager, client_for
):
    participant = ParticipantFactory(site=site_a, user=coordinator_a)
    refusal = _refusal(participant, coordinator_a)
    refusal.reason = "Family declined after talking"
    audited_save(refusal, user=administrator, reason="Typo")
    client = client_for(data_manager)
    _r, entries = _entries(client, kind="enrollment.consentrefusal")
    assert [e.action for e in entries] == ["Changed", "Created"]
    _r, entries = _entries(client, kind="enrollment.consentrefusal", action="created")
    assert [e.action for e in entries] == ["Created"]
    _r, entries = _entries(client, user="ADAM")  # the administrator, any case
    assert {e.who for e in entries} == {"adam"}
    assert any(e.reason == "Typo" for e in entries)
    # The access events are a kind of their own, and have no created/changed/deleted.
    _r, events = _entries(client, kind="access")
    assert events and {e.model for e in events} == {"access event"}
    _r, entries = _entries(client, action="changed")
    assert "access event" not in {e.model for e in entries}


def test_the_date_range_is_in_utc_dates_both_included(
    protocol, site_a, administrator, data_manager, client_for
):
    for moment, name in [
        (datetime(2026, 3, 9, 23, 59, 59, tzinfo=UTC), "before"),
        (datetime(2026, 3, 10, 0, 0, tzinfo=UTC), "first"),
        (datetime(2026, 3, 11, 23, 59, 59, tzinfo=UTC), "last"),
        (datetime(2026, 3, 12, 0, 0, tzinfo=UTC), "after"),
    ]:
        with time_machine.travel(moment, tick=False):
            site_update(site=site_a, user=administrator, reason=name, name=name)
    _r, entries = _entries(
        client_for(data_manager),
        kind="trialsite.site",
        date_from="2026-03-10",
        date_to="2026-03-11",
    )
    assert [e.reason for e in entries] == ["last", "first"]


@pytest.mark.parametrize(
    "params,field,message",
    [
        ({"participant": "NOPE-999"}, "participant", "No participant has this study number."),
        ({"date_from": "2026-13-01"}, "date_from", "Enter a valid date."),
        (
            {"date_from": "2026-03-11", "date_to": "2026-03-10"},
            "date_to",
            "The end date is before the start date.",
        ),
        (
            {"action": "approved"},
            "action",
            "Select a valid choice. approved is not one of the available choices.",
        ),
        # The concealed lists are not a kind a monitor may choose.
        (
            {"kind": "arms.listentry"},
            "kind",
            "Select a valid choice. arms.listentry is not one of the available choices.",
        ),
    ],
)
def test_bad_input_is_shown_beside_its_field_and_kept(
    protocol, site_a, monitor, client_for, params, field, message
):
    response = client_for(monitor).get(AUDIT, params)
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors == {field: [message]}
    content = response.content.decode()
    assert message.replace("'", "&#x27;") in content
    for value in params.values():
        assert value in content  # the typed input stays in the box


def test_the_concealed_kinds_are_offered_to_the_administrator_only(
    protocol, administrator, monitor, data_manager, client_for
):
    def kinds(user):
        return {
            value for value, _ in client_for(user).get(AUDIT).context["form"]["kind"].field.choices
        }

    assert {"arms.listentry", "arms.randomizationlist", "access"} <= kinds(administrator)
    for user in (monitor, data_manager):
        assert "arms.listentry" not in kinds(user)
        assert "arms.randomizationlist" not in kinds(user)
        assert {"access", "enrollment.participant", "auth.user"} <= kinds(user)


# --- A generated list: one row ------------------------------------------------------------------


def test_a_lists_entries_are_one_row_linking_to_the_list(
    protocol, site_a, site_b, administrator, monitor, client_for
):
    from arms.models import ListEntry
    from tests.factories import active_randomization_list

    randomization_list = active_randomization_list(administrator=administrator, per_stratum=6)
    entries = list(ListEntry.objects.filter(stratum__randomization_list=randomization_list))
    # Lists written before the entries were bulk-written kept a history row for each entry.
    ListEntry.history.bulk_history_create(entries, default_user=administrator)
    response, rows = _entries(client_for(administrator))
    groups = [e for e in rows if e.model == "list entries"]
    assert len(groups) == 1
    assert groups[0].count == len(entries) > 6
    assert groups[0].action == f"{len(entries)} entries created"
    assert (groups[0].parent_label, groups[0].parent_id) == (
        "arms.randomizationlist",
        randomization_list.pk,
    )
    assert groups[0].who == administrator.username
    assert not [e for e in rows if e.model == "list entry"]
    link = reverse("arms:list_detail", args=[randomization_list.pk])
    assert f'href="{link}"' in response.content.decode()
    # Filtered to its kind, the same one row.
    _r, rows = _entries(client_for(administrator), kind="arms.listentry")
    assert [e.count for e in rows] == [len(entries)]
    # Never for a monitor.
    _r, rows = _entries(client_for(monitor))
    assert not [e for e in rows if e.label.startswith("arms.") and "list" in e.label]


# --- Pages --------------------------------------------------------------------------------------


def _site_changes(site, user, n):
    for i in range(n):
        site_update(site=site, user=user, reason=f"edit {i}", name=f"Name {i}")


def test_pages_of_100_newest_first_with_the_filters_kept_in_their_links(
    protocol, site_a, administrator, data_manager, client_for
):
    _site_changes(site_a, administrator, 230)
    client = client_for(data_manager)
    response, first = _entries(client, kind="trialsite.site")
    assert len(first) == 100
    assert [e.reason for e in first[:2]] == ["edit 229", "edit 228"]
    assert response.context["page"].paginator.count == Site.history.count()
    assert "?kind=trialsite.site&page=2" in response.content.decode()
    _r, third = _entries(client, kind="trialsite.site", page=3)
    assert third[-1].action == "Created"
    assert [e.when for e in third] == sorted((e.when for e in third), reverse=True)
    # A page past the end is the last page, not an error.
    _r, past = _entries(client, kind="trialsite.site", page=99)
    assert [e.reason for e in past] == [e.reason for e in third]


def test_the_page_costs_the_same_queries_for_10_and_200_changes_on_any_page(
    protocol, site_a, coordinator_a, administrator, data_manager, client_for
):
    """Participants' records of one and two steps, deleted ones, sites, access events: the
    same number of queries for 10 and for 200 changes of each, on the first page, a later
    one, and filtered by participant. (Narrowed to the days of these changes, so that the
    kinds of record on each page are the same: the protocol's own rows are older.)"""
    client = client_for(data_manager)
    current_consent_version(coordinator_a)  # written once, before these days

    def changes(n):
        with time_machine.travel(datetime(2030, 1, 2, 8, 0, tzinfo=UTC)):
            for i in range(n):
                participant = ready_participant(site=site_a, user=coordinator_a)
                refusal = _refusal(participant, coordinator_a, reason=f"refused {i}")
                refusal._change_reason = f"removed {i}"
                refusal.delete()
                site_update(site=site_a, user=administrator, reason=f"edit {i}", name=f"N{i}")
                AccessEvent.objects.create(kind="login", at=datetime.now(UTC), username=f"u{i}")

    def queries(**params):
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(AUDIT, {"date_from": "2030-01-02", **params})
            assert response.status_code == 200
            assert not response.context["form"].errors
        return len(ctx)

    changes(10)
    first = Participant.objects.order_by("pk").first().study_number
    few = [queries(), queries(page=2), queries(participant=first), queries(user="alice")]
    changes(190)
    more = [queries(), queries(page=7), queries(participant=first), queries(user="alice")]
    assert more == few


# --- CSV ----------------------------------------------------------------------------------------


def test_the_filtered_view_downloads_as_formula_safe_csv(
    protocol, site_a, coordinator_a, administrator, data_manager, client_for
):
    participant = ParticipantFactory(site=site_a, user=coordinator_a, name="Zhang Wei")
    refusal = _refusal(participant, coordinator_a, reason='=HYPERLINK("http://x")')
    refusal.reason = "-2 days"
    audited_save(refusal, user=administrator, reason="@SUM(A1)")
    _site_changes(site_a, administrator, 3)
    response = client_for(data_manager).get(CSV, {"kind": "enrollment.consentrefusal"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-trail-')
    text = response.content.decode("utf-8-sig")
    assert "Zhang Wei" not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["action"] for r in rows] == ["Changed", "Created"]
    changed, created = rows
    assert changed["reason"] == "'@SUM(A1)"
    assert changed["study_number"] == participant.study_number
    assert changed["kind"] == "enrollment.consentrefusal"
    assert changed["who"] == "adam"
    assert changed["changes"] == 'reason: =HYPERLINK("http://x") -> -2 days'
    assert 'reason: =HYPERLINK("http://x")' in created["changes"]
    assert changed["when_utc"].endswith("+00:00")
    # A cell beginning with a formula character is neutralised.
    refusal.reason = "+1"
    audited_save(refusal, user=administrator, reason="Fixed")
    response = client_for(data_manager).get(CSV, {"kind": "enrollment.consentrefusal"})
    newest = next(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert newest["changes"] == "reason: -2 days -> +1"
    refusal.recorded_by = administrator
    refusal.reason = "x"
    audited_save(refusal, user=administrator, reason="-moved")
    response = client_for(data_manager).get(CSV, {"kind": "enrollment.consentrefusal"})
    newest = next(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert newest["reason"] == "'-moved"
