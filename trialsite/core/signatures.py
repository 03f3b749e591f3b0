"""Electronic signatures: the password check every e-signature goes through, and the binding
of each signature to the exact values it signed.

Wrong passwords are counted per user; at the same limit and for the same cool-off as failed
logins (AXES_FAILURE_LIMIT, AXES_COOLOFF_TIME), signing is locked for that user and the trial
administrators are told at once.
"""

import hashlib
import hmac
import json
import logging
import math
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import models
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy

from .audit import audited_save
from .languages import emails_by_language
from .models import Role, RoleAssignment, SignatureFailure

logger = logging.getLogger(__name__)


def signature_verify(*, user, password: str) -> None:
    """Raises a ValidationError on the password field unless `password` is the user's own
    and their signing is not locked. Each wrong password is recorded."""
    now = timezone.now()
    since = now - settings.AXES_COOLOFF_TIME
    failures = SignatureFailure.objects.filter(user=user, at__gt=since)
    if failures.count() >= settings.AXES_FAILURE_LIMIT:
        raise ValidationError({"password": _locked_message(failures)})
    if user.check_password(password):
        return
    SignatureFailure.objects.create(user=user, at=now)
    if failures.count() >= settings.AXES_FAILURE_LIMIT:
        _alert_administrators(user, now)
        raise ValidationError({"password": _locked_message(failures)})
    raise ValidationError({"password": _("The password is not correct.")})


def _locked_message(failures) -> str:
    until = failures.order_by("at").first().at + settings.AXES_COOLOFF_TIME
    return _(
        "Too many wrong passwords: electronic signing is locked for you until %(until)s UTC. "
        "The trial administrator has been told."
    ) % {"until": until.strftime("%Y-%m-%d %H:%M")}


def _alert_administrators(user, when) -> None:
    by_language = emails_by_language(RoleAssignment.objects.filter(role=Role.ADMINISTRATOR))
    logger.warning("e-signature locked for user %s after repeated wrong passwords", user.pk)
    values = {
        "user": user.get_username(),
        "n": settings.AXES_FAILURE_LIMIT,
        "until": (when + settings.AXES_COOLOFF_TIME).strftime("%Y-%m-%d %H:%M"),
    }
    try:
        for language, emails in by_language.items():
            with translation.override(language):
                send_mail(
                    _("E-signature locked: %(user)s") % values,
                    _(
                        "%(user)s gave a wrong password to an electronic signature %(n)s times; "
                        "signing is locked for them until %(until)s UTC. If this was not them, "
                        "their account may be in other hands."
                    )
                    % values,
                    None,
                    emails,
                )
    except Exception:  # the lock holds whether or not the mail went out
        logger.exception("could not e-mail the e-signature lock alert")


# --- Signatures bound to what was signed ---------------------------------------------------------
#
# Each signature stores the SHA-256 of a canonical serialisation of the exact values it signs (its
# own manifestation and the record it attests to), with the tag of the canonical form used. A
# signature counts only while its status is valid AND a fresh hash of the current values equals
# the stored one: a change made by any path, a service, the admin or a script, shows at once.
# The services that change a signed record also mark the signature invalidated, with when and
# why, in their transaction; re-signing keeps the earlier manifestation in the record.

# The tag names both the serialisation below and each record's choice of fields (its
# `signed_content`). Changing either is a new tag; records bound under an old tag are re-bound
# by a data migration, or verified by the old form kept beside the new.
CANONICAL_FORM = "trialsite-esig-1"
CANONICAL_FORMS = (CANONICAL_FORM,)


class SignatureStatus(models.TextChoices):
    UNSIGNED = "unsigned", _lazy("Not signed")
    VALID = "valid", _lazy("Valid")
    INVALIDATED = "invalidated", _lazy("Invalidated: changed after signing")


def _plain(value: Any) -> Any:
    """One spelling per value: dates ISO, moments in UTC to the microsecond, decimals without
    trailing zeros, mappings with text keys, sets sorted."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError("a signed value cannot be NaN or infinite")
        return value
    if isinstance(value, datetime):
        if timezone.is_naive(value):
            raise TypeError("a signed moment must carry its time zone")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_plain(item) for item in value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    raise TypeError(f"cannot sign a value of type {type(value).__name__}")


def canonical_form(content: Mapping[str, Any], *, form: str = CANONICAL_FORM) -> bytes:
    """The bytes that are hashed: the form's tag, a newline, then the content as JSON with
    sorted keys, no spaces and UTF-8 text. Raises ValueError for a form it does not know."""
    if form not in CANONICAL_FORMS:
        raise ValueError(f"unknown canonical form {form!r}")
    body = json.dumps(_plain(content), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{form}\n{body}".encode()


def content_hash(content: Mapping[str, Any], *, form: str = CANONICAL_FORM) -> str:
    """SHA-256 (hex) of the canonical form of `content`: plain values only (text, numbers,
    yes/no, dates, moments, decimals, lists and mappings of them)."""
    return hashlib.sha256(canonical_form(content, form=form)).hexdigest()


class SignedRecord(models.Model):
    """What a record signed electronically keeps beside its manifestation (`signer`,
    `printed_name`, `signed_at`, `meaning`, declared by the record): the hash of what was
    signed, its form, the signature's status, and when and why it was invalidated.
    `signed_content()` returns the plain values the signature covers."""

    content_hash = models.CharField(
        _lazy("SHA-256 of the values signed"), max_length=64, blank=True, editable=False
    )
    content_form = models.CharField(
        _lazy("canonical form of the values signed"), max_length=40, blank=True, editable=False
    )
    signature_status = models.CharField(
        _lazy("signature"),
        max_length=12,
        choices=SignatureStatus.choices,
        default=SignatureStatus.UNSIGNED,
    )
    invalidated_at = models.DateTimeField(_lazy("signature invalidated at"), null=True, blank=True)
    invalidated_reason = models.CharField(
        _lazy("why the signature was invalidated"), max_length=300, blank=True
    )
    # Each earlier manifestation, kept when the record is signed again (also in the audit trail).
    earlier_signatures = models.JSONField(
        _lazy("earlier signatures"), default=list, blank=True, editable=False
    )

    class Meta:
        abstract = True
        constraints = [
            models.CheckConstraint(
                condition=Q(signature_status__in=SignatureStatus.values),
                name="%(app_label)s_%(class)s_signature_status",
            ),
            models.CheckConstraint(
                condition=Q(signature_status=SignatureStatus.UNSIGNED)
                | (~Q(content_hash="") & ~Q(content_form="")),
                name="%(app_label)s_%(class)s_signed_has_hash",
            ),
            models.CheckConstraint(
                condition=~Q(signature_status=SignatureStatus.INVALIDATED)
                | Q(invalidated_at__isnull=False),
                name="%(app_label)s_%(class)s_invalidated_has_time",
            ),
        ]

    def signed_content(self) -> dict[str, Any]:
        raise NotImplementedError


def printed_name_of(user) -> str:
    return user.get_full_name() or user.get_username()


def signature_hash_matches(record: SignedRecord, content: Mapping[str, Any] | None = None) -> bool:
    """Whether the stored hash is that of the record's values as they are now."""
    if not record.content_hash or record.content_form not in CANONICAL_FORMS:
        return False
    content = record.signed_content() if content is None else content
    return hmac.compare_digest(record.content_hash, content_hash(content, form=record.content_form))


