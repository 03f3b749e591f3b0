"""In headless Chromium: a refused screening shows its reason beside the severity radios and
puts the focus on the error summary, on a desktop and on a phone-sized screen."""

import pytest

from tests.conftest import log_in, screenshot
from tests.factories import ParticipantFactory
from tests.trialsite.test_form_errors import SEVERE_NEEDS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [1366, 390])
def test_severe_without_a_finding_is_explained_and_focused(
    page, protocol, site_a, coordinator_a, width
):
    participant = ParticipantFactory(site=site_a, user=coordinator_a, sex="F")
    log_in(page, coordinator_a)  # at the default width: a phone's menu hides the user's name
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"/participants/{participant.study_number}/screen/")
    page.check("input[name=severity][value=severe]")
    page.get_by_role("button", name="Save screening").click()
    page.wait_for_selector("[data-error-summary]")

    beside_field = page.locator("#div_id_severity").get_by_text(SEVERE_NEEDS)
    assert beside_field.is_visible()
    summary = page.get_by_role("alert").filter(has_text="There is a problem")
    assert summary.is_visible()
    assert page.evaluate("document.activeElement.hasAttribute('data-error-summary')")
    screenshot(page, f"screening-severity-error-{width}")

    summary.get_by_role("link", name=f"I2 · Severity: {SEVERE_NEEDS}").click()
    assert page.evaluate("document.activeElement.id") == "id_severity_0"
    assert page.locator("#div_id_severity legend").is_visible()
