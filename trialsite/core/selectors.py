"""Reads that span models: the audit trail across every audited model; the access review."""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db.models import Count, F, IntegerField, Max, Prefetch, Q, Value
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .accounts import account_expired, expiry_of, today_utc
from .audit import changes_of, memberships_of, values_of
from .mfa import ROLES_REQUIRING_MFA, mfa_status
from .models import AccessEvent, Role, RoleAssignment


@dataclass
class AuditEntry:
    when: datetime
    who: str
    model: str
    object: str
    action: str
    reason: str
    changes: list[dict]
    # The kind of record (app_label.model_name; ACCESS_EVENTS for a login and the like), and
    # the record's id in its kind: the history page's address, when `participant_bound`.
    label: str = ""
    record_id: int | None = None
    participant_bound: bool = False
    study_number: str = ""
    # A collapsed group ("N entries created"): how many records, and the record they belong
    # to (the randomization list of the entries), named by its kind and id.
    count: int = 0
    parent_label: str = ""
    parent_id: int | None = None


def audited_models() -> list:
    """Every model with a history: trial data (`AuditedModel`) and the accounts."""
    return [m for m in apps.get_models() if hasattr(m._meta, "simple_history_manager_attribute")]


# An account is named on the audit page (who changed which account); trial records are not,
# since their names may be a patient's identifier.
NAMED_RECORDS = {"auth.user": "username", "auth.group": "name"}

# The kind the audit page gives the access events (logins, logouts...), beside the models.
ACCESS_EVENTS = "access"

ACTIONS = {"created": "+", "changed": "~", "deleted": "-"}


def _record_label(model, record) -> str:
    name_field = NAMED_RECORDS.get(model._meta.label_lower)
    return f"#{record.id} {getattr(record, name_field)}" if name_field else f"#{record.id}"


def audit_kinds(*, include_concealed: bool = False) -> list:
    """The audited models a reviewer may read, by name: the concealed ones (the randomization
    lists: allocation concealment) only with `include_concealed`, which only the trial
    administrator gets."""
    models = [
        m for m in audited_models() if include_concealed or not getattr(m, "audit_concealed", False)
    ]
    return sorted(models, key=lambda m: str(m._meta.verbose_name))


@dataclass
class AuditFilter:
    """What a reviewer narrows the audit trail to; empty: everything they may read."""

    participant_id: int | None = None
    kind: str = ""  # a model's label_lower, or ACCESS_EVENTS
    username: str = ""
    date_from: date | None = None  # UTC dates, both included
    date_to: date | None = None
    action: str = ""  # "created", "changed" or "deleted"
    include_concealed: bool = False


# Given the history rows of each participant-bound model, the study number of each record:
# {model: [history rows]} -> {(label_lower, record id): study number}. The composition knows
# the participants; the foundation does not.
StudyNumbers = Callable[[dict[type, list]], dict[tuple[str, int], str]]


def _collapse_path(model) -> str | None:
    """The record that the created rows of `model` are grouped under ("N entries created"),
    as a lookup path: the randomization list of the list entries."""
    return getattr(model, "audit_collapse_created", None)


def _participant_lookup(model, participant_id: int) -> Q | None:
    """The history rows of `model` whose record belongs to the participant: through the first
    step's own history (so a deleted visit still counts), then the records as they stand."""
    path = getattr(model, "participant_path", None)
    if path is None:
        return None
    if path == "":
        return Q(id=participant_id)
    first, _sep, rest = path.partition("__")
    if not rest:
        return Q(**{f"{first}_id": participant_id})
    related = model._meta.get_field(first).related_model
    ids = related.history.filter(**{rest: participant_id}).values("id")
    return Q(**{f"{first}_id__in": ids})


