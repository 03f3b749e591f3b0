"""The second factor: who needs one, that nothing is reachable before it, enrolment with the
password again, a replayed code refused, wrong codes throttled, recovery codes good once, the
per-site choice for coordinators, and every event in the audit trail.

Logging in here goes through the real login form and the real second-factor page, with codes
computed from the device's key as an authenticator app computes them."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django_otp.oath import hotp
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import totp_code, totp_device_for
from tests.factories import PASSWORD, UserFactory
from trialsite.core.mfa import mfa_required
from trialsite.core.models import AccessEvent, AccessEventKind, Role, RoleAssignment
from trialsite.core.services import site_update

pytestmark = pytest.mark.django_db

START = datetime(2026, 11, 26, 6, 0, 10, tzinfo=UTC)
VERIFY, ENROL = "/accounts/mfa/verify/", "/accounts/mfa/enrol/"


@pytest.fixture
def at_start():
    with time_machine.travel(START, tick=False) as clock:
        yield clock


def password_login(client: Client, user) -> None:
    response = client.post(reverse("login"), {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, response


def events(user) -> list[tuple[str, str]]:
    return list(
        AccessEvent.objects.filter(user=user, kind__startswith="mfa")
        .order_by("pk")
        .values_list("kind", "detail")
    )


def code_at(device, step_offset: int = 0) -> str:
    t = int(datetime.now(UTC).timestamp()) // device.step + step_offset
    return f"{hotp(device.bin_key, t, digits=6):06d}"


# --- Who needs a second factor ------------------------------------------------------------------


@pytest.mark.parametrize(
    "who,needs",
    [
        ("investigator_a", True),
        ("data_manager", True),
        ("monitor", True),
        ("administrator", True),
        ("coordinator_a", False),
        ("coordinator_b", False),
    ],
)
def test_every_role_but_the_coordinator_needs_a_second_factor(cast, who, needs):
    assert mfa_required(cast[who]) is needs


def test_a_coordinator_needs_one_where_a_site_of_theirs_requires_it(coordinator_a, site_a, site_b):
    site_update(site=site_b, user=None, reason="Phones", coordinators_require_mfa=True)
    assert mfa_required(type(coordinator_a).objects.get(pk=coordinator_a.pk)) is False
    site_update(site=site_a, user=None, reason="Phones", coordinators_require_mfa=True)
    assert mfa_required(type(coordinator_a).objects.get(pk=coordinator_a.pk)) is True


def test_a_superuser_and_anyone_enrolled_need_it_and_a_user_without_role_does_not(db):
    assert mfa_required(UserFactory()) is False
    assert mfa_required(UserFactory(is_superuser=True)) is True
    enrolled = UserFactory()
    TOTPDevice.objects.create(user=enrolled, name="app", confirmed=True)
    assert mfa_required(enrolled) is True


# --- Nothing before the second factor ------------------------------------------------------------

SAMPLE_ARGS = {"int": "1", "str": "SHE-0001", "path": "x", "slug": "x", "uuid": ""}
# Reachable before the second factor: logging out, the health check; the second-factor pages
# themselves are checked one by one below.
OPEN = {"logout", "healthz"}


def _routes(resolver: URLResolver = None, prefix: str = ""):
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            if not str(entry.pattern).startswith("admin/"):
                yield from _routes(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.name


ROUTES = sorted(
    (route, name)
    for route, name in _routes()
    if name not in OPEN and not route.startswith("accounts/mfa/")
)


def _sample(route: str) -> str:
    return "/" + re.sub(
        r"<(?:(\w+):)?\w+>", lambda m: SAMPLE_ARGS.get(m.group(1) or "str", ""), route
    )


def test_the_walk_covers_the_project():
    assert len(ROUTES) > 50
    assert ("", "home") in ROUTES


@pytest.mark.parametrize("enrolled", [True, False], ids=["enrolled", "not-enrolled"])
def test_an_investigator_reaches_no_page_before_the_second_factor(
    at_start, investigator_a, enrolled
):
    if enrolled:
        totp_device_for(investigator_a)
    client = Client()
    password_login(client, investigator_a)
    target = VERIFY if enrolled else ENROL
    wrong = []
    for route, _name in ROUTES + [("admin/", "admin"), ("admin/auth/user/", "admin users")]:
        url = _sample(route)
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            if not (response.status_code == 302 and response.url.startswith(target)):
                wrong.append(f"{method.upper()} {url} -> {response.status_code}")
    assert not wrong, wrong
    # Where it was going is kept for after the code (a GET; a POST's body is not replayed).
    assert client.get("/participants/?site=SHE").url == (
        f"{target}?next=%2Fparticipants%2F%3Fsite%3DSHE"
    )
    # The other second-factor page is closed too: no new app without the one enrolled.
    other = ENROL if enrolled else VERIFY
    response = client.get(other)
    assert response.status_code == 302 and response.url.startswith(target)
    assert client.get(target).status_code == 200
    assert client.get(reverse("healthz")).status_code in (200, 500)
    assert client.post(reverse("logout")).url == reverse("login")


@pytest.mark.parametrize("who", ["data_manager", "monitor", "administrator"])
def test_each_role_that_needs_it_is_sent_to_the_second_factor(at_start, cast, who):
    client = Client()
    totp_device_for(cast[who])
    password_login(client, cast[who])
    response = client.get(reverse("home"))
    assert (response.status_code, response.url) == (302, f"{VERIFY}?next=%2F")


def test_a_coordinator_needs_none_until_their_site_requires_it(
    at_start, coordinator_a, site_a, administrator, client_for
):
    client = Client()
    password_login(client, coordinator_a)
    assert client.get(reverse("enrollment:participant_list")).status_code == 200

    edit = client_for(administrator).post(
        reverse("site_edit", args=["SHE"]),
        {
            "name": site_a.name,
            "time_zone": site_a.time_zone,
            "language": site_a.language,
            "is_active": "on",
            "coordinators_require_mfa": "on",
            "reason": "Ward tablets replaced by personal phones",
        },
    )
    assert edit.status_code == 302
    site_a.refresh_from_db()
    assert site_a.coordinators_require_mfa is True
    latest = site_a.history.latest()
    assert (latest.history_user, latest.history_change_reason) == (
        administrator,
        "Ward tablets replaced by personal phones",
    )
    assert site_a.history.earliest().coordinators_require_mfa is False

    # The coordinator's open session is asked for it at once, at their next request.
    response = client.get(reverse("enrollment:participant_list"))
    assert (response.status_code, response.url) == (302, f"{ENROL}?next=%2Fparticipants%2F")


def test_the_site_page_says_whether_coordinators_need_it(site_a, client_for, administrator):
    page = client_for(administrator).get(reverse("site_edit", args=["SHE"]))
    assert 'name="coordinators_require_mfa"' in page.content.decode()


# --- Verifying -----------------------------------------------------------------------------------


def test_the_right_code_opens_the_pages_and_is_audited(at_start, investigator_a):
    device = totp_device_for(investigator_a)
    client = Client()
    password_login(client, investigator_a)
    response = client.post(VERIFY, {"code": code_at(device), "next": "/participants/"})
    assert (response.status_code, response.url) == (302, "/participants/")
    assert client.get("/participants/").status_code == 200
    assert events(investigator_a) == [(AccessEventKind.MFA_VERIFIED, "authenticator app")]


def test_a_replayed_code_is_refused(at_start, investigator_a):
    device = totp_device_for(investigator_a)
    code = code_at(device)
    first = Client()
    password_login(first, investigator_a)
    assert first.post(VERIFY, {"code": code}).status_code == 302

    # The same code again, still within its 30 seconds, from another tablet: refused.
    second = Client()
    password_login(second, investigator_a)
    response = second.post(VERIFY, {"code": code})
    assert response.status_code == 200
    assert response.context["form"].errors == {
        "code": ["This code is not right, or it has been used already."]
    }
    assert second.get(reverse("home")).url.startswith(VERIFY)
    # So is the code of the step before it; the app's next code is accepted.
    assert second.post(VERIFY, {"code": code_at(device, -1)}).status_code == 200
    at_start.shift(timedelta(seconds=30))
    assert second.post(VERIFY, {"code": code_at(device)}).status_code == 302
    assert [kind for kind, _ in events(investigator_a)] == [
        AccessEventKind.MFA_VERIFIED,
        AccessEventKind.MFA_FAILED,
        AccessEventKind.MFA_FAILED,
        AccessEventKind.MFA_VERIFIED,
    ]


def test_wrong_codes_are_throttled(at_start, investigator_a):
    device = totp_device_for(investigator_a)
    client = Client()
    password_login(client, investigator_a)

    def wrong():
        return f"{(int(code_at(device)) + 1) % 1_000_000:06d}"

    def error(response):
        return response.context["form"].errors["code"]

    assert error(client.post(VERIFY, {"code": wrong()})) == [
        "This code is not right, or it has been used already."
    ]
    # A wrong code: the device waits a second, and refuses even the right code meanwhile.
    assert error(client.post(VERIFY, {"code": code_at(device)})) == [
        "Too many wrong codes. Wait 1 second, then try again."
    ]
    at_start.shift(timedelta(seconds=1))
    client.post(VERIFY, {"code": wrong()})
    # A second wrong one in a row: two seconds, then four, eight ...
    assert error(client.post(VERIFY, {"code": code_at(device)})) == [
        "Too many wrong codes. Wait 2 seconds, then try again."
    ]
    at_start.shift(timedelta(seconds=2))
    assert client.post(VERIFY, {"code": code_at(device)}).status_code == 302
    assert events(investigator_a) == [
        (AccessEventKind.MFA_FAILED, "authenticator app: wrong code"),
        (AccessEventKind.MFA_FAILED, "authenticator app: refused while throttled"),
        (AccessEventKind.MFA_FAILED, "authenticator app: wrong code"),
        (AccessEventKind.MFA_FAILED, "authenticator app: refused while throttled"),
        (AccessEventKind.MFA_VERIFIED, "authenticator app"),
    ]


def test_a_read_only_monitor_posts_their_code(at_start, monitor):
    device = totp_device_for(monitor)
    client = Client()
    password_login(client, monitor)
    assert client.post(VERIFY, {"code": code_at(device)}).status_code == 302
    assert client.get(reverse("home")).status_code == 302  # to the monitor's home page
    assert client.post(reverse("site_list")).status_code == 403  # and still changes nothing


def test_the_next_page_must_be_this_sites(at_start, investigator_a):
    device = totp_device_for(investigator_a)
    client = Client()
    password_login(client, investigator_a)
    response = client.post(VERIFY, {"code": code_at(device), "next": "https://evil.example/"})
    assert response.url == reverse("home")


# --- Enrolling -----------------------------------------------------------------------------------


def test_enrolment_asks_the_password_again_shows_the_qr_and_confirms_with_a_code(
    at_start, data_manager
):
    client = Client()
    password_login(client, data_manager)
    assert client.get(reverse("home")).url == f"{ENROL}?next=%2F"
    # Without the password, no app is set up.
    assert client.get("/accounts/mfa/enrol/app/").url == ENROL
    wrong = client.post(ENROL, {"password": "not-the-password"})
    assert wrong.context["form"].errors == {"password": ["The password is not right."]}
    assert not TOTPDevice.objects.filter(user=data_manager).exists()

    response = client.post(ENROL + "?next=%2Fexports%2F", {"password": PASSWORD})
    assert response.url == "/accounts/mfa/enrol/app/?next=%2Fexports%2F"
    page = client.get(response.url)
    device = TOTPDevice.objects.get(user=data_manager)
    assert device.confirmed is False
    content = page.content.decode()
    # The QR code is an SVG drawn here, in the page: nothing fetched from elsewhere.
    assert 'src="data:image/svg+xml;charset=utf-8,' in content
    secret = page.context["setup"].secret
    assert f'data-testid="totp-secret">{secret}</code>' in content
    assert page.context["setup"].qr_data_uri.startswith("data:image/svg+xml")

    # Not enrolled until confirmed: the pages stay closed.
    assert client.get(reverse("home")).url.startswith(ENROL)
    bad = client.post("/accounts/mfa/enrol/app/", {"code": "000000", "next": "/exports/"})
    assert bad.context["form"].errors["code"] == [
        "This code is not right. Check the app's clock and try again."
    ]
    at_start.shift(timedelta(seconds=1))  # the device waits a second after a wrong code
    done = client.post("/accounts/mfa/enrol/app/", {"code": code_at(device), "next": "/exports/"})
    assert done.status_code == 200
    codes = done.context["codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(code in done.content.decode() for code in codes)
    device.refresh_from_db()
    assert device.confirmed is True
    # Enrolling verified this session: the pages open.
    assert client.get("/exports/").status_code == 200
    assert [kind for kind, _ in events(data_manager)] == [
        AccessEventKind.MFA_FAILED,  # the wrong password
        AccessEventKind.MFA_FAILED,  # the wrong first code
        AccessEventKind.MFA_ENROLLED,
        AccessEventKind.MFA_RECOVERY_ISSUED,
    ]


def test_the_password_given_again_holds_ten_minutes(at_start, data_manager):
    client = Client()
    password_login(client, data_manager)
    client.post(ENROL, {"password": PASSWORD})
    assert client.get("/accounts/mfa/enrol/app/").status_code == 200
    at_start.shift(timedelta(minutes=10))
    assert client.get("/accounts/mfa/enrol/app/").url == ENROL


def test_five_wrong_passwords_end_the_session(at_start, data_manager):
    client = Client()
    password_login(client, data_manager)
    for _ in range(4):
        assert client.post(ENROL, {"password": "guess"}).status_code == 200
    response = client.post(ENROL, {"password": "guess"})
    assert response.url == reverse("login")
    assert client.get(reverse("home")).url.startswith(reverse("login"))


def test_an_enrolled_user_must_verify_before_replacing_the_app(at_start, investigator_a):
    """Otherwise the password alone would set up a new app and walk past the second factor."""
    totp_device_for(investigator_a)
    client = Client()
    password_login(client, investigator_a)
    for url in (ENROL, "/accounts/mfa/enrol/app/", "/accounts/mfa/recovery-codes/"):
        response = client.post(url, {"password": PASSWORD})
        assert response.status_code == 302 and response.url.startswith(VERIFY), url
    assert TOTPDevice.objects.filter(user=investigator_a).count() == 1


def test_a_verified_user_replaces_the_app_and_the_old_one_stops(at_start, investigator_a):
    old = totp_device_for(investigator_a)
    client = Client()
    password_login(client, investigator_a)
    assert client.post(VERIFY, {"code": code_at(old)}).status_code == 302
    client.post(ENROL, {"password": PASSWORD})
    new = TOTPDevice.objects.get(user=investigator_a, confirmed=False)
    assert client.post("/accounts/mfa/enrol/app/", {"code": code_at(new)}).status_code == 200
    assert list(TOTPDevice.objects.filter(user=investigator_a)) == [new]


# --- Recovery codes ------------------------------------------------------------------------------


def test_a_recovery_code_works_once(at_start, investigator_a):
    device = totp_device_for(investigator_a)
    client = Client()
    password_login(client, investigator_a)
    client.post(VERIFY, {"code": code_at(device)})
    page = client.post("/accounts/mfa/recovery-codes/", {"password": PASSWORD})
    codes = page.context["codes"]
    assert StaticToken.objects.filter(device__user=investigator_a).count() == 10

    lost_phone = Client()
    password_login(lost_phone, investigator_a)
    spaced = f"{codes[3][:4]} {codes[3][4:].upper()}"  # as read out and typed
    assert lost_phone.post(VERIFY, {"code": spaced}).status_code == 302
    assert lost_phone.get(reverse("site_list")).status_code == 200

    again = Client()
    password_login(again, investigator_a)
    refused = again.post(VERIFY, {"code": codes[3]})
    assert refused.context["form"].errors == {
        "code": ["This code is not right, or it has been used already."]
    }
    assert StaticToken.objects.filter(device__user=investigator_a).count() == 9
    assert events(investigator_a)[-3:] == [
        (AccessEventKind.MFA_RECOVERY_ISSUED, "10 recovery codes"),
        (AccessEventKind.MFA_RECOVERY_USED, "9 recovery codes left"),
        (AccessEventKind.MFA_FAILED, "recovery code: wrong code"),
    ]


def test_new_recovery_codes_replace_the_old_ones(at_start, investigator_a, client_for):
    client = client_for(investigator_a)
    first = client.post("/accounts/mfa/recovery-codes/", {"password": PASSWORD}).context["codes"]
    second = client.post("/accounts/mfa/recovery-codes/", {"password": PASSWORD}).context["codes"]
    kept = set(
        StaticToken.objects.filter(device__user=investigator_a).values_list("token", flat=True)
    )
    assert kept == set(second) and not kept & set(first)


# --- Removing ------------------------------------------------------------------------------------


def test_removing_the_app_asks_the_password_and_then_for_a_new_one(
    at_start, investigator_a, client_for
):
    client = client_for(investigator_a)
    refused = client.post("/accounts/mfa/remove/", {"password": "wrong"})
    assert refused.status_code == 200
    assert TOTPDevice.objects.filter(user=investigator_a).exists()
    response = client.post("/accounts/mfa/remove/", {"password": PASSWORD})
    assert response.url == "/accounts/mfa/"
    assert not TOTPDevice.objects.filter(user=investigator_a).exists()
    assert events(investigator_a)[-1] == (
        AccessEventKind.MFA_DEVICE_REMOVED,
        "authenticator app, passkeys and recovery codes",
    )
    # The investigator's role still needs one: set it up before anything else.
    assert client.get(reverse("site_list")).url == f"{ENROL}?next=%2Fsites%2F"


def test_a_coordinator_may_enrol_and_is_then_always_asked(at_start, coordinator_a):
    client = Client()
    password_login(client, coordinator_a)
    client.post(ENROL, {"password": PASSWORD})
    device = TOTPDevice.objects.get(user=coordinator_a)
    assert client.post("/accounts/mfa/enrol/app/", {"code": code_at(device)}).status_code == 200
    later = Client()
    password_login(later, coordinator_a)
    assert later.get(reverse("home")).url == f"{VERIFY}?next=%2F"


def test_the_helpers_code_is_a_real_one(at_start, investigator_a):
    """The browser tests' helper computes what an app shows; the device itself accepts it."""
    device = totp_device_for(investigator_a)
    assert device.verify_token(totp_code(device)) is True
    assert device.verify_token(code_at(device)) is False  # the same step: a replay
    assert RoleAssignment.objects.filter(user=investigator_a, role=Role.INVESTIGATOR).exists()


