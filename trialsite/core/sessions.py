"""Sessions and the access events around them: when a session starts and must end, and the
record of every login, logout, failed login, lockout and ended session.

The idle timeout is Django's own (SESSION_COOKIE_AGE, renewed by every request); the absolute
lifetime counts from the login, kept in the session, and is checked by
`SessionLifetimeMiddleware`. Each session is registered against its user (`UserSession`), so
that deactivating the user or taking a role away deletes their sessions from whatever store the
session backend uses.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from .models import TYPED_USERNAME_MAX, AccessEvent, AccessEventKind, UserSession
from .proxies import client_address

# Seconds since the epoch (JSON-serialisable) at which the user logged in.
LOGIN_AT_KEY = "_trial_login_at"
# The session key under which the session is registered: a key cycled since (a password
# changed by its own user) is registered again under its new key.
REGISTERED_KEY = "_trial_session_key"

# Why a session was ended by the system, for the audit trail (English: a log, like the reasons).
ENDED_LIFETIME = "absolute session lifetime reached"
ENDED_DEACTIVATED = "account deactivated"
ENDED_ROLE_CHANGED = "role assignment removed or changed"
ENDED_EXPIRED = "account expired"


def absolute_lifetime() -> timedelta:
    return timedelta(hours=settings.SESSION_ABSOLUTE_HOURS)


def session_outlived(login_at: float | None, *, now: datetime) -> bool:
    """A session with no recorded login time (started before the limit existed) has outlived
    it too: the safe reading."""
    if login_at is None:
        return True
    return now.timestamp() - login_at >= absolute_lifetime().total_seconds()


def access_event_record(
    *,
    kind: str,
    user=None,
    username: str = "",
    request: HttpRequest | None = None,
    detail: str = "",
) -> AccessEvent:
    """One access event, written once. A username with no account is kept as typed, truncated
    (a password typed into the wrong box must not reach the log whole)."""
    if user is not None:
        username = user.get_username()
    else:
        # NUL cannot be stored in PostgreSQL text; it is no part of any username.
        username = (username or "").replace("\x00", "")[:TYPED_USERNAME_MAX]
    event = AccessEvent(
        kind=kind,
        at=timezone.now(),
        user=user,
        username=username,
        client_address=_address_of(request),
        detail=detail,
    )
    event.full_clean()
    event.save()
    return event


def _address_of(request: HttpRequest | None) -> str | None:
    """The client's address; None when there is no request or what a proxy passed on is not
    an address (a malformed header must not stop a login from being recorded)."""
    return client_address(request) if request is not None else None


@transaction.atomic
def sessions_end(*, user, detail: str) -> int:
    """Delete every registered session of `user` from the session store; returns how many.
    Idempotent: a second call finds none."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    keys = list(UserSession.objects.filter(user=user).values_list("session_key", flat=True))
    for key in keys:
        store(session_key=key).delete(key)
    UserSession.objects.filter(user=user, session_key__in=keys).delete()
    if keys:
        access_event_record(kind=AccessEventKind.SESSION_ENDED, user=user, detail=detail)
    return len(keys)


def session_register(request: HttpRequest, user) -> None:
    """Register the request's session against `user` under its current key (replacing the key
    it was registered under before, if the key has changed)."""
    if request.session.session_key is None:
        request.session.save()
    key = request.session.session_key
    previous = request.session.get(REGISTERED_KEY)
    if previous and previous != key:
        UserSession.objects.filter(session_key=previous).delete()
    login_at = request.session.get(LOGIN_AT_KEY)
    started = datetime.fromtimestamp(login_at, UTC) if login_at else timezone.now()
    UserSession.objects.update_or_create(
        session_key=key, defaults={"user": user, "started_at": started}
    )
    request.session[REGISTERED_KEY] = key


def session_key_followed(request: HttpRequest) -> None:
    """After a request whose view cycled the session key (update_session_auth_hash), the
    registration follows the new key. No query unless the key changed."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not hasattr(request, "session"):
        return
    registered = request.session.get(REGISTERED_KEY)
    if registered and registered != request.session.session_key:
        session_register(request, user)


# --- Receivers, connected in CoreConfig.ready --------------------------------------------------


@transaction.atomic
def session_started(sender, request, user, **kwargs):
    """At login: the clock of the absolute lifetime starts, the session is registered, and the
    login recorded. Registrations older than the lifetime are dropped: their sessions are over."""
    now = timezone.now()
    request.session[LOGIN_AT_KEY] = now.timestamp()
    UserSession.objects.filter(user=user, started_at__lt=now - absolute_lifetime()).delete()
    session_register(request, user)
    access_event_record(kind=AccessEventKind.LOGIN, user=user, request=request)


@transaction.atomic
def session_finished(sender, request, user, **kwargs):
    """At logout, asked for or forced (`request.trial_session_ended` says why it was forced)."""
    if request.session.session_key:
        UserSession.objects.filter(session_key=request.session.session_key).delete()
    if user is None:
        return  # logging out without being logged in: nothing happened
    ended = getattr(request, "trial_session_ended", "")
    kind = AccessEventKind.SESSION_ENDED if ended else AccessEventKind.LOGOUT
    access_event_record(kind=kind, user=user, request=request, detail=ended)


def login_failed(sender, credentials, request=None, **kwargs):
    """Django passes the credentials with the password already masked; only the username is
    read from them."""
    typed = str(credentials.get(get_user_model().USERNAME_FIELD, "") or "")
    access_event_record(
        kind=AccessEventKind.LOGIN_FAILED, user=_account(typed), username=typed, request=request
    )


def locked_out(sender, request, username, **kwargs):
    typed = str(username or "")
    access_event_record(
        kind=AccessEventKind.LOCKED_OUT, user=_account(typed), username=typed, request=request
    )


def _account(username: str):
    """The account with exactly this username, if any."""
    model = get_user_model()
    return model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()


def user_saved(sender, instance, created, **kwargs):
    if not created and not instance.is_active:
        sessions_end(user=instance, detail=ENDED_DEACTIVATED)


def role_assignment_changed(sender, instance, created=False, **kwargs):
    """A role taken away (deleted) or moved to another site or role ends the holder's
    sessions: their next request meets the login page, and a new login reads the new roles."""
    if not created:
        sessions_end(user=instance.user, detail=ENDED_ROLE_CHANGED)
