"""Sites, roles, and the protocol a site runs."""

import zoneinfo

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .audit import AuditedModel, audit_accounts
from .i18n import localized


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(_("%(value)s is not a known time zone."), params={"value": value})


class Site(AuditedModel):
    code = models.CharField(
        _("code"),
        max_length=10,
        unique=True,
        validators=[RegexValidator(r"^[A-Z]{2,10}$", _("Two to ten capital letters."))],
        help_text=_("Starts every study number of the site, e.g. SHE-0001."),
    )
    name = models.CharField(_("name"), max_length=200)
    time_zone = models.CharField(
        _("time zone"), max_length=64, validators=[validate_time_zone], default="Asia/Shanghai"
    )
    is_active = models.BooleanField(_("active"), default=True)
    language = models.CharField(
        _("language"),
        max_length=10,
        choices=settings.LANGUAGES,
        default="en",
        help_text=_("The pages and e-mails of its staff who have not chosen a language."),
    )
    # Investigators, data managers, monitors and administrators always need a second factor;
    # for coordinators each site decides (a ward's shared tablet may not allow a phone).
    coordinators_require_mfa = models.BooleanField(
        _("coordinators need a second factor"),
        default=False,
        help_text=_(
            "Coordinators of this site must log in with a second factor (an authenticator "
            "app's code or a passkey) as well as their password."
        ),
    )

    class Meta:
        ordering = ["code"]
        verbose_name = _("site")
        verbose_name_plural = _("sites")

    def __str__(self) -> str:
        return f"{self.code} – {self.name}"

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


class Role(models.TextChoices):
    COORDINATOR = "coordinator", _("Research coordinator")
    INVESTIGATOR = "investigator", _("Investigator")
    DATA_MANAGER = "data_manager", _("Data manager")
    MONITOR = "monitor", _("Monitor")
    ADMINISTRATOR = "administrator", _("Trial administrator")


# Roles held at a named site; the others cover all sites. Tuples: the order reaches migrations.
SITE_ROLES = (Role.COORDINATOR, Role.INVESTIGATOR)
ALL_SITE_ROLES = (Role.DATA_MANAGER, Role.MONITOR, Role.ADMINISTRATOR)


class RoleAssignment(AuditedModel):
    """A user holds a role, at one site (coordinator, investigator) or at all of them."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="role_assignments"
    )
    role = models.CharField(_("role"), max_length=20, choices=Role.choices)
    site = models.ForeignKey(
        Site, on_delete=models.PROTECT, null=True, blank=True, related_name="role_assignments"
    )

    class Meta:
        verbose_name = _("role assignment")
        constraints = [
            models.CheckConstraint(
                name="role_site_matches_scope",
                condition=(
                    Q(role__in=[r.value for r in SITE_ROLES], site__isnull=False)
                    | Q(role__in=[r.value for r in ALL_SITE_ROLES], site__isnull=True)
                ),
                violation_error_message=_(
                    "Coordinators and investigators hold their role at a site; "
                    "the other roles cover all sites."
                ),
            ),
            models.UniqueConstraint(
                fields=["user", "role", "site"],
                condition=Q(site__isnull=False),
                name="one_role_per_user_site",
            ),
            models.UniqueConstraint(
                fields=["user", "role"], condition=Q(site__isnull=True), name="one_global_role"
            ),
        ]

    def __str__(self) -> str:
        where = self.site.code if self.site_id else _("all sites")
        return f"{self.user} – {self.get_role_display()} ({where})"


class Protocol(AuditedModel):
    """A protocol definition: everything the trial decided is data here, not code.

    Arms, criteria, dose schedules and visits hang on it from their own apps.
    """

    code = models.CharField(_("code"), max_length=40, unique=True)
    title = models.CharField(_("title"), max_length=300)
    title_zh = models.CharField(_("title (Chinese)"), max_length=300, blank=True)
    version = models.CharField(_("version"), max_length=40)
    is_current = models.BooleanField(_("current"), default=False)
    block_sizes = models.JSONField(_("block sizes"), default=list)
    stratify_by_site = models.BooleanField(_("stratify by site"), default=True)
    severity_strata = models.JSONField(_("severity strata"), default=list)
    reminder_lead_hours = models.JSONField(_("reminder lead times (hours)"), default=list)
    rules = models.JSONField(
        _("rule settings"),
        default=dict,
        help_text=_("Named values the protocol's rules read, e.g. the BMI rounding."),
    )

    class Meta:
        verbose_name = _("protocol")
        constraints = [
            models.UniqueConstraint(
                fields=["is_current"], condition=Q(is_current=True), name="one_current_protocol"
            )
        ]

    def __str__(self) -> str:
        return f"{self.code} v{self.version}"

    def localized_title(self) -> str:
        return localized(self.title, self.title_zh)


class UserPreference(AuditedModel):
    """What a person chose for themselves: kept with the account, so that it follows them from
    one ward tablet to the next."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preference"
    )
    language = models.CharField(_("language"), max_length=10, choices=settings.LANGUAGES)

    class Meta:
        verbose_name = _("user preference")

    def __str__(self) -> str:
        return f"{self.user} – {self.language}"


