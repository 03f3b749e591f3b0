"""In headless Chromium, under the site's Content-Security-Policy: the trial's pages and the
Django admin load with no violation (nothing inline is blocked, so nothing silently breaks)."""

import pytest
from django.contrib import admin
from django.urls import reverse

from tests.conftest import log_in
from tests.factories import PASSWORD, ParticipantFactory
from trialsite.core.models import User

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Chromium reports a blocked script, style, image or form target on the console.
VIOLATION_WORDS = ("Content Security Policy", "Content-Security-Policy")


@pytest.fixture
def console(page):
    messages = []
    page.on("console", lambda msg: messages.append(f"{page.url} {msg.type}: {msg.text}"))
    page.on("pageerror", lambda error: messages.append(f"{page.url} pageerror: {error}"))
    return messages


def visit(page, url: str) -> None:
    response = page.goto(url)
    assert response.status == 200, url
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_load_state("load")


def violations(console) -> list[str]:
    return [m for m in console if any(word in m for word in VIOLATION_WORDS)]


def test_the_screening_form_and_its_errors_run_under_the_policy(
    page, console, protocol, site_a, coordinator_a
):
    participant = ParticipantFactory(site=site_a, user=coordinator_a, sex="F")
    log_in(page, coordinator_a)
    visit(page, "/participants/")
    visit(page, f"/participants/{participant.study_number}/screen/")
    page.check("input[name=severity][value=severe]")
    page.get_by_role("button", name="Save screening").click()
    page.wait_for_selector("[data-error-summary]")
    # The summary's script ran: it is allowed, being a file of this site.
    assert page.evaluate("document.activeElement.hasAttribute('data-error-summary')")
    assert violations(console) == []


def test_the_admin_runs_under_the_policy(page, console, site_a):
    root = User.objects.create_superuser("root", "root@example.org", PASSWORD)
    log_in(page, root)
    changelists = [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for model in admin.site._registry
    ]
    for url in (
        "/admin/",
        *changelists,
        f"/admin/trialsite/site/{site_a.pk}/change/",
        f"/admin/trialsite/site/{site_a.pk}/history/",
        f"/admin/auth/user/{root.pk}/change/",
        f"/admin/auth/user/{root.pk}/password/",
    ):
        visit(page, url)
    assert violations(console) == []
    assert page.locator("#content h1").is_visible()
