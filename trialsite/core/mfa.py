"""The second factor: who needs one, what they have enrolled, and verifying it.

Investigators, data managers, monitors and the trial administrator (and any superuser) need a
second factor; a coordinator needs one when a site where they hold the role says so
(`Site.coordinators_require_mfa`), and anyone who has enrolled one is asked for it. The factors
are django-otp devices: an authenticator app (TOTP, RFC 6238), passkeys (WebAuthn,
django-otp-webauthn: the phishing-resistant one) and a set of single-use recovery codes.
`SecondFactorMiddleware` enforces it on every request; the pages are in trialsite/mfa/. Every
enrolment, verification, failure, recovery code used and device removed is an `AccessEvent`.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

import django_otp
import segno
from django.db import transaction
from django.http import HttpRequest
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn.models import WebAuthnCredential

from .access import access_for
from .models import AccessEventKind, Role
from .sessions import access_event_record

ROLES_REQUIRING_MFA = (Role.INVESTIGATOR, Role.DATA_MANAGER, Role.MONITOR, Role.ADMINISTRATOR)
RECOVERY_CODE_COUNT = 10
TOTP_NAME = "Authenticator app"
RECOVERY_NAME = "Recovery codes"
# The password given again before enrolling stays good this long (seconds).
REAUTH_SECONDS = 10 * 60
REAUTH_KEY = "_trial_mfa_reauth_at"
ENROLLED_KEY = "_trial_mfa_enrolled"

# The access review's words for what an account has enrolled.
STATUS_TOTP = "totp"
STATUS_PASSKEY = "passkey"
STATUS_NONE = "none"


def mfa_required(user, *, enrolled: bool | None = None) -> bool:
    """Whether `user` must pass a second factor: by role, by a coordinator's site, or because
    they enrolled one (`enrolled`, when the caller knows it, spares the query). Read once per
    request and kept on the user object."""
    cached = getattr(user, "_trial_mfa_required", None)
    if cached is not None:
        return cached
    required = False
    if user.is_authenticated:
        access = access_for(user)
        required = (
            user.is_superuser
            or access.has(*ROLES_REQUIRING_MFA)
            or access.coordinator_mfa
            or (mfa_enrolled(user) if enrolled is None else enrolled)
        )
    user._trial_mfa_required = required
    return required


def session_enrolled(request: HttpRequest) -> bool:
    """Whether the session's user has a second factor, read once per session (the first request
    after the login) and kept in it: the pages that set one up or remove one update it. A device
    added behind the user's back (the admin) counts from their next login."""
    enrolled = request.session.get(ENROLLED_KEY)
    if enrolled is None:
        enrolled = mfa_enrolled(request.user)
        request.session[ENROLLED_KEY] = enrolled
    return enrolled


def session_enrolled_set(request: HttpRequest, enrolled: bool) -> None:
    request.session[ENROLLED_KEY] = enrolled


def mfa_enrolled(user) -> bool:
    """A confirmed authenticator app or passkey. Recovery codes alone are no enrolment: they are
    the way back when the app is lost."""
    return (
        TOTPDevice.objects.devices_for_user(user, confirmed=True).exists()
        or WebAuthnCredential.objects.filter(user=user, confirmed=True).exists()
    )


def passkeys_of(user) -> int:
    return WebAuthnCredential.objects.filter(user=user, confirmed=True).count()


def mfa_status(totp_count: int, passkey_count: int = 0) -> str:
    """ "totp", "passkey", "totp+passkey" or "none"."""
    held = [STATUS_TOTP] * bool(totp_count) + [STATUS_PASSKEY] * bool(passkey_count)
    return "+".join(held) or STATUS_NONE


# --- Enrolling an authenticator app --------------------------------------------------------------


def reauthenticated(request: HttpRequest, *, now: float | None = None) -> bool:
    """The password was given again within the last REAUTH_SECONDS in this session."""
    at = request.session.get(REAUTH_KEY)
    now = time.time() if now is None else now
    return at is not None and 0 <= now - at < REAUTH_SECONDS


def reauthentication_record(request: HttpRequest) -> None:
    request.session[REAUTH_KEY] = time.time()


