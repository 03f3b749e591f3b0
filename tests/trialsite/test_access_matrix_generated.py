"""The access matrix generated from the URLconf: every URL pattern of the project, for every
role, a user with no role and a visitor not logged in, on an object of the user's own site and
of another site, by GET and by POST, with real objects.

Each URL name has its expectation written in EXPECTATIONS; a pattern without one fails ("add
the expectation for <name>"), so a new view cannot be forgotten. The rules checked on every
request, whatever the table says:
- another site's object is a 404 for a site-held role (coordinator, investigator): never a 200;
- a visitor who is not logged in is sent to the login page, GET or POST;
- a role outside a page's roles gets 403 (the view refuses on role before it looks the object
  up: `role_required`) or 404 (the lookup scoped to the role's sites finds nothing), as written
  for each page, on its own site's object and on another's;
- a monitor's POST, and that of a user with no role, is refused (403) everywhere;
- no page a site-held role opens shows another site's study number, and none a user with no
  role opens shows any.

A POST sends an empty body: a permitted POST fails validation (200) or does the one harmless
thing it does with no input, and each test's writes are rolled back. The ward (two sites' worth
of participants, doses, visits, adverse events) is built once for the module, in a transaction
rolled back at its end.
"""

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import pytest
import time_machine
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from dosing.models import Reminder
from enrollment.models import ConsentVersion, Participant
from outcomes.models import ScheduledVisit
from outcomes.services import adverse_event_record, visit_record
from tests.conftest import verified_login
from tests.factories import SiteFactory, UserFactory, user_with_role
from tests.trialsite.ward import Ward, build_ward
from trialsite.core.audit import audited_save
from trialsite.core.models import Role
from trialsite.core.protocol import definition_from_toml
from trialsite.core.services import protocol_load
from trialsite.exports.bundle import bundle_build, export_request
from trialsite.exports.columns import ExportOptions

COORDINATOR, INVESTIGATOR = "coordinator", "investigator"
DATA_MANAGER, MONITOR, ADMINISTRATOR = "data_manager", "monitor", "administrator"
NO_ROLE, ANONYMOUS = "no_role", "anonymous"
ROLES = [COORDINATOR, INVESTIGATOR, DATA_MANAGER, MONITOR, ADMINISTRATOR, NO_ROLE, ANONYMOUS]
# Held at site A only: site B's objects are another site's.
SITE_HELD = {COORDINATOR, INVESTIGATOR}
# Refused every POST by the read-only middleware: a monitor, and a user with no role.
READ_ONLY = {MONITOR, NO_ROLE}
ALL = frozenset({COORDINATOR, INVESTIGATOR, DATA_MANAGER, MONITOR, ADMINISTRATOR})
SITE_STAFF = frozenset(SITE_HELD)
ADMIN_ONLY = frozenset({ADMINISTRATOR})

# Open to anyone, logged in or not (tests/trialsite/test_login_required.py); Django's admin
# (/admin/) protects itself and is left out.
PUBLIC = {"login", "logout", "healthz", "set_language", "language_set"}


@dataclass
class SiteWard(Ward):
    """One site's objects: the ward's, and a visit, a recorded visit, an adverse event and a
    dose reminder."""

    code: str = ""
    allocated_pk: int = 0
    open_visit: int = 0
    recorded_visit: int = 0
    adverse_event: int = 0
    reminder: int = 0
    consent_version: int = 0
    export: int = 0


@dataclass(frozen=True)
class Expect:
    """Who may open a page (GET) and post to it (a read-only user never may); what the others
    get.

    `kwargs` gives the URL's arguments for one site's ward. `site_scoped`: the argument is an
    object of one site (checked at both sites); otherwise it belongs to the whole trial (or
    there is none) and the page is checked once. `refused`: what a role outside `get`
    receives: 403 where the view refuses on role before looking the object up, 404 where the
    lookup scoped to the user's sites (for that role) finds nothing. `post_only`: GET is 405."""

    get: frozenset[str]
    refused: int
    kwargs: Callable[[SiteWard], dict] | None = None
    site_scoped: bool = False
    post_only: bool = False
    get_only: bool = False
    # The user's own second factor (trialsite/mfa): open to every logged-in user, whatever
    # their roles, and posted to by read-only ones too (it changes how they log in, no data).
    own_account: bool = False
    # An own-account endpoint that refuses (403), GET or POST, until the password is given
    # again (passkey registration checks it before it looks at the method).
    password_first: bool = False


