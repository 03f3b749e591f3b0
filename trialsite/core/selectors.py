"""Reads that span models: the audit trail across every audited model; the access review."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from heapq import merge
from itertools import pairwise

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db.models import Prefetch
from django.utils.translation import gettext as _

from .accounts import account_expired, expiry_of, today_utc
from .audit import changes_of, memberships_of, values_of
from .models import AccessEvent, RoleAssignment


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
    """Every model with a history: trial data (`AuditedModel`) and the accounts."""
    return [m for m in apps.get_models() if hasattr(m._meta, "simple_history_manager_attribute")]


# An account is named on the audit page (who changed which account); trial records are not,
# since their names may be a patient's identifier.
NAMED_RECORDS = {"auth.user": "username", "auth.group": "name"}


def _record_label(model, record) -> str:
    name_field = NAMED_RECORDS.get(model._meta.label_lower)
    return f"#{record.id} {getattr(record, name_field)}" if name_field else f"#{record.id}"


def recent_changes(*, limit: int = 200, include_concealed: bool = False) -> list[AuditEntry]:
    """The newest `limit` changes across all audited models, newest first.

    Models marked `audit_concealed` (the randomization lists: allocation concealment) are
    left out unless `include_concealed`, which only the trial administrator gets.

    The access events (logins, logouts, failures, lockouts) are among them.

    Two queries per audited model, whatever the data: the newest records, and the histories
    of the records changed among them (for the field-by-field diffs); and one per
    many-to-many field a model's history keeps (a user's groups), for the memberships.
    """
    per_model = []
    for model in audited_models():
        if getattr(model, "audit_concealed", False) and not include_concealed:
            continue
        records = list(
            model.history.select_related("history_user").order_by("-history_date", "-history_id")[
                :limit
            ]
        )
        previous = _previous_versions(model, [r for r in records if r.history_type == "~"])
        changed = [r for r in records if r.history_id in previous]
        memberships = memberships_of(model.history.model, [*changed, *previous.values()])
        per_model.append(
            [
                AuditEntry(
                    when=r.history_date,
                    who=r.history_user.get_username() if r.history_user else "system",
                    model=str(model._meta.verbose_name),
                    object=_record_label(model, r),
                    action=r.get_history_type_display(),
                    reason=r.history_change_reason or "",
                    changes=changes_of(r, previous[r.history_id], memberships)
                    if r.history_id in previous
                    else [],
                )
                for r in records
            ]
        )
    per_model.append(access_events(limit=limit))
    merged = merge(*per_model, key=lambda e: e.when, reverse=True)
    return [entry for _, entry in zip(range(limit), merged, strict=False)]


def access_events(*, limit: int = 200) -> list[AuditEntry]:
    """The newest logins, logouts, failed logins, lockouts and ended sessions, newest first,
    as audit entries: who (the username, or what was typed), when, what, from which address.
    One query."""
    return [
        AuditEntry(
            when=event.at,
            who=event.username,
            model=str(AccessEvent._meta.verbose_name),
            object=_("from %(address)s") % {"address": event.client_address}
            if event.client_address
            else "",
            action=event.get_kind_display(),
            reason=event.detail,
            changes=[],
        )
        for event in AccessEvent.objects.order_by("-at", "-id")[:limit]
    ]


def record_history(model, pk: int) -> list[AuditEntry]:
    """Every version of one record, oldest first: what it was created with, each change
    against the version before it, its deletion; identifiers never shown.

    One query for the versions (with who made them), and one per many-to-many field the
    model's history keeps, however many versions there are."""
    versions = list(
        model.history.filter(id=pk)
        .select_related("history_user")
        .order_by("history_date", "history_id")
    )
    memberships = memberships_of(model.history.model, versions)
    entries = []
    previous = None
    for version in versions:
        if version.history_type == "+":
            changes = values_of(version, memberships)
        elif previous is not None:
            changes = changes_of(version, previous, memberships)
        else:
            changes = []
        entries.append(
            AuditEntry(
                when=version.history_date,
                who=version.history_user.get_username() if version.history_user else "system",
                model=str(model._meta.verbose_name),
                object=_record_label(model, version),
                action=version.get_history_type_display(),
                reason=version.history_change_reason or "",
                changes=changes,
            )
        )
        previous = version
    return entries


def _previous_versions(model, changed: list) -> dict:
    """history_id -> the version before it, for each changed record, in one query."""
    if not changed:
        return {}
    by_object = defaultdict(list)
    versions = model.history.filter(id__in={r.id for r in changed}).order_by(
        "history_date", "history_id"
    )
    for version in versions:
        by_object[version.id].append(version)
    previous = {}
    for history in by_object.values():
        for before, after in pairwise(history):
            previous[after.history_id] = before
    return previous


# Multi-factor authentication is not built yet: every account says so, rather than nothing.
MFA_NOT_ENROLLED = "not_enrolled"


@dataclass
class AccessReviewRow:
    """One account as a periodic access review reads it."""

    username: str
    full_name: str
    assignments: list  # RoleAssignment, with its site
    is_active: bool
    expires_on: date | None
    expired: bool
    last_login: datetime | None
    mfa: str


def access_review() -> list[AccessReviewRow]:
    """Every account: which role it holds at which site, whether it may log in (active, not
    expired), when it last did, and its MFA status. Two queries, however many accounts."""
    today = today_utc()
    assignments = RoleAssignment.objects.select_related("site").order_by("role", "site__code")
    users = (
        get_user_model()
        ._default_manager.select_related("account_profile")
        .prefetch_related(Prefetch("role_assignments", queryset=assignments))
        .order_by("username")
    )
    return [
        AccessReviewRow(
            username=user.get_username(),
            full_name=user.get_full_name(),
            assignments=list(user.role_assignments.all()),
            is_active=user.is_active,
            expires_on=expiry_of(user),
            expired=account_expired(expiry_of(user), today=today),
            last_login=user.last_login,
            mfa=MFA_NOT_ENROLLED,
        )
        for user in users
    ]
