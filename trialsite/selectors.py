"""Reads that span models: the audit trail across every audited model."""

from dataclasses import dataclass
from datetime import datetime
from heapq import merge

from django.apps import apps

from .audit import AuditedModel, changes_of


@dataclass
class AuditEntry:
    when: datetime
    who: str
    model: str
    object: str
    action: str
    reason: str
    changes: list[dict]


def audited_models() -> list:
    return [m for m in apps.get_models() if issubclass(m, AuditedModel) and not m._meta.abstract]


def recent_changes(*, limit: int = 200, include_concealed: bool = False) -> list[AuditEntry]:
    """The newest `limit` changes across all audited models, newest first.

    Models marked `audit_concealed` (the randomization lists: allocation concealment) are
    left out unless `include_concealed`, which only the trial administrator gets.

    One query per audited model (a fixed number, whatever the data), plus the previous
    version of each changed record for its field-by-field diff.
    """
    per_model = []
    for model in audited_models():
        if getattr(model, "audit_concealed", False) and not include_concealed:
            continue
        records = model.history.select_related("history_user").order_by("-history_date")[:limit]
        per_model.append(
            [
                AuditEntry(
                    when=r.history_date,
                    who=r.history_user.get_username() if r.history_user else "system",
                    model=str(model._meta.verbose_name),
                    object=f"#{r.id}",
                    action=r.get_history_type_display(),
                    reason=r.history_change_reason or "",
                    changes=changes_of(r) if r.history_type == "~" else [],
                )
                for r in records
            ]
        )
    merged = merge(*per_model, key=lambda e: e.when, reverse=True)
    return [entry for _, entry in zip(range(limit), merged, strict=False)]