def _participant(attr: str) -> Callable[[SiteWard], dict]:
    return lambda w: {"study_number": getattr(w, attr)}


def _pk(attr: str) -> Callable[[SiteWard], dict]:
    return lambda w: {"pk": getattr(w, attr)}


def _site(w: SiteWard) -> dict:
    return {"code": w.code}


def _scoped(get, refused, kwargs, **more) -> Expect:
    return Expect(frozenset(get), refused, kwargs, site_scoped=True, **more)


def _trial(get, refused, kwargs=None, **more) -> Expect:
    return Expect(frozenset(get), refused, kwargs, **more)


def _own(**more) -> Expect:
    return Expect(ALL | {NO_ROLE}, 403, own_account=True, **more)


# A user with no role opens the home page, which tells them so, and nothing else: every other
# page is a 403 (trialsite.core.middleware.RoleHeldMiddleware), GET or POST.
SEES_NOTHING = ALL

EXPECTATIONS: dict[str, Expect] = {
    # --- The composition: home, sites, protocol, audit, users, exports
    "home": _trial(ALL | {NO_ROLE}, 403),
    # Another role's home page sends the user to their own: a redirect, not a refusal.
    "role_home": _trial({COORDINATOR}, 302, lambda w: {"role": COORDINATOR}),
    # A queue of the coordinator's home page: for those who hold the role, scoped to its sites.
    "work_queue": _trial(
        {COORDINATOR}, 403, lambda w: {"role": COORDINATOR, "key": "visits-overdue"}
    ),
    "site_list": _trial(SEES_NOTHING, 403),
    "site_detail": _scoped(ALL, 404, _site),
    "site_edit": _scoped(ADMIN_ONLY, 403, _site),
    "protocol_detail": _trial(SEES_NOTHING, 403),
    "audit_log": _trial({DATA_MANAGER, MONITOR, ADMINISTRATOR}, 403),
    "record_history": _scoped(
        ALL, 404, lambda w: {"label": "enrollment.participant", "pk": w.allocated_pk}
    ),
    "audit_log_csv": _trial({DATA_MANAGER, MONITOR, ADMINISTRATOR}, 403),
    "user_list": _trial(ADMIN_ONLY, 403),
    "access_review": _trial(ADMIN_ONLY, 403),
    "access_review_csv": _trial(ADMIN_ONLY, 403),
    "exports:bundle": _trial({DATA_MANAGER, ADMINISTRATOR}, 403),
    # The data manager's own written bundle; the administrator sees every one.
    "exports:detail": _trial({DATA_MANAGER, ADMINISTRATOR}, 403, _pk("export")),
    "exports:download": _trial({DATA_MANAGER, ADMINISTRATOR}, 403, _pk("export")),
    "oversight:consort": _trial(ALL, 403),
    "oversight:consort_svg": _trial(ALL, 403),
    "oversight:record_status": _trial(ALL, 403),
    "oversight:enrollment": _trial(ALL, 403),
    # --- Enrollment
    "enrollment:participant_list": _trial(SEES_NOTHING, 403),
    "enrollment:participant_register": _trial(SITE_STAFF, 403),
    "enrollment:screening_log": _trial(SEES_NOTHING, 403),
    "enrollment:consent_version_list": _trial(SEES_NOTHING, 403),
    "enrollment:consent_version_create": _trial(ADMIN_ONLY, 403),
    # The approved consent document names no patient: "for every user of the trial", and a
    # logged-in user with no role reads it too.
    "enrollment:consent_version_document": _trial(SEES_NOTHING, 403, _pk("consent_version")),
    "enrollment:reconsent_list": _trial(SEES_NOTHING, 403),
    "enrollment:participant_detail": _scoped(ALL, 404, _participant("allocated")),
    "enrollment:participant_screen": _scoped(SITE_STAFF, 403, _participant("registered")),
    "enrollment:consent_record": _scoped(SITE_STAFF, 403, _participant("registered")),
    "enrollment:consent_refusal": _scoped(SITE_STAFF, 403, _participant("registered")),
    "enrollment:withdrawal": _scoped(SITE_STAFF, 403, _participant("ready")),
    "enrollment:eligibility_signoff": _scoped({INVESTIGATOR}, 403, _participant("awaiting")),
    # --- Arms: the randomization lists are the trial administrator's alone
    "arms:list_index": _trial(ADMIN_ONLY, 403),
    "arms:list_generate": _trial(ADMIN_ONLY, 403),
    "arms:list_upload": _trial(ADMIN_ONLY, 403),
    "arms:list_detail": _trial(ADMIN_ONLY, 403, _pk("randomization_list")),
    "arms:list_entries": _trial(ADMIN_ONLY, 403, _pk("randomization_list")),
    "arms:list_export": _trial(ADMIN_ONLY, 403, _pk("randomization_list")),
    "arms:list_activate": _trial(ADMIN_ONLY, 403, _pk("randomization_list"), post_only=True),
    "arms:balance": _trial(ADMIN_ONLY, 403),
    "arms:randomize": _scoped(SITE_STAFF, 403, _participant("ready")),
    "arms:allocation_detail": _scoped(ALL, 403, _participant("allocated")),
    "arms:allocation_mark_in_error": _scoped(ADMIN_ONLY, 403, _participant("allocated")),
    "arms:roster": _trial(ALL, 403),
    "arms:roster_csv": _trial(ALL, 403),
    "arms:roster_arm": _trial(ALL, 403, lambda w: {"arm_code": "MSC"}),
    "arms:roster_arm_csv": _trial(ALL, 403, lambda w: {"arm_code": "MSC"}),
    # --- Dosing
    "dosing:worklist": _trial(SITE_STAFF, 403),
    "dosing:dose_record": _scoped(SITE_STAFF, 403, _pk("open_dose")),
    "dosing:administration_correct": _scoped(SITE_STAFF, 403, _pk("given_dose")),
    "dosing:administration_void": _scoped(SITE_STAFF, 403, _pk("given_dose")),
    "dosing:participant_timeline": _scoped(ALL, 404, _participant("dosed")),
    "dosing:reminder_list": _trial(SEES_NOTHING, 403),
    "dosing:reminder_resend": _scoped(SITE_STAFF, 403, _pk("reminder"), post_only=True),
    # --- Outcomes
    "outcomes:participant_visits": _scoped(ALL, 404, _participant("allocated")),
    "outcomes:visit_detail": _scoped(ALL, 404, _pk("recorded_visit")),
    "outcomes:visit_record": _scoped(SITE_STAFF, 403, _pk("open_visit")),
    "outcomes:visit_record_correct": _scoped(SITE_STAFF, 403, _pk("recorded_visit")),
    "outcomes:ae_list": _scoped(ALL, 404, _participant("allocated")),
    "outcomes:ae_record": _scoped(SITE_STAFF, 403, _participant("allocated")),
    "outcomes:ae_change": _scoped(SITE_STAFF, 403, _pk("adverse_event")),
    "outcomes:ae_causality": _scoped({INVESTIGATOR}, 403, _pk("adverse_event")),
    "outcomes:ae_report": _scoped(SITE_STAFF, 403, _pk("adverse_event")),
    "outcomes:ae_open_reports": _trial(SEES_NOTHING, 403),
    "outcomes:end_of_study": _scoped(SITE_STAFF, 403, _participant("allocated")),
    "outcomes:end_of_study_sign": _scoped({INVESTIGATOR}, 403, _participant("allocated")),
    # --- The second factor: each user's own
    "mfa:manage": _own(get_only=True),
    "mfa:verify": _own(),
    "mfa:enrol": _own(),
    "mfa:enrol_app": _own(),
    "mfa:recovery_codes": _own(),
    "mfa:remove": _own(post_only=True),
    "mfa:passkey_done": _own(),
    # Passkeys (django-otp-webauthn's endpoints, under its own namespace): registering one asks
    # the password again first, so a bare POST is refused.
    "otp_webauthn:credential-registration-begin": _own(post_only=True, password_first=True),
    "otp_webauthn:credential-registration-complete": _own(post_only=True, password_first=True),
    "otp_webauthn:credential-authentication-begin": _own(post_only=True),
    "otp_webauthn:credential-authentication-complete": _own(post_only=True),
    "otp_webauthn:js-i18n-catalog": _own(get_only=True),
}


