from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST, require_safe

from trialsite.core import mfa

from .forms import CodeForm, FirstCodeForm, PasswordAgainForm


def _next(request) -> str:
    """Where the user was going, if it is a page of this site; else their home page."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("home")


def _password_again(request):
    """The password form, bound on POST; None with a redirect when too many wrong passwords
    ended the session."""
    form = PasswordAgainForm(request, request.POST or None)
    valid = request.method == "POST" and form.is_valid()
    if not request.user.is_authenticated:
        return form, False, redirect("login")
    return form, valid, None


@require_safe
def manage(request):
    user = request.user
    context = {
        "enrolled": mfa.mfa_enrolled(user),
        "required": mfa.mfa_required(user),
        "codes_left": mfa.recovery_codes_left(user),
        "passkeys": mfa.passkeys_of(user),
        "password_form": PasswordAgainForm(request),
    }
    return render(request, "mfa/manage.html", context)


def verify(request):
    """The second step of logging in: a code from the authenticator app, or a recovery code."""
    user = request.user
    if user.is_verified():
        return redirect(_next(request))
    if not mfa.mfa_enrolled(user):
        return redirect(f"{reverse('mfa:enrol')}?{request.GET.urlencode()}".rstrip("?"))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        result = mfa.mfa_verify(request=request, user=user, token=form.cleaned_data["code"])
        if result.verified:
            # A new session key for the session that now carries the second factor.
            request.session.cycle_key()
            return redirect(_next(request))
        if result.wait:
            form.add_error(
                "code",
                ngettext(
                    "Too many wrong codes. Wait %(seconds)s second, then try again.",
                    "Too many wrong codes. Wait %(seconds)s seconds, then try again.",
                    result.wait,
                )
                % {"seconds": result.wait},
            )
        else:
            form.add_error("code", _("This code is not right, or it has been used already."))
    context = {"form": form, "next": _next(request), "passkeys": mfa.passkeys_of(user)}
    return render(request, "mfa/verify.html", context)


def enrol(request):
    """Setting up an authenticator app starts with the password, given again."""
    form, valid, ended = _password_again(request)
    if ended:
        return ended
    if valid:
        mfa.reauthentication_record(request)
        mfa.totp_device_start(user=request.user)
        query = request.GET.urlencode()
        return redirect(reverse("mfa:enrol_app") + (f"?{query}" if query else ""))
    return render(
        request,
        "mfa/enrol.html",
        {"form": form, "required": mfa.mfa_required(request.user), "next": _next(request)},
    )


def enrol_app(request):
    """The QR code and the secret for the app, then its first code to confirm it; the recovery
    codes are shown once, on the page that answers the confirmation."""
    device = mfa.totp_pending(request.user)
    if not mfa.reauthenticated(request) or device is None:
        query = request.GET.urlencode()
        return redirect(reverse("mfa:enrol") + (f"?{query}" if query else ""))
    form = FirstCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if mfa.totp_device_confirm(request=request, device=device, token=form.cleaned_data["code"]):
            request.session.pop(mfa.REAUTH_KEY, None)
            request.session.cycle_key()
            codes = mfa.recovery_codes_issue(request=request, user=request.user)
            return render(
                request,
                "mfa/recovery_codes.html",
                {"codes": codes, "enrolled_now": True, "next": _next(request)},
            )
        form.add_error("code", _("This code is not right. Check the app's clock and try again."))
    done = reverse("mfa:passkey_done")
    context = {
        "form": form,
        "setup": mfa.totp_setup(device),
        "next": _next(request),
        "passkey_done": f"{done}?{request.GET.urlencode()}" if request.GET else done,
    }
    return render(request, "mfa/enrol_app.html", context)


def recovery_codes(request):
    """New recovery codes (the old ones stop working), after the password again."""
    if not mfa.mfa_enrolled(request.user):
        return redirect("mfa:enrol")
    form, valid, ended = _password_again(request)
    if ended:
        return ended
    if valid:
        codes = mfa.recovery_codes_issue(request=request, user=request.user)
        return render(
            request, "mfa/recovery_codes.html", {"codes": codes, "next": reverse("mfa:manage")}
        )
    return render(
        request,
        "mfa/recovery_codes_form.html",
        {"form": form, "codes_left": mfa.recovery_codes_left(request.user)},
    )


@require_POST
def remove(request):
    """Remove the authenticator app and the recovery codes (a lost or replaced phone)."""
    form, valid, ended = _password_again(request)
    if ended:
        return ended
    if not valid:
        context = {
            "enrolled": mfa.mfa_enrolled(request.user),
            "required": mfa.mfa_required(request.user),
            "codes_left": mfa.recovery_codes_left(request.user),
            "passkeys": mfa.passkeys_of(request.user),
            "password_form": form,
        }
        return render(request, "mfa/manage.html", context)
    mfa.mfa_devices_remove(request=request, user=request.user)
    messages.success(
        request, _("The authenticator app, the passkeys and the recovery codes were removed.")
    )
    return redirect("mfa:manage")


def passkey_done(request):
    """Where the passkey script goes once a passkey is registered: the recovery codes, shown
    once, for someone who has none yet; else back to the second-factor page."""
    if not mfa.passkeys_of(request.user):
        return redirect("mfa:enrol")
    if mfa.recovery_codes_left(request.user) == 0 and mfa.reauthenticated(request):
        request.session.pop(mfa.REAUTH_KEY, None)
        codes = mfa.recovery_codes_issue(request=request, user=request.user)
        return render(
            request,
            "mfa/recovery_codes.html",
            {"codes": codes, "enrolled_now": True, "next": _next(request)},
        )
    messages.success(request, _("The passkey is registered."))
    return redirect(_next(request) if request.GET.get("next") else reverse("mfa:manage"))
