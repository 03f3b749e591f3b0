"""The audit trail: django-simple-history records who, when, old and new values, and why.

Every model holding trial data inherits `AuditedModel`. A change to a record that already
exists, or its deletion, must carry a reason; `audited_save` is how services write them.
The writes that skip `save()` and `delete()` (and so the history), `QuerySet.update`,
`delete`, `bulk_create` and `bulk_update`, are refused on audited models: `audited_bulk_create`
makes records in bulk with their history rows, and `unaudited_bulk_writes` is the one named
way around, each use listed with its reason in tests/trialsite/test_audit_bypass.py.
"""

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from decimal import Decimal

import pgtrigger
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.signals import pre_save
from django.forms.models import model_to_dict
from django.utils.translation import gettext_lazy as _
from simple_history import register
from simple_history.models import HistoricalRecords
from simple_history.signals import pre_create_historical_record
from simple_history.utils import bulk_create_with_history, get_m2m_reverse_field_name

REASON_REQUIRED = _("Give a reason for changing this record.")


class MissingChangeReason(Exception):
    """An audited record was about to be changed or deleted without a reason."""


class UnauditedWrite(Exception):
    """A bulk write on audited records, which would change trial data without a history row
    each (who, when, why)."""


# True inside `audited_bulk_create` and `unaudited_bulk_writes` only.
_bulk_writes_allowed: ContextVar[bool] = ContextVar("audit_bulk_writes_allowed", default=False)
# The reason and user of the delete in progress: the records it cascades to (a protocol's
# criteria) are deleted for the same reason, by the same person.
_deletion: ContextVar[tuple[str, object] | None] = ContextVar("audit_deletion", default=None)


class AuditedQuerySet(models.QuerySet):
    """`update`, `delete`, `bulk_create` and `bulk_update` write rows without calling the
    records' `save()` or `delete()`, so without history rows: refused here, whatever code
    calls them (a service, the admin, a shell)."""

    def _refuse(self, what: str) -> None:
        if not _bulk_writes_allowed.get():
            raise UnauditedWrite(
                f"{self.model._meta.label}: {what} would change trial data without its audit "
                "trail. Save or delete each record with its reason (audited_save), or make new "
                "records with audited_bulk_create."
            )

    def update(self, **kwargs):
        self._refuse("QuerySet.update")
        return super().update(**kwargs)

    def delete(self):
        self._refuse("QuerySet.delete")
        return super().delete()

    def bulk_create(self, objs, *args, **kwargs):
        self._refuse("bulk_create")
        return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(self, objs, *args, **kwargs):
        self._refuse("bulk_update")
        return super().bulk_update(objs, *args, **kwargs)


AuditedManager = models.Manager.from_queryset(AuditedQuerySet, "AuditedManager")


@contextmanager
def unaudited_bulk_writes(why: str) -> Iterator[None]:
    """The named way around `AuditedQuerySet`'s refusal, for a write whose audit event is
    recorded another way (`why` says which). Every use in the project's code is listed, with
    its reason, in tests/trialsite/test_audit_bypass.py; a new one fails that test until it
    is listed there."""
    if not why.strip():
        raise ValueError("unaudited_bulk_writes needs the reason the trail is kept otherwise")
    token = _bulk_writes_allowed.set(True)
    try:
        yield
    finally:
        _bulk_writes_allowed.reset(token)


class AuditedModel(models.Model):
    history = HistoricalRecords(inherit=True)
    objects = AuditedManager()

    # The lookup path from a record to its participant (enrollment's Participant): "" for the
    # participant itself, "participant", "scheduled_dose__participant"... None: a record not
    # bound to one participant (the protocol, sites, the concealed randomization lists). The
    # per-record audit history page reaches the participant, and its site, along it.
    participant_path: str | None = None

    class Meta:
        abstract = True
        # Django's own writes (save, related lookups) go through the base manager: the same
        # refusing QuerySet, so that `Model._base_manager.update()` is no way around either.
        base_manager_name = "objects"

    def save(self, *args, **kwargs):
        # The guard sits here, not in each service, so that no path (admin, shell, a
        # forgotten service) can change trial data silently.
        if not self._state.adding and not (getattr(self, "_change_reason", "") or "").strip():
            raise MissingChangeReason(
                f"{type(self).__name__} {self.pk}: a change needs a reason (audited_save)."
            )
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        reason = (getattr(self, "_change_reason", "") or "").strip()
        if not reason:
            raise MissingChangeReason(
                f"{type(self).__name__} {self.pk}: a delete needs a reason (audited_delete)."
            )
        token = _deletion.set((reason, getattr(self, "_history_user", None)))
        try:
            return super().delete(*args, **kwargs)
        finally:
            _deletion.reset(token)


