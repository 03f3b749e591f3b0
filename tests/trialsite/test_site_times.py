"""One rule for times on pages: the site's time with its offset, and the site's date.

Pinned at 20:21 UTC on 25 November, which is already 04:21 on the 26th in Shanghai: every
page must say the 26th for something that happened at the site then.
"""

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from enrollment.models import Signer
from enrollment.services import consent_record
from tests.factories import ConsentVersionFactory, ParticipantFactory

pytestmark = pytest.mark.django_db

EVENING_UTC = datetime(2026, 11, 25, 20, 21, tzinfo=UTC)


@pytest.fixture
def registered_in_the_morning(protocol, site_a, coordinator_a):
    with time_machine.travel(EVENING_UTC, tick=False):
        return ParticipantFactory(site=site_a, user=coordinator_a)


def test_the_participant_list_and_page_agree_on_the_registration_date(
    registered_in_the_morning, coordinator_a, client_for
):
    client = client_for(coordinator_a)
    listed = client.get(reverse("enrollment:participant_list")).content.decode()
    assert "2026-11-26" in listed
    assert "2026-11-25" not in listed
    page = client.get(
        reverse("enrollment:participant_detail", args=[registered_in_the_morning.study_number])
    ).content.decode()
    assert "2026-11-26 04:21 UTC+08:00" in page


def test_the_reconsent_list_shows_the_consents_site_time(
    registered_in_the_morning, coordinator_a, client_for
):
    version = ConsentVersionFactory(version="1.0", irb_approval_date=date(2026, 1, 5))
    with time_machine.travel(EVENING_UTC + timedelta(minutes=10), tick=False):
        consent_record(
            participant=registered_in_the_morning,
            user=coordinator_a,
            version=version,
            consented_at=EVENING_UTC + timedelta(minutes=9),
            signer=Signer.LAR,
            lar_name="Li Wei",
            lar_relationship="Son",
            copy_given=True,
        )
        page = client_for(coordinator_a).get(reverse("enrollment:reconsent_list"))
    assert "2026-11-26 04:30 UTC+08:00" in page.content.decode()