class AuditTrail:
    """The audit trail a reviewer reads, newest first, narrowed by an `AuditFilter`; sliced as
    a list (a Paginator pages it): `count()` is one query, a slice a constant number of them
    (one for the slice's keys, then a few per kind of record on it, never per row).

    Changes of every audited model, the access events, and, collapsed into one row each, the
    created rows of a model that declares `audit_collapse_created` (a generated list's
    entries)."""

    def __init__(self, filters: AuditFilter, *, study_numbers: StudyNumbers | None = None):
        self.filters = filters
        self.study_numbers = study_numbers
        self.models = audit_kinds(include_concealed=filters.include_concealed)
        self._keys = self._union()

    def count(self) -> int:
        return self._keys.count() if self._keys is not None else 0

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index):
        if not isinstance(index, slice):
            raise TypeError("AuditTrail pages by slices.")
        if self._keys is None:
            return []
        return self._entries(list(self._keys[index]))

    # The keys: (kind index, when, id, count) of every row, one UNION ALL query.

    def _union(self):
        f = self.filters
        parts = []
        for index, model in enumerate(self.models):
            if f.kind and f.kind != model._meta.label_lower:
                continue
            history = model.history.order_by()
            if f.participant_id is not None:
                lookup = _participant_lookup(model, f.participant_id)
                if lookup is None:
                    continue
                history = history.filter(lookup)
            if f.username:
                history = history.filter(history_user__username__iexact=f.username)
            history = history.filter(**self._dates("history_date"))
            if f.action:
                history = history.filter(history_type=ACTIONS[f.action])
            collapse = _collapse_path(model)
            if collapse:
                grouped = (
                    history.filter(history_type="+")
                    .values(i=F(collapse))
                    .annotate(
                        k=Value(-1 - index, IntegerField()),
                        w=Max("history_date"),
                        n=Count("history_id"),
                    )
                    .values_list("k", "w", "i", "n")
                )
                parts.append(grouped)
                history = history.exclude(history_type="+")
            parts.append(
                history.annotate(
                    k=Value(index, IntegerField()),
                    w=F("history_date"),
                    i=F("history_id"),
                    n=Value(1, IntegerField()),
                ).values_list("k", "w", "i", "n")
            )
        if f.kind in ("", ACCESS_EVENTS) and f.participant_id is None and not f.action:
            events = AccessEvent.objects.order_by().filter(**self._dates("at"))
            if f.username:
                events = events.filter(username__iexact=f.username)
            parts.append(
                events.annotate(
                    k=Value(len(self.models), IntegerField()),
                    w=F("at"),
                    i=F("id"),
                    n=Value(1, IntegerField()),
                ).values_list("k", "w", "i", "n")
            )
        if not parts:
            return None
        keys = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
        return keys.order_by("-w", "-k", "-i")

    def _dates(self, field: str) -> dict:
        f = self.filters
        bounds = {}
        if f.date_from:
            bounds[f"{field}__gte"] = datetime.combine(f.date_from, time.min, tzinfo=UTC)
        if f.date_to:
            bounds[f"{field}__lt"] = datetime.combine(
                f.date_to + timedelta(days=1), time.min, tzinfo=UTC
            )
        return bounds

    # The rows of one slice: a query per kind of record on it.

    def _entries(self, keys: list[tuple]) -> list[AuditEntry]:
        ids = defaultdict(list)
        groups = defaultdict(list)
        for k, when, i, n in keys:
            if k < 0:
                groups[-1 - k].append((i, n, when))
            else:
                ids[k].append(i)
        by_key = {}
        records = {}
        for k, history_ids in ids.items():
            if k == len(self.models):
                for event in AccessEvent.objects.filter(id__in=history_ids):
                    by_key[k, event.id] = _access_entry(event)
                continue
            model = self.models[k]
            rows = list(
                model.history.filter(history_id__in=history_ids).select_related("history_user")
            )
            records[model] = rows
        numbers = {}
        if self.study_numbers is not None:
            bound = {
                m: rows
                for m, rows in records.items()
                if getattr(m, "participant_path", None) is not None
            }
            numbers = self.study_numbers(bound) if bound else {}
        for model, rows in records.items():
            k = self.models.index(model)
            for entry_key, entry in _model_entries(model, rows, numbers):
                by_key[k, entry_key] = entry
        for k, members in groups.items():
            for key, entry in self._group_entries(self.models[k], members):
                by_key[-1 - k, key] = entry
        return [by_key[k, i] for k, _when, i, _n in keys if (k, i) in by_key]

    def _group_entries(self, model, members: list[tuple]):
        """One row per record the created rows are grouped under: "N entries created", by
        whom (one query for the page's groups of this model)."""
        path = _collapse_path(model)
        parent = model
        for step in path.split("__"):
            parent = parent._meta.get_field(step).related_model
        group_ids = [group_id for group_id, _n, _when in members]
        latest = {}
        rows = (
            model.history.filter(history_type="+", **{f"{path}__in": group_ids})
            .values_list(path, "history_user__username", "history_change_reason")
            .order_by("history_date", "history_id")
        )
        for group_id, username, reason in rows:
            latest[group_id] = (username, reason)
        for group_id, n, when in members:
            username, reason = latest.get(group_id, (None, ""))
            yield (
                group_id,
                AuditEntry(
                    when=when,
                    who=username or "system",
                    model=str(model._meta.verbose_name_plural),
                    object=f"{parent._meta.verbose_name} #{group_id}",
                    action=ngettext("%(count)s entry created", "%(count)s entries created", n)
                    % {"count": n},
                    reason=reason or "",
                    changes=[],
                    label=model._meta.label_lower,
                    count=n,
                    parent_label=parent._meta.label_lower,
                    parent_id=group_id,
                ),
            )