def refusing_base_managers() -> None:
    """Make `AuditedManager` the base manager of every audited model (called from
    CoreConfig.ready). `Meta.base_manager_name` above is not enough: Django takes the base
    manager of a model's first parent, and a model that lists another abstract parent first
    (`SignedRecord, AuditedModel`) would get a plain one, through which `_base_manager.update()`
    would skip the trail."""
    for model in apps.get_models():
        if issubclass(model, AuditedModel) and model._meta.base_manager.name != "objects":
            model._meta.base_manager_name = "objects"
            model._meta._expire_cache()


def deletion_reason_required(sender, instance, **kwargs) -> None:
    """pre_delete of every audited model (connected in CoreConfig.ready): a record deleted
    as part of another's delete (a cascade) gets that delete's reason and user; any other
    delete without a reason is refused, also of the accounts, which cannot inherit
    `AuditedModel`."""
    if (getattr(instance, "_change_reason", "") or "").strip() or _bulk_writes_allowed.get():
        return
    deletion = _deletion.get()
    if deletion is None:
        raise MissingChangeReason(
            f"{type(instance).__name__} {instance.pk}: a delete needs a reason (audited_delete)."
        )
    instance._change_reason, user = deletion
    if user is not None and getattr(instance, "_history_user", None) is None:
        instance._history_user = user


def account_never_deleted(sender, instance, **kwargs) -> None:
    """pre_delete of user accounts (connected in CoreConfig.ready): an account is made
    inactive, never deleted. Every history row names who made it, and deleting that person
    would set the name to nothing on each (SET_NULL): the trail would be rewritten."""
    raise UnauditedWrite(
        f"User {instance.pk}: accounts are made inactive, never deleted (the audit trail "
        "names them)."
    )


