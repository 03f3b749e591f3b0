"""The work queues, the participant list's search and the enrollment chart in headless
Chromium, on a phone (390 px) and a desktop (1366 px): a coordinator follows a count to its
list and a row to its form, searches a study number, and reads the chart beside its table.
The screenshots are kept in tests/output/screenshots."""

import pytest

from tests.conftest import log_in, screenshot
from tests.factories import active_randomization_list
from tests.trialsite.test_work_queues import add_work

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE, DESKTOP = 390, 1366


@pytest.fixture
def work(protocol, site_a, site_b, cast):
    randomization_list = active_randomization_list(administrator=cast["administrator"], seed=3)
    return add_work(site_a, cast["coordinator_a"], cast["investigator_a"], randomization_list, 2)


def test_a_coordinator_goes_from_a_queue_to_its_form_and_finds_a_study_number(page, cast, work):
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, cast["coordinator_a"])
    for width in (PHONE, DESKTOP):
        page.set_viewport_size({"width": width, "height": 844})
        page.goto("/home/coordinator/")
        assert page.get_by_test_id("queue-count-visits-overdue").inner_text().startswith("2")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        screenshot(page, f"work-queues-coordinator-{width}")
        page.goto("/participants/?q=she-000")
        assert page.locator("#id_q").input_value() == "she-000"
        assert page.get_by_test_id("participant-row").count() == 9
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        screenshot(page, f"participant-list-search-{width}")
        page.goto("/oversight/enrollment/")
        assert page.get_by_test_id("chart-site").is_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        screenshot(page, f"enrollment-over-time-{width}")

    page.goto("/home/coordinator/")
    page.get_by_test_id("queue-count-screenings").click()
    page.wait_for_url("**/home/coordinator/queues/screenings/")
    assert page.get_by_test_id("queue-row").count() == 4
    page.get_by_test_id("queue-row").first.get_by_role("link", name="Screen").click()
    page.wait_for_url("**/screen/")
    assert page.get_by_role("button", name="Save screening").is_visible()


def test_the_data_managers_home_reads_on_a_phone_and_a_desktop(page, cast, work):
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, cast["data_manager"])
    for width in (PHONE, DESKTOP):
        page.set_viewport_size({"width": width, "height": 844})
        page.goto("/home/data_manager/")
        assert page.get_by_test_id("queue-count-out-of-window").inner_text().startswith("2")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        screenshot(page, f"work-queues-data-manager-{width}")
