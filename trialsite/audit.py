"""The audit trail: django-simple-history records who, when, old and new values, and why.

Every model holding trial data inherits `AuditedModel`. A change to a record that already
exists must carry a reason; `audited_save` is how services write them.
"""

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

REASON_REQUIRED = _("Give a reason for changing this record.")


class MissingChangeReason(Exception):
    """An audited record was about to be changed without a reason."""


class AuditedModel(models.Model):
    history = HistoricalRecords(inherit=True)

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


HIDDEN_VALUE = _("(identifier: value not shown)")


def changes_of(record, previous=None) -> list[dict]:
    """Field-by-field changes of one history record against the one before it (looked up
    when not given).

    Identifier fields (a patient's name, MRN, contact) say that they changed, not what to:
    the audit trail is read by staff of every site."""
    previous = previous if previous is not None else record.prev_record
    if previous is None:
        return []
    delta = record.diff_against(previous)
    fields = {f.name: f for f in record.instance_type._meta.fields}
    changes = []
    for c in delta.changes:
        hidden = getattr(fields.get(c.field), "identifier", False)
        old, new = (HIDDEN_VALUE, HIDDEN_VALUE) if hidden else (c.old, c.new)
        changes.append({"field": c.field, "old": old, "new": new})
    return changes
