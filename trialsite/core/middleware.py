from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import logout
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.cache import add_never_cache_headers

from .access import access_for
from .languages import SESSION_KEY
from .mfa import mfa_enrolled, mfa_required, session_enrolled
from .sessions import ENDED_LIFETIME, LOGIN_AT_KEY, session_key_followed, session_outlived

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class ReadOnlyRoleMiddleware:
    """A monitor changes nothing: every unsafe request from a read-only user is refused,
    whatever the view forgets. Logging out, choosing a language and setting up one's own second
    factor are not changes to the trial."""

    ALLOWED_PATHS = ("/accounts/logout/", "/accounts/mfa/", "/i18n/")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (
            request.method not in SAFE_METHODS
            and request.user.is_authenticated
            and not request.path.startswith(self.ALLOWED_PATHS)
            and access_for(request.user).read_only
            and not request.user.is_superuser
        ):
            raise PermissionDenied
        return self.get_response(request)


class RoleHeldMiddleware:
    """A user with no role in the trial sees the home page, which says so, and nothing else:
    every other page is refused, whatever the view would show (an empty list, the protocol).
    Logging out, choosing a language and the admin (which checks its own staff) stay open."""

    ALLOWED_PATHS = ("/accounts/", "/i18n/", "/admin/", "/healthz")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (
            request.user.is_authenticated
            and request.path != "/"
            and not request.path.startswith(self.ALLOWED_PATHS)
            and not request.user.is_superuser
            and not access_for(request.user).roles
        ):
            raise PermissionDenied
        return self.get_response(request)


class SecondFactorMiddleware:
    """A user who needs a second factor (trialsite/core/mfa.py) and whose session has not passed
    it reaches nothing but the page that asks for it (the code, or enrolment for a user with no
    authenticator app yet), logging out, static files and the health check. Every other
    request, GET or POST, any page a later change adds, the admin too, is sent there first,
    keeping where it was going."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if (
            user.is_authenticated
            and not user.is_verified()
            and mfa_required(user, enrolled=session_enrolled(request))
        ):
            target = reverse("mfa:verify" if mfa_enrolled(user) else "mfa:enrol")
            open_paths = (
                target,
                reverse("logout"),
                # The passkey script's messages; the passkey endpoints sit under the target.
                reverse("otp_webauthn:js-i18n-catalog"),
                "/" + settings.STATIC_URL.lstrip("/"),
            )
            if not request.path.startswith(open_paths) and request.path != reverse("healthz"):
                nxt = request.get_full_path() if request.method == "GET" else ""
                return redirect(f"{target}?{urlencode({'next': nxt})}" if nxt else target)
        return self.get_response(request)


class NoStoreMiddleware:
    """Pages show patient data: neither the browser nor a proxy keeps a copy, so that Back on a
    shared ward tablet after logging out brings nothing back. Every page, the login page too;
    static files are answered by WhiteNoise before they get here, and stay cacheable."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        add_never_cache_headers(response)
        return response


class UserLanguageMiddleware:
    """The language the user chose, else their site's (found at login and kept in the session),
    over the browser's, which LocaleMiddleware applied before the user was known."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        language = request.session.get(SESSION_KEY)
        if language:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        return self.get_response(request)


class SessionLifetimeMiddleware:
    """A session ends SESSION_ABSOLUTE_HOURS after its login, however active it has been (the
    idle timeout is Django's session age). The user is logged out before any view runs, so
    LoginRequiredMiddleware sends the request to the login page. After the view, a session
    whose key the view cycled is registered under its new key, so it can still be ended."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated and session_outlived(
            request.session.get(LOGIN_AT_KEY), now=timezone.now()
        ):
            request.trial_session_ended = ENDED_LIFETIME
            logout(request)
        response = self.get_response(request)
        session_key_followed(request)
        return response
