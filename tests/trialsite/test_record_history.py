"""One record's audit history: every version, who, when, why and what, for a record shown on a
participant's page; identifiers never shown, other sites' records a 404."""

from datetime import UTC, date, datetime

import pytest
import time_machine
from django.urls import reverse

from enrollment.models import ConsentRefusal, Participant
from tests.factories import ParticipantFactory
from trialsite.core.audit import AuditedModel, audited_save
from trialsite.core.selectors import audited_models, record_history


def _trial_models() -> list:
    return [m for m in audited_models() if issubclass(m, AuditedModel)]


def _reaches_participant(model, seen=frozenset()) -> bool:
    """Whether a chain of foreign keys (or one-to-ones) leads from the model to a participant."""
    if model is Participant:
        return True
    for field in model._meta.get_fields():
        target = field.related_model
        forward = field.is_relation and (field.many_to_one or field.one_to_one) and field.concrete
        if forward and target not in seen and _reaches_participant(target, seen | {model}):
            return True
    return False


def _model_at_end_of(model, path: str):
    for name in filter(None, path.split("__")):
        field = model._meta.get_field(name)
        assert field.concrete and (field.many_to_one or field.one_to_one), (model, name)
        model = field.related_model
    return model


@pytest.mark.parametrize("model", _trial_models(), ids=lambda m: m._meta.label)
def test_each_record_bound_to_a_participant_says_how_to_reach_it(model):
    """So that a new model holding a participant's data cannot be left without its history
    page; and the concealed randomization lists never have one."""
    path = model.participant_path
    if getattr(model, "audit_concealed", False) or not _reaches_participant(model):
        assert path is None, model
        return
    assert path is not None, f"{model._meta.label} reaches a participant: set participant_path"
    assert _model_at_end_of(model, path) is Participant, (model, path)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model",
    [m for m in _trial_models() if m.participant_path is not None],
    ids=lambda m: m._meta.label,
)
def test_each_participant_path_is_a_lookup_the_database_answers(model):
    lookup = f"{model.participant_path}__site_id" if model.participant_path else "site_id"
    assert list(model._default_manager.filter(**{f"{lookup}__in": [1]})) == []


# --- The history of one record -----------------------------------------------------------------


@pytest.fixture
def refusal(protocol, site_a, coordinator_a):
    """A consent refusal created, corrected with its reason, then deleted with its reason."""
    participant = ParticipantFactory(site=site_a, user=coordinator_a, name="Zhang Wei")
    with time_machine.travel(datetime(2026, 3, 10, 6, 5, tzinfo=UTC), tick=False):
        refusal = audited_save(
            ConsentRefusal(
                participant=participant,
                refused_on=date(2026, 3, 9),
                reason="Family declined",
                recorded_by=coordinator_a,
            ),
            user=coordinator_a,
        )
    with time_machine.travel(datetime(2026, 3, 10, 7, 0, tzinfo=UTC), tick=False):
        refusal.refused_on = date(2026, 3, 10)
        audited_save(refusal, user=coordinator_a, reason="Date per the ward log")
    with time_machine.travel(datetime(2026, 3, 11, 8, 0, tzinfo=UTC), tick=False):
        pk = refusal.pk
        del refusal._history_user  # deleted by a script, not a person: "system"
        refusal._change_reason = "Entered for the wrong patient"
        refusal.delete()
    refusal.pk = pk  # the record is gone; its history keeps its id
    return refusal


def test_each_version_is_listed_oldest_first_with_who_when_what_and_why(refusal, coordinator_a):
    entries = record_history(ConsentRefusal, refusal.pk)
    assert [(e.action, e.who, e.reason) for e in entries] == [
        ("Created", "alice", ""),
        ("Changed", "alice", "Date per the ward log"),
        ("Deleted", "system", "Entered for the wrong patient"),
    ]
    assert [e.when for e in entries] == [
        datetime(2026, 3, 10, 6, 5, tzinfo=UTC),
        datetime(2026, 3, 10, 7, 0, tzinfo=UTC),
        datetime(2026, 3, 11, 8, 0, tzinfo=UTC),
    ]
    participant_id = refusal.participant_id
    assert entries[0].changes == [
        {"field": "participant", "old": "", "new": participant_id},
        {"field": "reason", "old": "", "new": "Family declined"},
        {"field": "recorded_by", "old": "", "new": coordinator_a.pk},
        {"field": "refused_on", "old": "", "new": "2026-03-09"},
    ]
    assert entries[1].changes == [{"field": "refused_on", "old": "2026-03-09", "new": "2026-03-10"}]
    assert entries[2].changes == []


