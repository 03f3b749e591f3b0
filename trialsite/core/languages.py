"""Which language a person reads: their own choice, else their site's, else the browser's.

A coordinator gets her language on whichever ward tablet she logs in at, and an investigator
who never chose one gets the language of the site he works at. The choice is looked up once at
login and kept in the session, so a page costs no query for it; choosing another language in
the navigation changes the account's preference and the session together.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from .audit import audited_save
from .models import RoleAssignment, UserPreference

SESSION_KEY = "trial_language"
LANGUAGE_CODES = {code for code, _name in settings.LANGUAGES}


def user_language(user) -> str | None:
    """The user's chosen language, else the default of their first site by code; None when
    they have neither (a monitor, a data manager): the browser then decides."""
    chosen = UserPreference.objects.filter(user=user).values_list("language", flat=True).first()
    return chosen or site_language(user)


def site_language(user) -> str | None:
    return (
        RoleAssignment.objects.filter(user=user, site__isnull=False)
        .order_by("site__code")
        .values_list("site__language", flat=True)
        .first()
    )


def emails_by_language(assignments, *, site=None) -> dict[str, list[str]]:
    """The e-mail addresses of the people holding `assignments` (role assignments), grouped by
    the language each reads: their own choice, else the language of the site the message is
    about (else of the site they hold the role at), else the installation's. Inactive accounts
    and empty addresses are left out; each address comes once."""
    rows = (
        assignments.filter(user__is_active=True)
        .exclude(user__email="")
        .order_by("user__email", "site__code")
        .values_list("user__email", "user__preference__language", "site__language")
    )
    groups: dict[str, list[str]] = {}
    seen = set()
    for email, chosen, own_site in rows:
        if email in seen:
            continue
        seen.add(email)
        language = chosen or (site.language if site else own_site) or settings.LANGUAGE_CODE
        groups.setdefault(language, []).append(email)
    return dict(sorted(groups.items()))


@transaction.atomic
def user_language_set(*, user, language: str) -> UserPreference:
    """Keep the user's choice of language. Idempotent: the language already chosen writes
    nothing."""
    if language not in LANGUAGE_CODES:
        raise ValueError(f"unknown language {language!r}")
    preference = UserPreference.objects.select_for_update().filter(user=user).first()
    if preference is None:
        return audited_save(UserPreference(user=user, language=language), user=user)
    if preference.language == language:
        return preference
    preference.language = language
    return audited_save(preference, user=user, reason="Language chosen in the navigation")


def remember_language_at_login(sender, request, user, **kwargs) -> None:
    """At login: the user's language for every page of the session (UserLanguageMiddleware)."""
    language = user_language(user)
    if language:
        request.session[SESSION_KEY] = language
