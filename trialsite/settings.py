"""Settings for the trial site, read from the environment.

Production values are the defaults: DEBUG off, HTTPS only, secure cookies. `make run` and
`make test` set DEBUG=1, which turns on what a local demo needs (see `.env.example`).
"""

import os
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set SECRET_KEY (or DEBUG=1 for a local demo).")
    SECRET_KEY = "local-demo-only-not-secret-" + "x" * 40  # noqa: S105 - DEBUG only

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Patient identifiers (name, hospital number, contact) are encrypted at rest with this
# Fernet key. Without it, a production install refuses to store identifiers (but starts, so
# that `check --deploy` and health checks work before the key is provisioned).
FIELD_ENCRYPTION_KEY = env.str(
    "FIELD_ENCRYPTION_KEY",
    default="ZGVtby1vbmx5LWtleS1ub3Qtc2VjcmV0LTAwMDAwMDA=" if DEBUG else "",
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "crispy_forms",
    "crispy_bootstrap5",
    "django_filters",
    "django_tables2",
    "simple_history",
    # The history tables refuse UPDATE and DELETE on PostgreSQL (trialsite/core/audit.py).
    "pgtrigger",
    "axes",
    "health_check",
    # The second factor: authenticator-app codes (TOTP) and single-use recovery codes.
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    # Passkeys (WebAuthn), the phishing-resistant second factor.
    "django_otp_webauthn",
    # The foundation first, then the apps in the order they stand on each other, then the
    # composition that knows them all.
    "trialsite.core",
    "enrollment",
    "arms",
    "dosing",
    "outcomes",
    "trialsite",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Below WhiteNoise: static files keep their long cache lifetime and need no policy.
    "trialsite.core.middleware.NoStoreMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "trialsite.core.middleware.SessionLifetimeMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    # request.user.is_verified(): whether this session has passed the second factor.
    "django_otp.middleware.OTPMiddleware",
    "trialsite.core.middleware.UserLanguageMiddleware",
    # Before any other check on the user: an unverified session reaches nothing but the
    # second-factor pages and logging out, whatever view a later change adds.
    "trialsite.core.middleware.SecondFactorMiddleware",
    "trialsite.core.middleware.ReadOnlyRoleMiddleware",
    "trialsite.core.middleware.RoleHeldMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "trialsite.urls"
WSGI_APPLICATION = "trialsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "trialsite.core.context_processors.trial_access",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# The embedded default is SQLite; DATABASE_URL=postgres://... switches to PostgreSQL.
VAR_DIR.mkdir(exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers work beside a writer; IMMEDIATE makes concurrent writers queue for the
    # lock (up to the timeout) instead of failing half-way through a transaction.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so that a Celery worker process can share the test database; one
    # per test run, so that two runs on one checkout do not delete each other's.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Authentication -------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # Django's ModelBackend, refusing the sessions of an expired account.
    "trialsite.core.accounts.AccountBackend",
]
# Argon2id first (trialsite/core/passwords.py says why); the others read older hashes.
PASSWORD_HASHERS = [
    "trialsite.core.passwords.Argon2idHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The history tables' triggers are installed after every `migrate` (and the test database's
# creation) from the one list at start-up (trialsite/core/audit.py), not by migrations of
# each app: a history table added later is covered with no migration to write.
PGTRIGGER_MIGRATIONS = False
PGTRIGGER_INSTALL_ON_MIGRATE = True

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Failed logins: locked out after AXES_FAILURE_LIMIT tries for this user from this address.
# Behind TRUSTED_PROXY_COUNT reverse proxies, the address is the one the outermost proxy saw
# (trialsite/proxies.py); with 0, X-Forwarded-For is ignored, so a client cannot forge it.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "trialsite.core.proxies.client_address"
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

# The second factor (trialsite/core/mfa.py). A wrong code doubles the wait before the next
# try on that device (1 s, 2 s, 4 s ...): django-otp's throttling.
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Trialsite NCT05682586")
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1
# Passkeys are a second factor only, never a way round the password (and its lockout). A
# passkey belongs to one host name (the relying party; never an IP address) and is accepted only
# from the listed origins: by default the first of ALLOWED_HOSTS over HTTPS; the demo's is
# http://localhost:8000.
_PASSKEY_HOST = next((h for h in ALLOWED_HOSTS if "*" not in h and not h.startswith(".")), "")
OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False
OTP_WEBAUTHN_RP_NAME = "Trialsite NCT05682586"
OTP_WEBAUTHN_RP_ID = env.str("OTP_WEBAUTHN_RP_ID", default="localhost" if DEBUG else _PASSKEY_HOST)
OTP_WEBAUTHN_ALLOWED_ORIGINS = env.list(
    "OTP_WEBAUTHN_ALLOWED_ORIGINS",
    default=["http://localhost:8000"] if DEBUG else [f"https://{_PASSKEY_HOST}"],
)

# Idle timeout: the session expires this long after the last request.
SESSION_COOKIE_AGE = env.int("SESSION_IDLE_MINUTES", default=30) * 60
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# Absolute lifetime: however active, a session ends this long after its login.
SESSION_ABSOLUTE_HOURS = env.int("SESSION_ABSOLUTE_HOURS", default=12)

# --- HTTPS and cookies: secure unless DEBUG ---------------------------------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
# Everything is served from here and nothing is inline (no <script> body, no style=), so an
# injected script or style does not run. data: images: Bootstrap draws its checkboxes, select
# arrows and close buttons as inline SVG in its stylesheet.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files: served by WhiteNoise from static/, no CDN ----------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "media/"
# Bundles the worker writes for download: a private folder (never served as static or media
# files; the export page hands a file out after checking who asks), each file kept this long.
EXPORT_ROOT = Path(env.str("EXPORT_ROOT", default=str(VAR_DIR / "exports")))
EXPORT_KEEP_DAYS = env.int("EXPORT_KEEP_DAYS", default=7)
# A large export outlives the default task limit below.
EXPORT_TASK_TIME_LIMIT = env.int("EXPORT_TASK_TIME_LIMIT", default=3 * 3600)

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"
DJANGO_TABLES2_TEMPLATE = "django_tables2/bootstrap5.html"

# --- Mail: SMTP in production, files under var/mail for the demo -------------------------------
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default=(
        "django.core.mail.backends.filebased.EmailBackend"
        if DEBUG
        else "django.core.mail.backends.smtp.EmailBackend"
    ),
)
EMAIL_FILE_PATH = Path(env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail")))
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="ctms@localhost")
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")
# How dose reminders go out: e-mail through the mail settings above; an SMS gateway plugs in
# as another class with the same `send` (dosing/channels.py).
DOSING_REMINDER_CHANNEL = env.str("DOSING_REMINDER_CHANNEL", default="dosing.channels.EmailChannel")

# --- Celery ---------------------------------------------------------------------------------
# REDIS_URL switches the broker to Redis; without it, kombu's filesystem transport needs no
# server. The database rows are the schedule; the broker only carries "go and look" messages.
REDIS_URL = env.str("REDIS_URL", default="")
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
BROKER_DIR = Path(env.str("BROKER_DIR", default=str(VAR_DIR / "broker")))
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 100
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Logging: to the console; never log identifiers -------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # pgtrigger logs each history table's trigger at every migrate and test flush.
    "loggers": {"axes": {"level": "WARNING"}, "pgtrigger": {"level": "WARNING"}},
}

# The protocol a fresh install loads.
PROTOCOL_FILE = Path(
    env.str("PROTOCOL_FILE", default=str(BASE_DIR / "protocols" / "nct05682586.toml"))
)

# Probes from the load balancer or compose speak plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
