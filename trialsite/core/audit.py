"""The audit trail: django-simple-history records who, when, old and new values, and why.

Every model holding trial data inherits `AuditedModel`. A change to a record that already
exists must carry a reason; `audited_save` is how services write them.
"""

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal

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
    """An audited record was about to be changed without a reason."""


class AuditedModel(models.Model):
    history = HistoricalRecords(inherit=True)

    # The lookup path from a record to its participant (enrollment's Participant): "" for the
    # participant itself, "participant", "scheduled_dose__participant"... None: a record not
    # bound to one participant (the protocol, sites, the concealed randomization lists). The
    # per-record audit history page reaches the participant, and its site, along it.
    participant_path: str | None = None

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        # The guard sits here, not in each service, so that no path (admin, shell, a
        # forgotten service) can change trial data silently.
        if not self._state.adding and not (getattr(self, "_change_reason", "") or "").strip():
            raise MissingChangeReason(
                f"{type(self).__name__} {self.pk}: a change needs a reason (audited_save)."
            )
        super().save(*args, **kwargs)


def audited_save(instance: AuditedModel, *, user=None, reason: str = "") -> AuditedModel:
    """Validate and save; a change to an existing record without a reason is refused."""
    reason = (reason or "").strip()
    if not instance._state.adding and not reason:
        raise ValidationError({"reason": REASON_REQUIRED})
    instance.full_clean()
    instance._change_reason = reason
    if user is not None and user.is_authenticated:
        instance._history_user = user
    instance.save()
    return instance


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
    relations = [f.name for f in model._meta.concrete_fields if f.is_relation]
    for instance in instances:
        if not instance._state.adding:
            raise ValueError("audited_bulk_create makes new records only")
        instance.full_clean(exclude=relations, validate_unique=False, validate_constraints=False)
    return bulk_create_with_history(
        instances,
        model,
        default_user=user if user is not None and user.is_authenticated else None,
        default_change_reason=(reason or "").strip(),
    )


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