class WorkerHeartbeat(models.Model):
    """When the Celery worker last ran the beat's heartbeat: proof that beat, broker and
    worker are all alive. Not trial data, so not audited."""

    name = models.CharField(max_length=50, unique=True)
    last_seen = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_seen:%Y-%m-%d %H:%M:%S}"


class SignatureFailure(models.Model):
    """A wrong password given to an electronic signature (21 CFR 11.300(d): attempts at
    unauthorised use are detected and reported). A security log: written once, never changed."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="signature_failures"
    )
    at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("signature failure")

    def __str__(self) -> str:
        return f"{self.user_id} @ {self.at:%Y-%m-%d %H:%M:%S}"


class AccountProfile(AuditedModel):
    """What the trial administrator decides about an account beyond Django's user: until when
    it may be used (a monitor's contract, a visiting investigator)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_profile"
    )
    expires_on = models.DateField(
        _("account expires on"),
        null=True,
        blank=True,
        help_text=_("From this date (00:00 UTC) the account can no longer log in. Empty: never."),
    )

    class Meta:
        verbose_name = _("account profile")

    def __str__(self) -> str:
        return str(self.user)


class AccessEventKind(models.TextChoices):
    LOGIN = "login", _("Logged in")
    LOGOUT = "logout", _("Logged out")
    LOGIN_FAILED = "login_failed", _("Login failed")
    LOCKED_OUT = "locked_out", _("Locked out")
    SESSION_ENDED = "session_ended", _("Session ended")
    MFA_ENROLLED = "mfa_enrolled", _("Second factor enrolled")
    MFA_VERIFIED = "mfa_verified", _("Second factor verified")
    MFA_FAILED = "mfa_failed", _("Second factor failed")
    MFA_RECOVERY_USED = "mfa_recovery_used", _("Recovery code used")
    MFA_RECOVERY_ISSUED = "mfa_recovery_issued", _("Recovery codes issued")
    MFA_DEVICE_REMOVED = "mfa_removed", _("Second factor removed")


# A username that belongs to no account is kept as typed, but no longer than this: a password
# typed into the username box by mistake must not land whole in the audit trail.
TYPED_USERNAME_MAX = 32


class AccessEvent(models.Model):
    """A login, logout, failed login, lockout or ended session (21 CFR 11.10(d), 11.300(d)):
    who, when (UTC), what, from which address. Never the password tried. A security log shown
    on the audit page: written once, never changed."""

    kind = models.CharField(_("event"), max_length=20, choices=AccessEventKind.choices)
    at = models.DateTimeField(_("when"), db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="access_events",
    )
    # The account's username, or what was typed (truncated) when no account has it.
    username = models.CharField(_("username"), max_length=150)
    client_address = models.GenericIPAddressField(_("client address"), null=True, blank=True)
    detail = models.CharField(_("detail"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("access event")
        verbose_name_plural = _("access events")
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.username} {self.kind} @ {self.at:%Y-%m-%d %H:%M:%S}"


class UserSession(models.Model):
    """Which sessions belong to which user, written at login and removed at logout, so that
    deactivating the user or taking a role away can end them at once whatever the session
    backend (the backend's own store cannot be searched by user). Not trial data."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="trial_sessions"
    )
    session_key = models.CharField(max_length=40, unique=True)
    started_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.user_id} @ {self.started_at:%Y-%m-%d %H:%M:%S}"


# Accounts are where access is given and taken away: a superuser flag set, a group joined.
audit_accounts(User, Group)