# --- The demo ------------------------------------------------------------------------------------


def test_the_demo_users_log_in_with_the_code_demo_otp_prints(protocol, at_start, settings, capsys):
    from django.core.management import call_command

    from trialsite.management.commands.load_demo import DEMO_PASSWORD

    call_command("load_demo", "--force")
    settings.DEBUG = True  # demo_otp prints codes for DEBUG installs only
    for username in ["investigator", "datamanager", "monitor", "admin", "investigator"]:
        client = Client()
        login = client.post(reverse("login"), {"username": username, "password": DEMO_PASSWORD})
        assert client.get(login.url).url.startswith(VERIFY), username
        capsys.readouterr()
        call_command("demo_otp", username)
        code = capsys.readouterr().out.split()[0]
        assert client.post(VERIFY, {"code": code}).status_code == 302, username
        assert client.get(reverse("protocol_detail")).status_code == 200, username
    # The demo's coordinators need no second factor: their sites leave it off.
    client = Client()
    client.post(reverse("login"), {"username": "coordinator", "password": DEMO_PASSWORD})
    assert client.get(reverse("protocol_detail")).status_code == 200
    with pytest.raises(Exception, match="no authenticator app"):
        call_command("demo_otp", "coordinator")


# --- Passkeys (the browser ceremony: test_browser_passkeys.py) --------------------------------