def signature_is_valid(record: SignedRecord | None) -> bool:
    """A signature counts when it is signed, not invalidated, and what it signed is unchanged."""
    return (
        record is not None
        and record.signature_status == SignatureStatus.VALID
        and signature_hash_matches(record)
    )


def signature_state(record: SignedRecord | None) -> str:
    """unsigned, valid or invalidated, as a page or an export shows it: a stored "valid" whose
    values changed since (by any path) is invalidated."""
    if record is None or record.signature_status == SignatureStatus.UNSIGNED:
        return SignatureStatus.UNSIGNED
    return SignatureStatus.VALID if signature_is_valid(record) else SignatureStatus.INVALIDATED


CHANGED_AFTER_SIGNING = _lazy("changed after signing")


def signature_bind(
    record: SignedRecord,
    *,
    signer,
    signed_at: datetime,
    meaning: str,
    content_of: Callable[[Any], Mapping[str, Any]] | None = None,
) -> None:
    """Sets the manifestation and binds the signature to the record's values, for the caller
    to save (audited) in its transaction. `content_of(record)` is given when part of what is
    signed is not saved yet (rows made with the record); else the record's own
    `signed_content()`. Either is read once the manifestation is set: it is signed too.
    A record signed before keeps that earlier manifestation, and why it was invalidated."""
    if record.signature_status != SignatureStatus.UNSIGNED and record.content_hash:
        reason = record.invalidated_reason or str(CHANGED_AFTER_SIGNING)
        record.earlier_signatures = [
            *record.earlier_signatures,
            _plain(
                {
                    "signer_id": record.signer_id,
                    "printed_name": record.printed_name,
                    "signed_at": record.signed_at,
                    "meaning": record.meaning,
                    "content_hash": record.content_hash,
                    "content_form": record.content_form,
                    "invalidated_at": record.invalidated_at or timezone.now(),
                    "invalidated_reason": reason,
                }
            ),
        ]
    record.signer = signer
    record.printed_name = printed_name_of(signer)
    record.signed_at = signed_at
    record.meaning = str(meaning)
    record.signature_status = SignatureStatus.VALID
    record.invalidated_at = None
    record.invalidated_reason = ""
    record.content_form = CANONICAL_FORM
    content = record.signed_content() if content_of is None else content_of(record)
    record.content_hash = content_hash(content, form=CANONICAL_FORM)


def signature_invalidate(*, record: SignedRecord, user, reason: str) -> bool:
    """Marks a valid signature invalidated, with the time and the reason, in the audit trail;
    its manifestation stays. Call it in the transaction of the change. Returns whether it was
    valid (an unsigned or already invalidated signature is left as it is)."""
    if record.signature_status != SignatureStatus.VALID:
        return False
    record.signature_status = SignatureStatus.INVALIDATED
    record.invalidated_at = timezone.now()
    record.invalidated_reason = reason[:300]
    audited_save(
        record,
        user=user,
        reason=_("Signature invalidated: %(reason)s") % {"reason": reason},
    )
    return True


def signatures_bind_existing(model, history_model, content_of, *, signed: Q, reason: str) -> int:
    """For a data migration: binds each signed row of `model` (the migration's historical
    model) to its values as they stand, with a history row saying why. `content_of(row)` is
    the record's signed content over attributes only. Returns how many were bound."""
    now = timezone.now()
    fields = [f.attname for f in model._meta.concrete_fields]
    bound = 0
    for row in model.objects.filter(signed).iterator():
        row.content_form = CANONICAL_FORM
        row.content_hash = content_hash(content_of(row), form=CANONICAL_FORM)
        row.signature_status = SignatureStatus.VALID
        model.objects.filter(pk=row.pk).update(
            content_form=row.content_form,
            content_hash=row.content_hash,
            signature_status=row.signature_status,
        )
        history_model.objects.create(
            **{name: getattr(row, name) for name in fields},
            history_date=now,
            history_type="~",
            history_change_reason=reason,
        )
        bound += 1
    return bound