@transaction.atomic
def totp_device_start(*, user) -> TOTPDevice:
    """A new, unconfirmed authenticator-app device with a fresh secret; an earlier unconfirmed
    one (an enrolment abandoned half-way) is dropped. Nothing counts until it is confirmed."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    device = TOTPDevice(user=user, name=TOTP_NAME, confirmed=False)
    device.full_clean()
    device.save()
    return device


def totp_pending(user) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()


@dataclass(frozen=True)
class TotpSetup:
    secret: str  # base32, as authenticator apps take it typed in
    qr_data_uri: str  # an SVG drawn here (segno): nothing is fetched from elsewhere


def totp_setup(device: TOTPDevice) -> TotpSetup:
    secret = base64.b32encode(device.bin_key).decode()
    qr = segno.make(device.config_url, error="m")
    return TotpSetup(secret=secret, qr_data_uri=qr.svg_data_uri(scale=5, border=2))


@transaction.atomic
def totp_device_confirm(*, request: HttpRequest, device: TOTPDevice, token: str) -> bool:
    """Confirm the pending device with its first code: it replaces any earlier authenticator
    app of the user, and this session counts as verified by it. False for a wrong code."""
    device = TOTPDevice.objects.select_for_update().filter(pk=device.pk, confirmed=False).first()
    if device is None:
        return False  # confirmed by a first submission already, or replaced since
    if not device.verify_token(_digits(token)):
        access_event_record(
            kind=AccessEventKind.MFA_FAILED,
            user=device.user,
            request=request,
            detail="authenticator app enrolment: wrong code",
        )
        return False
    for old in TOTPDevice.objects.filter(user=device.user, confirmed=True).exclude(pk=device.pk):
        old.delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    django_otp.login(request, device)
    session_enrolled_set(request, True)
    access_event_record(
        kind=AccessEventKind.MFA_ENROLLED,
        user=device.user,
        request=request,
        detail="authenticator app",
    )
    return True


# --- Recovery codes ------------------------------------------------------------------------------


@transaction.atomic
def recovery_codes_issue(*, request: HttpRequest, user) -> list[str]:
    """Ten new single-use recovery codes, replacing any earlier ones (which stop working).
    They are returned to be shown once; django-otp keeps them to check against."""
    device, _created = StaticDevice.objects.get_or_create(
        user=user, name=RECOVERY_NAME, defaults={"confirmed": True}
    )
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=c) for c in codes)
    access_event_record(
        kind=AccessEventKind.MFA_RECOVERY_ISSUED,
        user=user,
        request=request,
        detail=f"{RECOVERY_CODE_COUNT} recovery codes",
    )
    return codes


def recovery_codes_left(user) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


# --- Verifying at login --------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """The outcome of a code given at login. `wait`: seconds before the device takes another
    code, after wrong ones (it refuses any code, right or wrong, until then)."""

    verified: bool
    wait: int = 0


def _digits(token: str) -> str:
    return "".join(str(token or "").split())


def _recovery(token: str) -> str:
    return "".join(str(token or "").split()).replace("-", "").lower()


@transaction.atomic
def mfa_verify(*, request: HttpRequest, user, token: str) -> Verification:
    """Check a code against the user's devices: six digits go to the authenticator app, anything
    else to the recovery codes (a used one is deleted). A code already accepted once is refused
    (django-otp keeps the last accepted time step). On success the session is verified.
    Refuses while the device waits after wrong codes; records every outcome."""
    digits = _digits(token)
    if digits.isdigit() and len(digits) == 6:
        devices = list(
            TOTPDevice.objects.devices_for_user(user, confirmed=True).select_for_update()
        )
        candidate, kind = digits, "authenticator app"
    else:
        devices = list(
            StaticDevice.objects.devices_for_user(user, confirmed=True).select_for_update()
        )
        candidate, kind = _recovery(token), "recovery code"
    allowed = [d for d in devices if d.verify_is_allowed()[0]]
    if devices and not allowed:
        waits = [d.verify_is_allowed()[1] or {} for d in devices]
        until = min((w.get("locked_until") for w in waits if w.get("locked_until")), default=None)
        wait = max(1, round(until.timestamp() - time.time())) if until else 1
        access_event_record(
            kind=AccessEventKind.MFA_FAILED,
            user=user,
            request=request,
            detail=f"{kind}: refused while throttled",
        )
        return Verification(verified=False, wait=wait)
    for device in allowed:
        if device.verify_token(candidate):
            django_otp.login(request, device)
            if isinstance(device, StaticDevice):
                left = device.token_set.count()
                access_event_record(
                    kind=AccessEventKind.MFA_RECOVERY_USED,
                    user=user,
                    request=request,
                    detail=f"{left} recovery codes left",
                )
            else:
                access_event_record(
                    kind=AccessEventKind.MFA_VERIFIED, user=user, request=request, detail=kind
                )
            return Verification(verified=True)
    access_event_record(
        kind=AccessEventKind.MFA_FAILED, user=user, request=request, detail=f"{kind}: wrong code"
    )
    return Verification(verified=False)


# --- Removing ------------------------------------------------------------------------------------


@transaction.atomic
def mfa_devices_remove(*, request: HttpRequest, user) -> int:
    """Remove the user's authenticator app, passkeys and recovery codes (a lost phone or key).
    Whoever still needs a second factor enrols again at their next request. Returns how many
    were removed."""
    removed = 0
    for model in (TOTPDevice, WebAuthnCredential, StaticDevice):
        removed += model.objects.filter(user=user).delete()[1].get(model._meta.label, 0)
    session_enrolled_set(request, False)
    if removed:
        access_event_record(
            kind=AccessEventKind.MFA_DEVICE_REMOVED,
            user=user,
            request=request,
            detail="authenticator app, passkeys and recovery codes",
        )
    return removed