def test_registering_a_passkey_asks_the_password_again(at_start, investigator_a, client_for):
    client = client_for(investigator_a)
    begin = reverse("otp_webauthn:credential-registration-begin")
    refused = client.post(begin)
    assert (refused.status_code, refused.json()["code"]) == (403, "password_again")
    assert events(investigator_a)[-1] == (
        AccessEventKind.MFA_FAILED,
        "passkey registration: password_again",
    )
    client.post(ENROL, {"password": PASSWORD})
    options = client.post(begin).json()
    assert options["rp"] == {"id": "localhost", "name": "Trialsite NCT05682586"}
    assert options["user"]["name"] == investigator_a.username


def test_a_passkey_is_no_way_round_the_password(at_start, investigator_a):
    """Passwordless login is off: without a logged-in user the login step refuses to start."""
    response = Client().post(reverse("otp_webauthn:credential-authentication-begin"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_the_access_review_names_passkeys(at_start, investigator_a, data_manager):
    from django_otp_webauthn.models import WebAuthnCredential

    from trialsite.core.selectors import access_review

    totp_device_for(data_manager)
    WebAuthnCredential.objects.create(
        user=investigator_a, name="key", confirmed=True, public_key=b"k", credential_id=b"c"
    )
    rows = {row.username: row.mfa for row in access_review()}
    assert (rows["bob"], rows["dana"]) == ("passkey", "totp")
