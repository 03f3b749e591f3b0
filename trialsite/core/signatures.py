"""Electronic signatures: the password check every e-signature goes through.

Wrong passwords are counted per user; at the same limit and for the same cool-off as failed
logins (AXES_FAILURE_LIMIT, AXES_COOLOFF_TIME), signing is locked for that user and the trial
administrators are told at once.
"""

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.utils import timezone, translation
from django.utils.translation import gettext as _

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
