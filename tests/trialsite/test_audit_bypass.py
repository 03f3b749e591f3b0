"""Nothing bypasses the audit trail (Part 11 §11.10(e)).

Every model with a history (found from the app registry, so a model added later is walked
too) and every way of writing it: a save and a delete, the admin's change and delete and its
bulk action, `QuerySet.update`, `QuerySet.delete`, `bulk_create` and `bulk_update`, through the
default, the base and a related manager. Each leaves a history row with who, the UTC time
and why, or is refused and writes nothing. History rows themselves are changed through no
page of the app, and on PostgreSQL a trigger refuses UPDATE and DELETE on every history table
whoever sends them (test at the bottom).
"""

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.db import InternalError, connection, transaction
from django.db.models import F, Max, ProtectedError, RestrictedError
from django.test import RequestFactory

from tests.trialsite.export_helpers import seed_trial
from tests.trialsite.test_admin import form_data
from trialsite.core.admin import AuditedAdminMixin, ChangeReasonForm
from trialsite.core.audit import (
    HISTORY_TRIGGER,
    AuditedModel,
    MissingChangeReason,
    UnauditedWrite,
    audited_delete,
    history_models,
)
from trialsite.core.selectors import audited_models

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 4, 2, 6, 30, 15, tzinfo=UTC)

AUDITED = sorted(audited_models(), key=lambda m: m._meta.label)
TRIAL_DATA = [m for m in AUDITED if issubclass(m, AuditedModel)]
ACCOUNTS = [m for m in AUDITED if not issubclass(m, AuditedModel)]

# The places in the project's code (tests aside) that write audited rows past the trail, with
# `unaudited_bulk_writes`, and why the trail is kept another way. A new place fails
# `test_every_way_around_the_trail_is_listed_with_its_reason` until it is listed here.
UNAUDITED_WRITES = {
    "arms/services.py": (
        "A randomization list's entries are written in bulk without a history row each: the "
        "list's own history row records their number and SHA-256, no entry is ever changed, "
        "and each use of one is audited as its allocation."
    ),
    "bench/list_generation.py": (
        "The benchmark's floor: the same bulk INSERT of list entries as the service, timed "
        "alone, in the benchmark's own database."
    ),
    "bench/reminder_dispatch.py": (
        "The benchmark empties the doses of its own throwaway database before seeding it."
    ),
}
# Bulk writes that go around `AuditedQuerySet` by design, and why they are not trial data.
NOT_AUDITED_BY_DESIGN = (
    "The outboxes' delivery state (reminders, notices, SAE alerts: claimed, sent, retried with "
    "a conditional QuerySet.update) is not trial data: those models have no history and are "
    "not AuditedModel."
)


def _label(model) -> str:
    return model._meta.label


def _history_rows() -> int:
    return sum(m._default_manager.count() for m in history_models())


def _snapshot(model) -> list:
    return list(model._base_manager.order_by("pk").values())


def _a_field(model) -> str:
    return next(
        f.attname for f in model._meta.concrete_fields if not f.primary_key and not f.is_relation
    )


def _update(manager):
    pk = manager.model._meta.pk.attname
    return manager.all().update(**{pk: F(pk)})


def _delete(manager):
    return manager.all().delete()


def _bulk_create(manager):
    return manager.bulk_create([manager.model()])


def _bulk_update(manager):
    return manager.bulk_update(list(manager.all()[:1]), [_a_field(manager.model)])


BULK_WRITES = {
    "QuerySet.update": _update,
    "QuerySet.delete": _delete,
    "bulk_create": _bulk_create,
    "bulk_update": _bulk_update,
}


@pytest.fixture
def at_now():
    """The clock stands at NOW (first in a test's fixtures, so that logins happen then)."""
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def seeded(at_now, protocol, site_a, site_b, cast):
    """A randomized participant with doses, visits, an AE, a withdrawn one: a row of most
    audited models."""
    from tests.factories import active_randomization_list

    active_randomization_list(administrator=cast["administrator"], per_stratum=3)
    seed_trial(site=site_a, cast=cast)
    return cast


@pytest.fixture
def superuser(seeded):
    administrator = seeded["administrator"]
    administrator.is_staff = administrator.is_superuser = True
    administrator._change_reason = "test: the administrator runs the admin"
    administrator.save()
    return administrator


def test_the_walk_finds_every_model_with_a_history_from_the_registry():
    from django.apps import apps

    concrete = {m for m in apps.get_models() if issubclass(m, AuditedModel)}
    assert set(TRIAL_DATA) == concrete
    assert set(ACCOUNTS) == {User, Group}
    # Every audited model has its history table among those the trigger protects.
    histories = set(history_models())
    for model in AUDITED:
        assert model.history.model in histories, _label(model)


def _managers(model, seeded) -> list:
    """The default and the base manager, and a related manager (a site's participants, a
    user's groups) where the seed gives the model a parent."""
    managers = [model._default_manager, model._base_manager]
    if model is User:
        managers.append(Group.objects.get_or_create(name="Pharmacists")[0].user_set)
    elif model is Group:
        managers.append(seeded["monitor"].groups)
    else:
        relation = next(
            (
                f
                for f in model._meta.concrete_fields
                if f.many_to_one and not f.null and not f.remote_field.hidden
            ),
            None,
        )
        parent = relation and relation.related_model._base_manager.first()
        if parent:
            managers.append(getattr(parent, relation.remote_field.get_accessor_name()))
    return managers


@pytest.mark.django_db
@pytest.mark.parametrize("write", list(BULK_WRITES))
def test_bulk_writes_are_refused_on_every_audited_model_and_write_nothing(seeded, write):
    managers_of = {model: _managers(model, seeded) for model in AUDITED}
    history = _history_rows()
    related = 0
    for model, managers in managers_of.items():
        rows = _snapshot(model)
        related += len(managers) > 2
        for manager in managers:
            with pytest.raises(UnauditedWrite, match=_label(model)):
                BULK_WRITES[write](manager)
        assert _snapshot(model) == rows, _label(model)
    assert _history_rows() == history
    assert related >= 20


@pytest.mark.django_db
def test_most_audited_models_have_a_row_to_walk(seeded):
    """The walks below take a real row of each model: the seed must give most of them one."""
    with_rows = {_label(m) for m in AUDITED if m._base_manager.exists()}
    assert {
        "trialsite.Site",
        "trialsite.RoleAssignment",
        "trialsite.Protocol",
        "enrollment.Participant",
        "enrollment.Screening",
        "enrollment.Consent",
        "enrollment.Withdrawal",
        "arms.Allocation",
        "arms.ListEntry",
        "dosing.ScheduledDose",
        "outcomes.ScheduledVisit",
        "outcomes.VisitRecord",
        "outcomes.AdverseEvent",
        "auth.User",
    } <= with_rows
    assert len(with_rows) >= 20


def _rows_of_every_model():
    return [
        (m, m._base_manager.order_by("pk").first()) for m in AUDITED if m._base_manager.exists()
    ]


@pytest.mark.django_db
def test_a_save_without_a_reason_is_refused_and_with_one_records_who_when_and_why(seeded):
    user = seeded["data_manager"]
    for model, row in _rows_of_every_model():
        history = model.history.count()
        if issubclass(model, AuditedModel):
            with pytest.raises(MissingChangeReason):
                row.save()
            assert model.history.count() == history, _label(model)
        row._change_reason = "Corrected per source document"
        row._history_user = user
        row.save()
        record = model.history.filter(**{model._meta.pk.attname: row.pk}).latest("history_id")
        assert record.history_type == "~", _label(model)
        assert record.history_user == user, _label(model)
        assert record.history_change_reason == "Corrected per source document", _label(model)
        assert record.history_date == NOW, _label(model)
        assert record.history_date.utcoffset() == timedelta(0), _label(model)


class _RolledBack(Exception):
    pass


@pytest.mark.django_db
def test_a_delete_without_a_reason_is_refused_and_with_one_every_row_it_takes_says_why(seeded):
    """Users are never deleted (the trail names them); a record others depend on is
    protected by the database; every other delete, and each record it cascades to, keeps
    who, when and why."""
    user = seeded["data_manager"]
    deleted = 0
    for model, row in _rows_of_every_model():
        rows, history = _snapshot(model), _history_rows()
        with pytest.raises((MissingChangeReason, UnauditedWrite, ProtectedError)):
            row.delete()
        assert (_snapshot(model), _history_rows()) == (rows, history), _label(model)
        marks = {h: h._default_manager.aggregate(m=Max("pk"))["m"] or 0 for h in history_models()}
        try:
            with transaction.atomic():
                audited_delete(row, user=user, reason="Entered for the wrong patient")
                new = [
                    r
                    for h in history_models()
                    if hasattr(h, "history_type")
                    for r in h._default_manager.filter(pk__gt=marks[h])
                ]
                assert new, _label(model)
                for record in new:
                    assert record.history_type == "-", _label(record.instance_type)
                    assert record.history_user == user, _label(record.instance_type)
                    assert record.history_change_reason == "Entered for the wrong patient"
                    assert record.history_date == NOW
                deleted += 1
                raise _RolledBack
        except (_RolledBack, ProtectedError, RestrictedError):
            pass
        except UnauditedWrite:
            assert model is User
        assert _snapshot(model) == rows, _label(model)
    assert deleted >= 5


def _admins_of_audited_models():
    return [(m, a) for m, a in admin.site._registry.items() if m in AUDITED]


def _writes_nothing(model_admin, request) -> bool:
    """A read-only admin (a log the system writes): no add, change or delete."""
    return not (
        model_admin.has_add_permission(request)
        or model_admin.has_change_permission(request)
        or model_admin.has_delete_permission(request)
    )


