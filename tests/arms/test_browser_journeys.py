"""In Chromium: a coordinator randomizes a ready participant, clicking twice, and sees one
allocation; the site investigator then finds the participant in the arm roster. The trial
administrator generates a list, double-clicking, and gets one draft."""

import pytest

from arms.models import Allocation, ListEntry, RandomizationList
from tests.conftest import log_in, screenshot
from tests.factories import active_randomization_list, ready_participant

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def record_posts(page) -> list[str]:
    """The URLs of the POSTs the page sends from now on."""
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    return posts


def send_a_copy(page, form: str) -> None:
    """The form's request, sent as the form would send it (same key), staying on the page."""
    page.evaluate(
        """(selector) => {
            const form = document.querySelector(selector);
            fetch(form.action, {method: 'POST', body: new FormData(form)});
        }""",
        form,
    )


def test_coordinator_randomizes_once_by_double_click_and_investigator_finds_them(
    page, protocol, site_a, site_b, administrator, coordinator_a, investigator_a
):
    active_randomization_list(administrator=administrator, per_stratum=30)
    participant = ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)

    log_in(page, coordinator_a)
    page.goto(f"/arms/randomize/{participant.study_number}/")
    screenshot(page, "arms-randomize-ready")
    posts = record_posts(page)
    # Chromium itself drops the first of two quick submits of one form, so the first click's
    # request is sent as the form would send it (same key), and the second is a real click.
    send_a_copy(page, "[data-testid=randomize-form]")
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


WIDE, NARROW = {"width": 1366, "height": 900}, {"width": 390, "height": 844}


def test_administrator_double_clicks_generate_and_gets_one_draft(
    page, protocol, site_a, site_b, administrator
):
    log_in(page, administrator)
    page.goto("/arms/lists/")
    box = page.get_by_test_id("generate")
    box.get_by_label("Entries per stratum (at least)").fill("10000")
    box.get_by_label("Note").fill("Double-clicked")
    page.set_viewport_size(NARROW)
    screenshot(page, "arms-lists-generate-390")
    page.set_viewport_size(WIDE)
    screenshot(page, "arms-lists-generate-1366")
    posts = record_posts(page)

    button = box.get_by_role("button", name="Generate a draft list")
    # What the button shows while the request runs, noted where the next page can read it.
    page.evaluate(
        """() => document.addEventListener('submit', () => setTimeout(() => {
            const button = document.querySelector('[data-testid=generate] [type=submit]');
            sessionStorage.setItem('busy', JSON.stringify([button.disabled, button.value]));
        }, 50))"""
    )
    button.dblclick()
    page.wait_for_url("**/arms/lists/*/")

    randomization_list = RandomizationList.objects.get()
    assert len(posts) == 1
    # 4 x 10,000 entries take a moment: meanwhile the button was off and said why.
    assert page.evaluate("() => JSON.parse(sessionStorage.getItem('busy'))") == [
        True,
        "Generating the list…",
    ]
    assert page.url.endswith(f"/arms/lists/{randomization_list.pk}/")
    entries = ListEntry.objects.filter(stratum__randomization_list=randomization_list).count()
    assert entries >= 40_000
    message = page.get_by_role("alert")
    assert message.inner_text().strip() == (
        f"Draft list {randomization_list.pk} generated: {entries} entries in 4 strata. "
        "Check its report before use."
    )
    assert page.get_by_test_id("written-sha256").locator("code").inner_text() == (
        randomization_list.written_sha256
    )
    screenshot(page, "arms-list-draft-1366")
    page.set_viewport_size(NARROW)
    screenshot(page, "arms-list-draft-390")
    page.set_viewport_size(WIDE)

    page.goto("/arms/lists/")
    drafts = page.locator("table[data-testid=lists] tr[data-status=draft]")
    assert drafts.count() == 1
    assert drafts.first.get_attribute("data-list") == str(randomization_list.pk)


def test_a_request_sent_twice_from_the_generate_box_stores_one_draft(
    page, protocol, site_a, site_b, administrator
):
    """The server is the guard, whatever the browser does: a copy of the form's request sent
    beside a real click (same key) stores nothing more, and the page lands on the draft."""
    log_in(page, administrator)
    page.goto("/arms/lists/")
    box = page.get_by_test_id("generate")
    box.get_by_label("Entries per stratum (at least)").fill("2500")
    posts = record_posts(page)
    send_a_copy(page, "[data-testid=generate] form")
    box.get_by_role("button", name="Generate a draft list").click()
    page.wait_for_url("**/arms/lists/*/")
    assert len(posts) == 2
    randomization_list = RandomizationList.objects.get()
    assert page.url.endswith(f"/arms/lists/{randomization_list.pk}/")
