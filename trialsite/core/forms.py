from crispy_forms.helper import FormHelper
from crispy_forms.layout import Submit
from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from .accounts import account_expired, expiry_of, today_utc
from .models import AccessEventKind, Site
from .sessions import ENDED_EXPIRED, access_event_record


def add_service_errors(form, exc: ValidationError) -> None:
    """A service's ValidationError onto the form: beside its field when the form has it, so
    the message sits next to what was typed; otherwise at the top of the form."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc)


class ReasonField(forms.CharField):
    """The 'why' of an audited change: required for any change to an existing record."""

    def __init__(self, **kwargs):
        kwargs.setdefault("label", _("Reason for the change"))
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 2}))
        kwargs.setdefault("max_length", 500)
        super().__init__(**kwargs)


class SiteForm(forms.ModelForm):
    reason = ReasonField()

    class Meta:
        model = Site
        fields = ["name", "time_zone", "language", "is_active", "coordinators_require_mfa"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.add_input(Submit("submit", _("Save")))


class AccountExpiryCheck:
    """A login form that also refuses an expired account, saying so (only to whoever gave its
    password: nobody else learns that the account exists)."""

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        expires_on = expiry_of(user)
        if account_expired(expires_on, today=today_utc()):
            access_event_record(
                kind=AccessEventKind.LOGIN_FAILED,
                user=user,
                request=self.request,
                detail=ENDED_EXPIRED,
            )
            raise ValidationError(
                _(
                    "This account expired on %(date)s (UTC). "
                    "Ask the trial administrator to extend it."
                ),
                code="account_expired",
                params={"date": expires_on.isoformat()},
            )


class LoginForm(AccountExpiryCheck, AuthenticationForm):
    pass


class AdminLoginForm(AccountExpiryCheck, AdminAuthenticationForm):
    """The admin's own login page refuses an expired account too."""