def audited_delete(instance, *, user=None, reason: str) -> None:
    """Delete one record, and what it cascades to, with who and why in the audit trail."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": REASON_REQUIRED})
    instance._change_reason = reason
    if user is not None and user.is_authenticated:
        instance._history_user = user
    token = _deletion.set((reason, getattr(instance, "_history_user", None)))
    try:
        instance.delete()
    finally:
        _deletion.reset(token)


def history_models() -> list:
    """Every table of the audit trail: each audited model's history, and the tables that
    keep the many-to-many fields of a history row (an account's groups at each change)."""
    tables = []
    for model in apps.get_models():
        attribute = getattr(model._meta, "simple_history_manager_attribute", None)
        if attribute is None:
            continue
        history_model = getattr(model, attribute).model
        tables.append(history_model)
        tables.extend(
            getattr(history_model, field.name).model for field in history_model._history_m2m_fields
        )
    return tables


# The name of the trigger on each history table (pgtrigger prefixes and hashes it).
HISTORY_TRIGGER = "history_append_only"


def protect_history_tables() -> None:
    """Register, for every history table, a PostgreSQL trigger that refuses UPDATE and DELETE
    whoever sends them (the app, a shell, psql): history is only ever added to. Called at
    start-up, so a history table added later is covered without a word here; pgtrigger
    installs the triggers after each `migrate` (PGTRIGGER_INSTALL_ON_MIGRATE), not through
    migrations of their own. TRUNCATE, which is not a row's UPDATE or DELETE, still empties
    a table: the test database's flush and `manage.py flush` work."""
    protect = pgtrigger.Protect(name=HISTORY_TRIGGER, operation=pgtrigger.Update | pgtrigger.Delete)
    for model in history_models():
        protect.register(model)


def audited_save(
    instance: AuditedModel, *, user=None, reason: str = "", keys_checked_by_database=False
) -> AuditedModel:
    """Validate and save; a change to an existing record without a reason is refused.

    `keys_checked_by_database`: the fields are validated, but the foreign keys, unique and
    check constraints are left to the database (its refusal rolls the transaction back), as
    `audited_bulk_create` does: for a record a service builds from rows it holds locked,
    where each check would be one more query while others wait for the lock."""
    reason = (reason or "").strip()
    if not instance._state.adding and not reason:
        raise ValidationError({"reason": REASON_REQUIRED})
    if keys_checked_by_database:
        _clean_fields_only(instance)
    else:
        instance.full_clean()
    instance._change_reason = reason
    if user is not None and user.is_authenticated:
        instance._history_user = user
    instance.save()
    return instance


def _clean_fields_only(instance: AuditedModel) -> None:
    """full_clean without the checks that query the database (relations, uniques and
    constraints), which the database itself enforces."""
    relations = [f.name for f in instance._meta.concrete_fields if f.is_relation]
    instance.full_clean(exclude=relations, validate_unique=False, validate_constraints=False)


def audited_bulk_create(
    instances: list[AuditedModel], *, user=None, reason: str = ""
) -> list[AuditedModel]:
    """New records of one model in one INSERT, and their history rows in one more, in the
    caller's transaction: for what a service makes many of at once (a participant's doses
    and visits at randomization). Each record is validated field by field first; its foreign
    keys, unique and check constraints are left to the database, whose refusal rolls the
    whole transaction back, where checking them here would cost queries per record."""
    if not instances:
        return []
    model = type(instances[0])
    for instance in instances:
        if not instance._state.adding:
            raise ValueError("audited_bulk_create makes new records only")
        _clean_fields_only(instance)
    token = _bulk_writes_allowed.set(True)  # history rows are written with the records
    try:
        return bulk_create_with_history(
            instances,
            model,
            default_user=user if user is not None and user.is_authenticated else None,
            default_change_reason=(reason or "").strip(),
        )
    finally:
        _bulk_writes_allowed.reset(token)


class AccountEvents(models.Model):
    """What the history of a user account records beyond its fields: that the password
    changed (the hash itself is never copied into the audit trail)."""

    password_changed = models.BooleanField(default=False)

    class Meta:
        abstract = True


# A login stamps last_login and may re-hash the password in a newer format: neither is a
# change anyone made to the account, so neither is a row in the audit trail.
NOT_AN_ACCOUNT_CHANGE = {"last_login"}


class AccountHistory(HistoricalRecords):
    """History of the auth models (users, groups), which cannot inherit `AuditedModel`."""

    def finalize(self, sender, **kwargs):
        super().finalize(sender, **kwargs)
        history_model = getattr(sender, self.manager_name).model
        if issubclass(history_model, AccountEvents):
            pre_save.connect(_note_password_change, sender=sender, weak=False)
            pre_create_historical_record.connect(
                _record_password_change, sender=history_model, weak=False
            )

    def post_save(self, instance, created, using=None, **kwargs):
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and not created:
            if set(update_fields) <= NOT_AN_ACCOUNT_CHANGE:
                return
            if set(update_fields) == {"password"} and instance._password is None:
                return  # a re-hash at login, not a new password
        super().post_save(instance, created, using=using, **kwargs)


def _note_password_change(sender, instance, update_fields=None, **kwargs):
    if instance._state.adding or (update_fields is not None and "password" not in update_fields):
        return
    stored = sender._default_manager.filter(pk=instance.pk).values_list("password", flat=True)
    instance._password_changed = stored.first() != instance.password


def _record_password_change(sender, instance, history_instance, **kwargs):
    # Popped, so that a later row of the same object (a group added) does not repeat it.
    history_instance.password_changed = instance.__dict__.pop("_password_changed", False)


def audit_accounts(user_model, group_model) -> None:
    """Put user accounts and groups into the audit trail, their history tables in the
    foundation's app (label `trialsite`; `app` names its module, trialsite.core).

    Called from trialsite.core.models, so that the history models exist when the app loads."""
    register(
        user_model,
        app="trialsite.core",
        records_class=AccountHistory,
        excluded_fields=["password", "last_login"],
        m2m_fields=["groups", "user_permissions"],
        bases=[AccountEvents],
    )
    register(
        group_model, app="trialsite.core", records_class=AccountHistory, m2m_fields=["permissions"]
    )
    for model in (user_model, group_model):
        _refuse_bulk_writes(model)


def _refuse_bulk_writes(model) -> None:
    """Give a model whose managers are another app's (Django's users and groups) the
    refusals of `AuditedQuerySet`: each manager's class is swapped for a subclass whose
    QuerySet is `AuditedQuerySet`, so `User.objects.update()` and `group.user_set.update()`
    are refused like trial data's. Migrations still see Django's own manager."""
    owners = [base for base in model.__mro__ if hasattr(base, "_meta")]
    for manager in {id(m): m for b in owners for m in b._meta.local_managers}.values():
        manager.__class__ = _refusing(type(manager))
    # Copies of the managers made before the swap (Options.managers) are dropped; the base
    # manager (Django's own lookups, `Model._base_manager`) is the refusing one too.
    model._meta._expire_cache()
    model._meta.base_manager_name = model._meta.default_manager.name


def _refusing(manager_class):
    if issubclass(manager_class._queryset_class, AuditedQuerySet):
        return manager_class
    path = f"{manager_class.__module__}.{manager_class.__qualname__}"

    def deconstruct(self):
        as_manager, _path, qs_path, args, kwargs = manager_class.deconstruct(self)
        return as_manager, path, qs_path, args, kwargs

    def __eq__(self, other):
        # Equal to Django's own manager either way round: no migration of the auth app.
        return (
            isinstance(other, manager_class) and self._constructor_args == other._constructor_args
        )

    queryset_class = type(
        f"Audited{manager_class._queryset_class.__name__}",
        (AuditedQuerySet, manager_class._queryset_class),
        {"__module__": __name__},
    )
    return type(
        f"Audited{manager_class.__name__}",
        (manager_class,),
        {
            "_queryset_class": queryset_class,
            "deconstruct": deconstruct,
            "__eq__": __eq__,
            "__hash__": manager_class.__hash__,
            "__module__": __name__,
        },
    )


HIDDEN_VALUE = _("(identifier: value not shown)")
HIDDEN_PASSWORD = _("(password: value not shown)")
NO_MEMBERS = "—"


def changes_of(record, previous=None, memberships=None) -> list[dict]:
    """Field-by-field changes of one history record against the one before it (looked up
    when not given). Many-to-many fields (a user's groups, a group's permissions) compare
    `memberships` (from `memberships_of`, looked up when not given).

    Identifier fields (a patient's name, MRN, contact) say that they changed, not what to:
    the audit trail is read by staff of every site. So does a password."""
    previous = previous if previous is not None else record.prev_record
    if previous is None:
        return []
    m2m_names = [f.name for f in record._history_m2m_fields]
    delta = record.diff_against(previous, excluded_fields=m2m_names)
    fields = {f.name: f for f in record.instance_type._meta.fields}
    changes = []
    for c in delta.changes:
        hidden = _is_identifier(fields.get(c.field))
        old, new = (HIDDEN_VALUE, HIDDEN_VALUE) if hidden else (_shown(c.old), _shown(c.new))
        changes.append({"field": c.field, "old": old, "new": new})
    if m2m_names:
        if memberships is None:
            memberships = memberships_of(type(record), [previous, record])
        for name in m2m_names:
            old = memberships.get((previous.history_id, name), [])
            new = memberships.get((record.history_id, name), [])
            if old != new:
                changes.append(
                    {
                        "field": name,
                        "old": ", ".join(old) or NO_MEMBERS,
                        "new": ", ".join(new) or NO_MEMBERS,
                    }
                )
    if getattr(record, "password_changed", False):
        changes.append({"field": "password", "old": HIDDEN_PASSWORD, "new": HIDDEN_PASSWORD})
    return sorted(changes, key=lambda c: c["field"])


def values_of(record, memberships=None) -> list[dict]:
    """The values a record was created with, as changes from nothing: each field the history
    keeps (as `changes_of` compares them) that holds a value, its old value empty.

    Identifier fields say that they were given, never their value."""
    m2m_names = {f.name for f in record._history_m2m_fields}
    # Not the record's id: the page names the record by it already.
    names = {f.name for f in record.tracked_fields if f.editable and not f.primary_key}
    names -= m2m_names
    fields = {f.name: f for f in record.instance_type._meta.fields}
    values = []
    for name, value in model_to_dict(record, fields=names).items():
        if value is None or value == "":
            continue
        shown = HIDDEN_VALUE if _is_identifier(fields.get(name)) else _shown(value)
        values.append({"field": name, "old": "", "new": shown})
    if m2m_names:
        if memberships is None:
            memberships = memberships_of(type(record), [record])
        for name in m2m_names:
            members = memberships.get((record.history_id, name), [])
            if members:
                values.append({"field": name, "old": "", "new": ", ".join(members)})
    return sorted(values, key=lambda c: c["field"])


def _is_identifier(field) -> bool:
    return getattr(field, "identifier", False)


def _shown(value):
    """A changed value as a reviewer reads it: 300 mg, not 300.0000 or 3E+2; times in UTC;
    dates as 2026-03-10."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    if isinstance(value, date):
        return value.isoformat()  # 2026-03-10 in either language, as on every other page
    return value


def memberships_of(history_model, records) -> dict[tuple[int, str], list[str]]:
    """(history_id, field name) -> the names of the related objects, sorted, for each
    many-to-many field the history model keeps: one query per field, whatever the records."""
    ids = {r.history_id for r in records}
    members = defaultdict(list)
    if not ids:
        return members
    for field in history_model._history_m2m_fields:
        m2m_model = getattr(history_model, field.name).model
        target = get_m2m_reverse_field_name(field)
        # The related object's name may read its own foreign keys (a permission names its
        # content type): fetched in the same query.
        deeper = [f"{target}__{f.name}" for f in field.related_model._meta.fields if f.many_to_one]
        rows = m2m_model._default_manager.filter(history_id__in=ids).select_related(target, *deeper)
        for row in rows:
            related = getattr(row, target)
            name = str(related) if related is not None else f"#{getattr(row, f'{target}_id')}"
            members[row.history_id, field.name].append(name)
    for names in members.values():
        names.sort()
    return members