@pytest.mark.django_db
def test_every_admin_of_an_audited_model_asks_a_reason_or_writes_nothing(superuser):
    request = RequestFactory().get("/admin/")
    request.user = superuser
    registered = _admins_of_audited_models()
    assert {m for m, _a in registered} >= {User, Group}
    for model, model_admin in registered:
        assert "delete_selected" not in model_admin.get_actions(request), _label(model)
        if _writes_nothing(model_admin, request):
            continue
        assert isinstance(model_admin, AuditedAdminMixin), _label(model)
        assert issubclass(model_admin.form, ChangeReasonForm), _label(model)


@pytest.mark.django_db
def test_history_tables_have_no_admin(superuser):
    for model in history_models():
        assert not admin.site.is_registered(model), _label(model)


@pytest.mark.django_db
def test_an_admin_change_without_a_reason_writes_nothing_and_with_one_records_it(
    superuser, client_for
):
    client = client_for(superuser)
    walked = 0
    for model, _model_admin in _admins_of_audited_models():
        row = model._base_manager.order_by("pk").first()
        if row is None:
            continue
        opts = model._meta
        url = f"/admin/{opts.app_label}/{opts.model_name}/{row.pk}/change/"
        page = client.get(url)
        history = model.history.count()
        if not page.context["has_change_permission"]:
            assert client.post(url, {"change_reason": "x"}).status_code == 403, _label(model)
            assert model.history.count() == history, _label(model)
            continue
        data = form_data(page)
        assert client.post(url, data).status_code == 200, _label(model)
        assert model.history.count() == history, _label(model)
        response = client.post(url, data | {"change_reason": "Corrected per the IRB letter"})
        errors = response.status_code == 200 and response.context["adminform"].form.errors
        assert response.status_code == 302, (_label(model), errors)
        record = model.history.filter(**{opts.pk.attname: row.pk}).latest("history_id")
        assert (record.history_user, record.history_change_reason, record.history_date) == (
            superuser,
            "Corrected per the IRB letter",
            NOW,
        ), _label(model)
        walked += 1
    assert walked >= 5


def _calls_in(path: Path, names: set[str]) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in names:
                found.append(name)
    return found


def _project_modules():
    skipped = {".venv", "tests", "node_modules", "migrations", "var", "build"}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if not any(p in skipped or p.startswith(".") for p in parts[:-1]):
            yield path


def test_every_way_around_the_trail_is_listed_with_its_reason():
    """`unaudited_bulk_writes` only where listed; simple-history's bulk helpers and Django's
    private writes (`_update`, `_raw_delete`) only inside the audit module."""
    places = {}
    for path in _project_modules():
        relative = str(path.relative_to(ROOT))
        if relative == "trialsite/core/audit.py":
            continue
        calls = _calls_in(
            path,
            {
                "unaudited_bulk_writes",
                "bulk_create_with_history",
                "bulk_update_with_history",
                "_update",
                "_raw_delete",
            },
        )
        if calls:
            places[relative] = sorted(set(calls))
    assert places == {path: ["unaudited_bulk_writes"] for path in UNAUDITED_WRITES}
    assert all(reason.strip() for reason in UNAUDITED_WRITES.values())
    assert NOT_AUDITED_BY_DESIGN


# --- PostgreSQL: not even a stray script rewrites history ---------------------------------------


def _history_tables():
    return sorted({m._meta.db_table for m in history_models()})


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgresql_refuses_update_and_delete_on_every_history_table(postgres, seeded):
    tables = _history_tables()
    with connection.cursor() as cursor:
        # Installed by `migrate` when the test database was made (PGTRIGGER_INSTALL_ON_MIGRATE),
        # enabled, on every history table.
        cursor.execute(
            "SELECT c.relname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE t.tgname LIKE %s",
            [f"pgtrigger_{HISTORY_TRIGGER}_%"],
        )
        installed = dict(cursor.fetchall())
    assert sorted(installed) == tables
    assert set(installed.values()) == {"O"}
    tried = 0
    for model in history_models():
        table = connection.ops.quote_name(model._meta.db_table)
        pk = connection.ops.quote_name(model._meta.pk.column)
        rows = model._default_manager.count()
        if not rows:
            continue
        # Names from the models, quoted: no data in the SQL.
        update = f"UPDATE {table} SET {pk} = {pk}"  # noqa: S608
        for statement in (update, f"DELETE FROM {table}"):  # noqa: S608
            with (
                pytest.raises(InternalError, match="Cannot update or delete rows"),
                transaction.atomic(),
                connection.cursor() as cursor,
            ):
                cursor.execute(statement)
        assert model._default_manager.count() == rows, table
        tried += 1
    assert tried >= 20


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgresql_flush_still_empties_history_and_keeps_the_triggers(postgres, seeded):
    """TRUNCATE is not a row's UPDATE or DELETE: the test database's flush between tests,
    and `manage.py flush`, still work; the triggers are put back after the flush."""
    from django.core.management import call_command

    assert _history_rows() > 0
    call_command("flush", "--noinput", verbosity=0)
    assert _history_rows() == 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE %s",
            [f"pgtrigger_{HISTORY_TRIGGER}_%"],
        )
        assert cursor.fetchone()[0] == len(_history_tables())
