"""One record's audit history: every version, who, when, why and what, for a record shown on a
participant's page; identifiers never shown, other sites' records a 404."""

import pytest

from enrollment.models import Participant
from trialsite.core.audit import AuditedModel
from trialsite.core.selectors import audited_models


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
