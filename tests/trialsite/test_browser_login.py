"""In headless Debian Chromium: a coordinator logs in and reaches the home page."""

import pytest

from tests.conftest import screenshot
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_coordinator_logs_in_and_reaches_the_coordinator_home(page, coordinator_a, protocol):
    page.goto("/")
    assert "/accounts/login/" in page.url
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    screenshot(page, "login-filled")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/home/coordinator/")
    assert page.get_by_test_id("role-home").inner_text() == "Research coordinator"
    assert "SHE" in page.get_by_text("Shanghai East Hospital").first.inner_text()
    screenshot(page, "coordinator-home")


def test_wrong_password_stays_on_the_login_page_with_a_message(page, coordinator_a):
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Log in").click()
    # Beside the form, and in the error summary at the top of the page.
    message = page.get_by_text("Please enter a correct username and password")
    assert [message.nth(i).is_visible() for i in range(message.count())] == [True, True]
    assert page.get_by_label("Username").input_value() == "alice"
