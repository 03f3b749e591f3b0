"""In Chromium: a coordinator randomizes a ready participant, clicking twice, and sees one
allocation; the site investigator then finds the participant in the arm roster."""

import pytest

from arms.models import Allocation
from tests.conftest import log_in, screenshot
from tests.factories import active_randomization_list, ready_participant

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_coordinator_randomizes_once_by_double_click_and_investigator_finds_them(
    page, protocol, site_a, site_b, administrator, coordinator_a, investigator_a
):
    active_randomization_list(administrator=administrator, per_stratum=30)
    participant = ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)

    log_in(page, coordinator_a)
    page.goto(f"/arms/randomize/{participant.study_number}/")
    screenshot(page, "arms-randomize-ready")
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    # Chromium itself drops the first of two quick submits of one form, so the first click's
    # request is sent as the form would send it (same key), and the second is a real click.
    page.evaluate(
        """() => {
            const form = document.querySelector('[data-testid=randomize-form]');
            window.firstClick = fetch(location.href, {method: 'POST', body: new FormData(form)});
        }"""
    )
    page.get_by_test_id("randomize").click()
    page.wait_for_url(f"**/arms/allocations/{participant.study_number}/")
    assert len(posts) == 2
    assert Allocation.objects.filter(participant=participant).count() == 1
    allocation = Allocation.objects.select_related("arm").get(participant=participant)
    assert page.get_by_test_id("arm").inner_text().startswith(allocation.arm.code)
    assert page.get_by_test_id("randomization-number").inner_text() == (
        allocation.randomization_number
    )
    screenshot(page, "arms-allocation-confirmed")
    # Back to the randomize page: it does not offer a second randomization.
    page.goto(f"/arms/randomize/{participant.study_number}/")
    page.wait_for_url(f"**/arms/allocations/{participant.study_number}/")

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/accounts/login/")
    log_in(page, investigator_a)
    page.get_by_test_id("nav-rosters").click()
    page.get_by_role("link", name=allocation.arm.code, exact=True).click()
    page.fill("#id_q", participant.study_number)
    page.get_by_role("button", name="Filter").click()
    row = page.locator(f"tr[data-study-number='{participant.study_number}']")
    row.wait_for()
    assert page.locator("table[data-testid=roster] tbody tr").count() == 1
    assert "On study" in row.inner_text()
    screenshot(page, "arms-investigator-roster")
    assert Allocation.objects.count() == 1
