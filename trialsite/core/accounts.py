"""Account expiry: an account past its expiry date can neither log in nor keep a session."""

from __future__ import annotations

from datetime import UTC, date

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.utils import timezone

from .models import AccountProfile

UserModel = get_user_model()


def account_expired(expires_on: date | None, *, today: date) -> bool:
    """Expired from 00:00 UTC of its expiry date on; no date, never."""
    return expires_on is not None and today >= expires_on


def today_utc() -> date:
    return timezone.now().astimezone(UTC).date()


def expiry_of(user) -> date | None:
    """The user's expiry date, read from the profile (loaded with the user when it can be)."""
    try:
        return user.account_profile.expires_on
    except AccountProfile.DoesNotExist:
        return None


class AccountBackend(ModelBackend):
    """Django's backend, but a session of an expired account no longer finds its user: the
    next request meets the login page. Logging in with the right password is let through to
    the login form, which says that the account expired (`LoginForm.confirm_login_allowed`),
    where a refusal here could only say that the password was wrong."""

    def get_user(self, user_id):
        # The profile in the same query: no request pays an extra one for this check.
        users = UserModel._default_manager.select_related("account_profile")
        try:
            user = users.get(pk=user_id)
        except UserModel.DoesNotExist:
            return None
        if not self.user_can_authenticate(user):
            return None
        if account_expired(expiry_of(user), today=today_utc()):
            return None
        return user
