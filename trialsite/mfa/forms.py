from django import forms
from django.contrib.auth import logout
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from trialsite.core.models import AccessEventKind
from trialsite.core.sessions import access_event_record

# Wrong passwords given again in one session before it is ended: whoever holds a session
# does not get to try passwords without limit.
PASSWORD_AGAIN_LIMIT = 5
PASSWORD_FAILURES_KEY = "_trial_mfa_password_failures"  # noqa: S105 - a session key


class PasswordAgainForm(forms.Form):
    """The password given again before a second factor is set up, replaced or removed: a
    session left open on a ward tablet is not enough to change how its owner logs in."""

    password = forms.CharField(
        label=_("Your password, again"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "autofocus": True}),
    )

    def __init__(self, request, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request

    def clean_password(self):
        password = self.cleaned_data["password"]
        user = self.request.user
        if user.check_password(password):
            self.request.session.pop(PASSWORD_FAILURES_KEY, None)
            return password
        failures = self.request.session.get(PASSWORD_FAILURES_KEY, 0) + 1
        access_event_record(
            kind=AccessEventKind.MFA_FAILED,
            user=user,
            request=self.request,
            detail="password given again: wrong",
        )
        if failures >= PASSWORD_AGAIN_LIMIT:
            self.request.trial_session_ended = "too many wrong passwords given again"
            logout(self.request)
        else:
            self.request.session[PASSWORD_FAILURES_KEY] = failures
        raise ValidationError(_("The password is not right."), code="wrong_password")


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code"),
        max_length=32,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autofocus": True, "spellcheck": "false"}
        ),
        help_text=_(
            "The six digits your authenticator app shows now, or one of your recovery codes."
        ),
    )


class FirstCodeForm(forms.Form):
    code = forms.CharField(
        label=_("The code the app shows"),
        max_length=12,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )
