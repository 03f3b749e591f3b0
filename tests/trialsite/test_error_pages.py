"""The 403 and 404 pages of a live install (DEBUG off) keep the site's navigation, so a user
sent to the wrong page finds their way back without the Back button."""

import pytest
from django.test import override_settings

from tests.factories import ParticipantFactory

NAVIGATION = (
    '<a class="nav-link" href="/participants/">Participants</a>',
    'href="/home/coordinator/"',
    "Log out",
    'href="#main"',
)


@pytest.fixture
def live_install():
    with override_settings(DEBUG=False):
        yield


def test_a_page_of_another_role_is_refused_with_the_navigation(
    live_install, client_for, coordinator_a
):
    response = client_for(coordinator_a).get("/users/")  # the administrator's page
    assert response.status_code == 403
    page = response.content.decode()
    assert "Your role in the trial does not give you this page." in page
    for link in NAVIGATION:
        assert link in page


def test_another_sites_participant_is_not_found_with_the_navigation(
    live_install, client_for, coordinator_a, coordinator_b, site_b, protocol
):
    elsewhere = ParticipantFactory(site=site_b, user=coordinator_b)
    response = client_for(coordinator_a).get(f"/participants/{elsewhere.study_number}/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "There is no such page, or it belongs to a site you do not work at." in page
    for link in NAVIGATION:
        assert link in page