def _url_names(resolver: URLResolver, namespace: str = ""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            if str(entry.pattern).startswith("admin/"):
                continue  # Django's admin protects itself
            yield from _url_names(
                entry, namespace + (f"{entry.namespace}:" if entry.namespace else "")
            )
        elif isinstance(entry, URLPattern):
            yield namespace + (entry.name or f"<unnamed {entry.pattern}>")


URL_NAMES = sorted(set(_url_names(get_resolver())) - PUBLIC)

ALLOWED = "not 403/404"  # a permitted request: the page, a redirect, a validation error
LOGIN = "302 to the login page"


def expected(expect: Expect, role: str, method: str, other_site: bool) -> int | str:
    if role == ANONYMOUS:
        return LOGIN  # before anything else, GET or POST, whatever the object
    if role == NO_ROLE and NO_ROLE not in expect.get:
        return 403  # the role-held middleware, before any view, GET or POST
    if expect.password_first:
        return 403
    if method == "get" and expect.post_only or method == "post" and expect.get_only:
        return 405
    if expect.own_account:
        return ALLOWED
    if method == "post" and role in READ_ONLY:
        return 403  # the read-only middleware, before any view
    if role not in expect.get:
        return expect.refused
    if other_site and role in SITE_HELD:
        return 404
    return ALLOWED


def _study_numbers_seen(response, role: str) -> list[str]:
    """Study numbers on the page of a site the user does not hold: site B's for a site-held
    role, any for a user with no role."""
    if role not in SITE_HELD | {NO_ROLE}:
        return []
    body = b"".join(response.streaming_content) if response.streaming else response.content
    prefixes = [b"WUH-0"] + ([b"SHE-0"] if role == NO_ROLE else [])
    return [prefix.decode() for prefix in prefixes if prefix in body]


# --- The ward, once for the module -------------------------------------------------------------

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
MEASURED = {
    "who_score": 5,
    "respiratory_support": "oxygen",
    "spo2": 93,
    "pao2": Decimal("80"),
    "fio2": Decimal("40"),
    "lymphocytes": Decimal("0.8"),
    "crp": Decimal("35.5"),
    "il6": Decimal("12.0"),
    "chest_ct": "stable",
}


def _site_ward(site, *, coordinator, investigator, administrator) -> SiteWard:
    ward = build_ward(
        site=site,
        cast={
            "coordinator_a": coordinator,
            "investigator_a": investigator,
            "administrator": administrator,
        },
    )
    allocated = Participant.objects.get(study_number=ward.allocated)
    visits = list(ScheduledVisit.objects.filter(participant=allocated).order_by("pk"))
    today = datetime.datetime.now(site.zone).date()
    visit_record(
        scheduled_visit=visits[0],
        user=coordinator,
        visit_date=today,
        vital_status="alive",
        measurements=MEASURED,
    )
    adverse_event = adverse_event_record(
        participant=allocated,
        user=coordinator,
        term="Headache",
        onset_date=today,
        end_date=None,
        grade=3,
        death_date=None,
        serious=True,
        criteria={"hospitalisation"},
        action_taken="none",
        outcome="recovering",
    )
    reminder = Reminder.objects.filter(participant__site=site).order_by("pk").first()
    version = ConsentVersion.objects.order_by("pk").first()
    if not version.document:
        version.document.save("icf.pdf", ContentFile(PDF), save=False)
        audited_save(version, user=administrator, reason="The approved document, uploaded.")
    return SiteWard(
        **vars(ward),
        code=site.code,
        allocated_pk=allocated.pk,
        open_visit=visits[1].pk,
        recorded_visit=visits[0].pk,
        adverse_event=adverse_event.pk,
        reminder=reminder.pk,
        consent_version=version.pk,
    )


def _written_export(user) -> int:
    """A bundle of the data manager's, written (as the worker would), kept for download."""
    sent = []
    export = export_request(
        user=user, options=ExportOptions(datasets=("participants",)), enqueue=sent.append
    )
    assert bundle_build(export_id=export.pk)
    return export.pk


@dataclass
class Matrix:
    users: dict  # role -> user; the site-held ones hold it at the own site
    own: SiteWard
    other: SiteWard


@pytest.fixture(scope="module")
def matrix(django_db_setup, django_db_blocker, tmp_path_factory):
    media = tmp_path_factory.mktemp("media")
    fast = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # 10:00 in Shanghai: the day-4 doses of the ward are due today.
    clock = time_machine.travel(datetime.datetime(2026, 3, 20, 2, 0, tzinfo=datetime.UTC))
    with (
        django_db_blocker.unblock(),
        override_settings(MEDIA_ROOT=media, PASSWORD_HASHERS=fast, EXPORT_ROOT=media / "exports"),
        clock,
    ):
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            protocol_load(definition=definition_from_toml(settings.PROTOCOL_FILE))
            site_a = SiteFactory(code="SHE", name="Shanghai East Hospital")
            site_b = SiteFactory(code="WUH", name="Wuhan Jinyintan Hospital")
            administrator = user_with_role(Role.ADMINISTRATOR)
            coordinator_a = user_with_role(Role.COORDINATOR, site_a)
            investigator_a = user_with_role(Role.INVESTIGATOR, site_a)
            built = Matrix(
                users={
                    COORDINATOR: coordinator_a,
                    INVESTIGATOR: investigator_a,
                    DATA_MANAGER: user_with_role(Role.DATA_MANAGER),
                    MONITOR: user_with_role(Role.MONITOR),
                    ADMINISTRATOR: administrator,
                    NO_ROLE: UserFactory(),
                },
                own=_site_ward(
                    site_a,
                    coordinator=coordinator_a,
                    investigator=investigator_a,
                    administrator=administrator,
                ),
                other=_site_ward(
                    site_b,
                    coordinator=user_with_role(Role.COORDINATOR, site_b),
                    investigator=user_with_role(Role.INVESTIGATOR, site_b),
                    administrator=administrator,
                ),
            )
            built.own.export = _written_export(built.users[DATA_MANAGER])
        except BaseException:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)
            raise
        yield built
        transaction.set_rollback(True)
        atomic.__exit__(None, None, None)


