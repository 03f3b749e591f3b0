import datetime

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from trialsite.core.audit import audited_save
from trialsite.core.mfa import TOTP_NAME, mfa_required
from trialsite.core.models import Role, RoleAssignment, Site

DEMO_PASSWORD = "demo-Trial-2026"  # noqa: S105 - printed on purpose; DEBUG installs only
# The authenticator-app secret of every demo user who needs a second factor, published in the
# README (base32 as apps take it: MRSW23ZNN5XGY6JNNZXXILLTMVRXEZLU). DEBUG installs only;
# `manage.py demo_otp <username>` prints the current code for a tester without an app.
DEMO_TOTP_KEY = b"demo-only-not-secret".hex()

# Both sites work in Chinese: their staff get Chinese pages until they choose otherwise.
SITES = [
    ("SHE", "Shanghai East Hospital, Tongji University", "Asia/Shanghai", "zh-hans"),
    ("WUH", "Wuhan Jinyintan Hospital", "Asia/Shanghai", "zh-hans"),
]
USERS = [
    ("coordinator", "Lin", "Coordinator", Role.COORDINATOR, "SHE"),
    ("investigator", "Wang", "Investigator", Role.INVESTIGATOR, "SHE"),
    ("coordinator_wuh", "Zhao", "Coordinator", Role.COORDINATOR, "WUH"),
    ("investigator_wuh", "Chen", "Investigator", Role.INVESTIGATOR, "WUH"),
    ("datamanager", "Li", "Data Manager", Role.DATA_MANAGER, None),
    ("monitor", "Zhou", "Monitor", Role.MONITOR, None),
    ("admin", "Sun", "Administrator", Role.ADMINISTRATOR, None),
]


class Command(BaseCommand):
    def _trial_ready(self, admin) -> None:
        """What a coordinator needs before the first randomization: a consent version in
        force and an active randomization list (in a real trial, the administrator's work)."""
        from arms.models import ListStatus, RandomizationList
        from arms.services import randomization_list_activate, randomization_list_generate
        from enrollment.models import ConsentVersion
        from enrollment.services import consent_version_create

        # Version 1.0 in each language the patients read: the one signed is in the record.
        for language in ("en", "zh-hans"):
            if not ConsentVersion.objects.filter(language=language).exists():
                consent_version_create(
                    user=admin,
                    version="1.0",
                    language=language,
                    irb_approval_date=datetime.date(2026, 1, 5),
                    effective_date=datetime.date(2026, 1, 15),
                )
        if not RandomizationList.objects.filter(status=ListStatus.ACTIVE).exists():
            generated = randomization_list_generate(user=admin, per_stratum=60, note="demo")
            randomization_list_activate(user=admin, randomization_list=generated)

    help = "Create two demo sites and one user per role (DEBUG installs only). Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="run even with DEBUG off")

    @transaction.atomic
    def handle(self, *args, force=False, **options):
        if not settings.DEBUG and not force:
            raise CommandError("Demo users have a published password: DEBUG installs only.")
        sites = {}
        for code, name, tz, language in SITES:
            site = Site.objects.filter(code=code).first()
            sites[code] = site or audited_save(
                Site(code=code, name=name, time_zone=tz, language=language)
            )
        for username, first, last, role, site_code in USERS:
            user, created = User.objects.get_or_create(
                username=username,
                defaults={"first_name": first, "last_name": last, "email": f"{username}@localhost"},
            )
            if created:
                user.set_password(DEMO_PASSWORD)
                user.is_staff = user.is_superuser = role == Role.ADMINISTRATOR
                user.save()
            site = sites[site_code] if site_code else None
            if not RoleAssignment.objects.filter(user=user, role=role, site=site).exists():
                audited_save(RoleAssignment(user=user, role=role, site=site))
        for username, *_rest in USERS:
            user = User.objects.get(username=username)
            if mfa_required(user) and not TOTPDevice.objects.filter(user=user).exists():
                TOTPDevice.objects.create(
                    user=user, name=TOTP_NAME, key=DEMO_TOTP_KEY, confirmed=True
                )
        self._trial_ready(User.objects.get(username="admin"))
        self.stdout.write(f"Demo users (password for all: {DEMO_PASSWORD}):")
        for username, _first, _last, role, site_code in USERS:
            self.stdout.write(f"  {username:<18} {Role(role).label} ({site_code or 'all sites'})")
        self.stdout.write(
            "Second factor (all but the coordinators): `manage.py demo_otp <username>` prints "
            "the code, or add the secret MRSW23ZNN5XGY6JNNZXXILLTMVRXEZLU to an authenticator app."
        )
