"""Passkeys in a real browser: Chromium's virtual authenticator (the DevTools protocol's
WebAuthn domain) stands in for a phone or a security key. Registered after the password given
again, a passkey verifies the next login; the package's script runs under the site's CSP,
served from our static files."""

import pytest
from django.urls import reverse
from django_otp_webauthn.models import WebAuthnCredential

from tests.factories import PASSWORD
from trialsite.core.models import AccessEvent, AccessEventKind

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def authenticator_page(chromium, live_server, settings):
    settings.OTP_WEBAUTHN_RP_ID = "localhost"
    settings.OTP_WEBAUTHN_ALLOWED_ORIGINS = [live_server.url]
    assert live_server.url.startswith("http://localhost:"), live_server.url
    context = chromium.new_context(base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    page.authenticator = (cdp, added["authenticatorId"])
    page.csp_violations = []
    page.on(
        "console",
        lambda m: page.csp_violations.append(m.text) if "Content Security Policy" in m.text else 0,
    )
    yield page
    context.close()


def password_login(page, user):
    page.goto("/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("[data-testid=current-user]")


def test_a_passkey_registered_after_the_password_verifies_the_next_login(
    authenticator_page, investigator_a
):
    page = authenticator_page
    password_login(page, investigator_a)
    assert "/accounts/mfa/enrol/" in page.url  # no second factor yet: set one up first
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Continue").click()
    # The package's script must have bound the button before it is pressed.
    page.wait_for_load_state("load")
    page.get_by_role("button", name="Register a passkey").click()
    # The package's script registers it, ours goes on to the recovery codes, shown once.
    page.wait_for_selector("[data-testid=recovery-codes]")
    (credential,) = WebAuthnCredential.objects.filter(user=investigator_a)
    assert credential.confirmed
    cdp, authenticator_id = page.authenticator
    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    assert len(stored["credentials"]) == 1 and stored["credentials"][0]["rpId"] == "localhost"
    page.get_by_role("link", name="I have kept them: continue").click()
    page.wait_for_url(lambda url: "/accounts/" not in url)

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/accounts/login/")
    password_login(page, investigator_a)
    assert "/accounts/mfa/verify/" in page.url
    page.wait_for_load_state("load")
    page.get_by_role("button", name="Use your passkey").click()
    page.wait_for_url(lambda url: "/accounts/" not in url)
    assert page.goto(reverse("site_list")).status == 200
    assert "/accounts/" not in page.url

    kinds = list(
        AccessEvent.objects.filter(user=investigator_a, kind__startswith="mfa")
        .order_by("pk")
        .values_list("kind", "detail")
    )
    assert kinds == [
        (AccessEventKind.MFA_ENROLLED, "passkey"),
        (AccessEventKind.MFA_RECOVERY_ISSUED, "10 recovery codes"),
        (AccessEventKind.MFA_VERIFIED, "passkey"),
    ]
    assert page.csp_violations == []