# --- The tests ----------------------------------------------------------------------------------


def test_every_url_pattern_has_its_expectation_written():
    missing = [name for name in URL_NAMES if name not in EXPECTATIONS]
    assert not missing, "add the expectation for " + ", ".join(missing)
    gone = set(EXPECTATIONS) - set(URL_NAMES)
    assert not gone, f"expectations for URL names the project no longer has: {sorted(gone)}"
    assert len(URL_NAMES) > 50


def test_randomization_lists_are_the_trial_administrators_alone():
    lists = [name for name in URL_NAMES if name.startswith("arms:list_")]
    assert len(lists) >= 7
    for name in lists:
        assert EXPECTATIONS[name].get == ADMIN_ONLY, name


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", URL_NAMES)
def test_access_matrix(matrix, name, role):
    expect = EXPECTATIONS.get(name)
    if expect is None:
        pytest.fail(f"add the expectation for {name}")
    client = Client()
    if role != ANONYMOUS:
        verified_login(client, matrix.users[role])
    wards = (
        [(matrix.own, False), (matrix.other, True)] if expect.site_scoped else [(matrix.own, False)]
    )
    wrong = []
    for ward, other_site in wards:
        url = reverse(name, kwargs=expect.kwargs(ward) if expect.kwargs else None)
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            status = response.status_code
            want = expected(expect, role, method, other_site)
            # Whatever the table says: never another site's object, never a monitor's write.
            if other_site and role in SITE_HELD and status not in (403, 404, 405):
                wrong.append(f"{method.upper()} {url} -> {status}: another site's object")
            if method == "post" and role in READ_ONLY and status != 403 and not expect.own_account:
                wrong.append(f"POST {url} -> {status}: a read-only user's POST not refused")
            if status == 200 and (hidden := _study_numbers_seen(response, role)):
                wrong.append(f"{method.upper()} {url} shows {hidden}, of no site of the user")
            if want == ALLOWED:
                ok = status not in (403, 404, 405)
            elif want == LOGIN:
                ok = status == 302 and response.url.startswith(f"{reverse('login')}?next=")
            else:
                ok = status == want
            if not ok:
                wrong.append(f"{method.upper()} {url} -> {status}, expected {want}")
    assert not wrong, f"{name} as {role}: " + "; ".join(wrong)