def test_the_page_shows_each_version_in_utc_with_its_reason(refusal, client_for, coordinator_a):
    url = reverse("record_history", args=["enrollment.consentrefusal", refusal.pk])
    response = client_for(coordinator_a).get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Audit history" in page and f"Consent refusal #{refusal.pk}" in page
    for text in ("2026-03-10 06:05 UTC", "2026-03-10 07:00 UTC", "2026-03-11 08:00 UTC"):
        assert text in page
    assert "Date per the ward log" in page and "Entered for the wrong patient" in page
    assert "<strong>refused_on</strong>: <del>2026-03-09</del> → 2026-03-10" in page
    assert "<strong>reason</strong>: Family declined" in page  # as created: no old value
    participant = Participant.objects.get(pk=refusal.participant_id)
    detail = reverse("enrollment:participant_detail", args=[participant.study_number])
    assert f'href="{detail}"' in page
    assert 'class="table table-sm bg-white table-stack"' in page
    assert 'data-label="Reason"' in page


def test_identifiers_are_never_shown_created_changed_or_deleted(
    protocol, site_a, coordinator_a, monitor, client_for
):
    participant = ParticipantFactory(
        site=site_a, user=coordinator_a, name="Zhang Wei", mrn="MRN-7730012", contact="138 0000"
    )
    participant.name = "Zhang Weiming"
    audited_save(participant, user=coordinator_a, reason="Spelling per ID card")
    url = reverse("record_history", args=["enrollment.participant", participant.pk])
    response = client_for(monitor).get(url)
    assert response.status_code == 200
    for identifier in (b"Zhang Wei", b"MRN-7730012", b"7730012", b"138 0000"):
        assert identifier not in response.content
    created, changed = response.context["entries"]
    hidden = "(identifier: value not shown)"
    shown = {c["field"]: c["new"] for c in created.changes}
    assert shown["name"] == shown["mrn"] == shown["contact"] == hidden
    assert changed.changes == [{"field": "name", "old": hidden, "new": hidden}]
    assert changed.reason.encode() in response.content


def test_a_deleted_participant_is_read_from_their_last_version(
    protocol, site_a, coordinator_a, coordinator_b, client_for
):
    participant = ParticipantFactory(site=site_a, user=coordinator_a)
    pk, study_number = participant.pk, participant.study_number
    participant._change_reason = "Registered twice"
    participant.delete()
    url = reverse("record_history", args=["enrollment.participant", pk])
    response = client_for(coordinator_a).get(url)
    assert response.status_code == 200
    assert f"Participant {study_number} (deleted)".encode() in response.content
    assert b"Registered twice" in response.content
    assert client_for(coordinator_b).get(url).status_code == 404


@pytest.mark.parametrize(
    "role,status",
    [
        ("coordinator_a", 200),
        ("investigator_a", 200),
        ("coordinator_b", 404),
        ("data_manager", 200),
        ("monitor", 200),
        ("administrator", 200),
    ],
)
def test_who_may_read_a_records_history(refusal, cast, client_for, role, status):
    url = reverse("record_history", args=["enrollment.consentrefusal", refusal.pk])
    assert client_for(cast[role]).get(url).status_code == status


def test_a_user_without_a_role_is_refused(refusal, client_for):
    from tests.factories import UserFactory

    url = reverse("record_history", args=["enrollment.consentrefusal", refusal.pk])
    response = client_for(UserFactory()).get(url)
    assert response.status_code == 403
    assert refusal.participant.study_number.encode() not in response.content


@pytest.mark.parametrize(
    "label",
    [
        "enrollment.nosuchmodel",
        "nosuchapp.participant",
        "participant",
        "trialsite.site",  # audited, bound to no participant
        "arms.listentry",  # the concealed randomization list
        "arms.randomizationlist",
        "enrollment.consentversion",  # the protocol's
        "dosing.reminder",  # bound to a participant, not audited
        "enrollment.historicalparticipant",
        "auth.user",
    ],
)
def test_an_unknown_or_unbound_model_is_a_404(refusal, administrator, client_for, label):
    assert client_for(administrator).get(f"/audit/{label}/1/").status_code == 404


def test_a_record_that_never_existed_is_a_404(protocol, site_a, administrator, client_for):
    url = reverse("record_history", args=["enrollment.consent", 999])
    assert client_for(administrator).get(url).status_code == 404


def test_the_history_costs_the_same_queries_for_2_versions_as_for_20(
    protocol, site_a, coordinator_a, django_assert_num_queries
):
    participant = ParticipantFactory(site=site_a, user=coordinator_a)

    def versions(count):
        while participant.history.count() < count:
            participant.sex = "M" if participant.sex == "F" else "F"
            audited_save(participant, user=coordinator_a, reason="Corrected")
        return participant.history.count()

    assert versions(2) == 2
    with django_assert_num_queries(1):
        assert len(record_history(Participant, participant.pk)) == 2
    assert versions(20) == 20
    with django_assert_num_queries(1):
        assert len(record_history(Participant, participant.pk)) == 20
