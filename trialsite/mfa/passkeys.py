"""Passkeys (WebAuthn) as a second factor, the phishing-resistant one: django-otp-webauthn's
ceremonies, with the trial's rules around them. Registering asks the password again (within
the same ten minutes as the authenticator app); using one at login verifies the session like an
app's code; both are access events, and so is a failed use. Passkeys never replace the password
(passwordless login is off in settings). The browser script is the package's own, served from
our static files; the page carries no inline script (the CSP forbids it)."""

from django.utils.translation import gettext_lazy as _
from django_otp_webauthn import exceptions
from django_otp_webauthn.views import (
    BeginCredentialAuthenticationView,
    BeginCredentialRegistrationView,
    CompleteCredentialAuthenticationView,
    CompleteCredentialRegistrationView,
)

from trialsite.core import mfa
from trialsite.core.models import AccessEventKind
from trialsite.core.sessions import access_event_record


class PasswordGivenAgain(exceptions.OTPWebAuthnApiError):
    status_code = 403
    default_code = "password_again"
    default_detail = _("Give your password again before registering a passkey.")


class _Registration:
    def check_can_register(self):
        super().check_can_register()
        if not mfa.reauthenticated(self.request):
            raise PasswordGivenAgain()

    def handle_exception(self, exc):
        # A request the package could not even read has no user to record it against.
        request = getattr(self, "request", None)
        if (
            isinstance(exc, exceptions.OTPWebAuthnApiError)
            and request
            and request.user.is_authenticated
        ):
            access_event_record(
                kind=AccessEventKind.MFA_FAILED,
                user=self.request.user,
                request=self.request,
                detail=f"passkey registration: {exc.code}"[:200],
            )
        return super().handle_exception(exc)


class PasskeyRegisterBegin(_Registration, BeginCredentialRegistrationView):
    pass


class PasskeyRegisterComplete(_Registration, CompleteCredentialRegistrationView):
    def post(self, *args, **kwargs):
        response = super().post(*args, **kwargs)
        mfa.session_enrolled_set(self.request, True)
        access_event_record(
            kind=AccessEventKind.MFA_ENROLLED,
            user=self.request.user,
            request=self.request,
            detail="passkey",
        )
        return response


class PasskeyVerifyBegin(BeginCredentialAuthenticationView):
    pass


class PasskeyVerifyComplete(CompleteCredentialAuthenticationView):
    def complete_auth(self, device):
        super().complete_auth(device)
        # A new session key for the session that now carries the second factor.
        self.request.session.cycle_key()
        access_event_record(
            kind=AccessEventKind.MFA_VERIFIED,
            user=self.request.user,
            request=self.request,
            detail="passkey",
        )

    def handle_exception(self, exc):
        # A request the package could not even read has no user to record it against.
        request = getattr(self, "request", None)
        if (
            isinstance(exc, exceptions.OTPWebAuthnApiError)
            and request
            and request.user.is_authenticated
        ):
            access_event_record(
                kind=AccessEventKind.MFA_FAILED,
                user=self.request.user,
                request=self.request,
                detail=f"passkey: {exc.code}"[:200],
            )
        return super().handle_exception(exc)