def _model_entries(model, records: list, numbers: dict):
    """(history_id, entry) for each history row of one model: its changes against the version
    before it (one query for those), the values it was created with, its memberships (one
    query per many-to-many field)."""
    previous = _previous_versions(model, [r for r in records if r.history_type == "~"])
    created = [r for r in records if r.history_type == "+"]
    changed = [r for r in records if r.history_id in previous]
    memberships = memberships_of(model.history.model, [*created, *changed, *previous.values()])
    label = model._meta.label_lower
    bound = getattr(model, "participant_path", None) is not None
    for r in records:
        if r.history_type == "+":
            changes = values_of(r, memberships)
        elif r.history_id in previous:
            changes = changes_of(r, previous[r.history_id], memberships)
        else:
            changes = []
        number = numbers.get((label, r.id), "")
        yield (
            r.history_id,
            AuditEntry(
                when=r.history_date,
                who=r.history_user.get_username() if r.history_user else "system",
                model=str(model._meta.verbose_name),
                object=number or _record_label(model, r),
                action=r.get_history_type_display(),
                reason=r.history_change_reason or "",
                changes=changes,
                label=label,
                record_id=r.id,
                participant_bound=bound,
                study_number=number,
            ),
        )


def _access_entry(event) -> AuditEntry:
    """A login, logout, failed login, lockout or ended session as an audit entry: who (the
    username, or what was typed), when, what, from which address."""
    return AuditEntry(
        when=event.at,
        who=event.username,
        model=str(AccessEvent._meta.verbose_name),
        object=_("from %(address)s") % {"address": event.client_address}
        if event.client_address
        else "",
        action=event.get_kind_display(),
        reason=event.detail,
        changes=[],
        label=ACCESS_EVENTS,
        record_id=event.id,
    )


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
    mfa: str  # its second factor: "totp", "passkey", "totp+passkey" or "none"
    mfa_required: bool  # its roles (or a coordinator's site) need one


def access_review() -> list[AccessReviewRow]:
    """Every account: which role it holds at which site, whether it may log in (active, not
    expired), when it last did, and its MFA status. Two queries, however many accounts."""
    today = today_utc()
    assignments = RoleAssignment.objects.select_related("site").order_by("role", "site__code")
    users = (
        get_user_model()
        ._default_manager.select_related("account_profile")
        .prefetch_related(Prefetch("role_assignments", queryset=assignments))
        .annotate(
            totp_devices=Count("totpdevice", filter=Q(totpdevice__confirmed=True), distinct=True),
            passkeys=Count(
                "webauthncredential", filter=Q(webauthncredential__confirmed=True), distinct=True
            ),
        )
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
            mfa=mfa_status(user.totp_devices, user.passkeys),
            mfa_required=_mfa_required(user, list(user.role_assignments.all())),
        )
        for user in users
    ]


def _mfa_required(user, assignments: list) -> bool:
    """As `mfa.mfa_required` decides, from the assignments already read (no query per user)."""
    return (
        user.is_superuser
        or user.totp_devices > 0
        or user.passkeys > 0
        or any(
            a.role in ROLES_REQUIRING_MFA
            or (a.role == Role.COORDINATOR and a.site.coordinators_require_mfa)
            for a in assignments
        )
    )
