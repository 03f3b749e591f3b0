"""The visits pages: the list, a visit, the visit form (errors beside fields, nothing saved),
site isolation and the monitor's read-only rule."""

import pytest
import time_machine
from django.urls import reverse

from outcomes.models import ScheduledVisit, VisitRecord, VisitStatus
from tests.outcomes.visit_helpers import randomized, site_time

pytestmark = pytest.mark.django_db


@pytest.fixture
def allocation(protocol, site_a, coordinator_a, investigator_a, administrator):
    return randomized(
        site=site_a,
        coordinator=coordinator_a,
        investigator=investigator_a,
        administrator=administrator,
        at=site_time(site_a, 2026, 3, 10, 10, 0),
    )


@pytest.fixture
def day_1(allocation):
    return ScheduledVisit.objects.get(participant=allocation.participant, definition__code="D1")


@pytest.fixture(autouse=True)
def _on_day_1(site_a):
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 14, 0), tick=False):
        yield


FILLED = {
    "visit_date": "2026-03-11",
    "who_score": "5",
    "spo2": "93",
    "respiratory_support": "oxygen",
    "pao2": "80",
    "fio2": "40",
    "lymphocytes": "0.8",
    "crp": "35.5",
    "il6": "12",
    "chest_ct_not_done": "on",
    "chest_ct_not_done_reason": "Scanner down",
    "vital_status": "alive",
}


def test_the_coordinator_records_the_day_1_visit(client_for, coordinator_a, day_1):
    client = client_for(coordinator_a)
    page = client.get(reverse("outcomes:visit_record", args=[day_1.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    # Each WHO level with its description, on the form itself.
    assert "0 · Uninfected: no viral RNA detected" in html
    assert "10 · Dead" in html
    response = client.post(reverse("outcomes:visit_record", args=[day_1.pk]), FILLED)
    assert response.status_code == 302
    saved = VisitRecord.objects.get(scheduled_visit=day_1)
    assert (saved.who_score, str(saved.fio2), saved.pf_ratio) == (5, "0.40", 200)
    assert saved.chest_ct_not_done_reason == "Scanner down"
    day_1.refresh_from_db()
    assert day_1.status == VisitStatus.DONE
    detail = client.get(reverse("outcomes:visit_detail", args=[day_1.pk])).content.decode()
    assert 'data-testid="pf-ratio">200 mmHg' in detail


@pytest.mark.parametrize(
    "typed,field,message",
    [
        ({"spo2": "45"}, "spo2", "SpO2 must be between 50 and 100 %."),
        ({"pao2": "800"}, "pao2", "PaO2 must be between 20 and 700 mmHg."),
        (
            {"fio2": "150"},
            "fio2",
            "FiO2 must be a fraction from 0.21 to 1.0, or a percentage from 21 to 100.",
        ),
        ({"who_score": "11"}, "who_score", "The WHO score must be between 0 and 10."),
        (
            {"visit_date": "2026-03-12"},
            "visit_date",
            "The visit date is in the future (today at the site is 2026-03-11).",
        ),
    ],
)
def test_bad_input_is_shown_beside_its_field_kept_and_nothing_saved(
    client_for, coordinator_a, day_1, typed, field, message
):
    response = client_for(coordinator_a).post(
        reverse("outcomes:visit_record", args=[day_1.pk]), {**FILLED, **typed}
    )
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors == {field: [message]}
    html = response.content.decode()
    assert f'id="error_1_id_{field}"' in html  # crispy's message under the field
    if field != "who_score":  # radio buttons: what was picked stays picked
        assert f'value="{typed[field]}"' in html
    assert 'value="Scanner down"' in html
    assert VisitRecord.objects.count() == 0
    day_1.refresh_from_db()
    assert day_1.status == VisitStatus.DUE


def test_another_sites_visits_are_not_found(client_for, coordinator_b, allocation, day_1):
    client = client_for(coordinator_b)
    study_number = allocation.participant.study_number
    assert (
        client.get(reverse("outcomes:participant_visits", args=[study_number])).status_code == 404
    )
    assert client.get(reverse("outcomes:visit_detail", args=[day_1.pk])).status_code == 404
    assert client.get(reverse("outcomes:visit_record", args=[day_1.pk])).status_code == 404
    assert client.post(reverse("outcomes:visit_record", args=[day_1.pk]), FILLED).status_code == 404
    assert VisitRecord.objects.count() == 0


@pytest.mark.parametrize("reader", ["monitor", "data_manager"])
def test_monitors_and_data_managers_read_and_write_nothing(
    request, client_for, reader, allocation, day_1
):
    client = client_for(request.getfixturevalue(reader))
    listing = client.get(
        reverse("outcomes:participant_visits", args=[allocation.participant.study_number])
    )
    assert listing.status_code == 200
    assert len(listing.context["visits"]) == 6
    assert 'data-testid="record-visit"' not in listing.content.decode()
    assert client.get(reverse("outcomes:visit_detail", args=[day_1.pk])).status_code == 200
    assert client.get(reverse("outcomes:visit_record", args=[day_1.pk])).status_code == 403
    assert client.post(reverse("outcomes:visit_record", args=[day_1.pk]), FILLED).status_code == 403
    assert VisitRecord.objects.count() == 0


def test_the_participant_page_links_to_the_visits(client_for, investigator_a, allocation):
    study_number = allocation.participant.study_number
    html = (
        client_for(investigator_a)
        .get(reverse("enrollment:participant_detail", args=[study_number]))
        .content.decode()
    )
    assert 'data-testid="visits-panel"' in html
    assert "0 of 6 visits done" in html
    assert reverse("outcomes:participant_visits", args=[study_number]) in html
    listing = client_for(investigator_a).get(
        reverse("outcomes:participant_visits", args=[study_number])
    )
    assert listing.content.decode().count('data-testid="record-visit"') == 6


def test_the_roster_shows_the_latest_who_score(client_for, coordinator_a, allocation, day_1):
    client = client_for(coordinator_a)
    client.post(reverse("outcomes:visit_record", args=[day_1.pk]), FILLED)
    progress = client.get(reverse("arms:roster")).context["table"].progress
    assert progress[allocation.participant_id].latest_who_score == "5"


def test_a_value_out_of_range_shows_with_a_missing_date_not_after_it(
    client_for, coordinator_a, day_1
):
    typed = {**FILLED, "visit_date": "", "spo2": "45"}
    response = client_for(coordinator_a).post(
        reverse("outcomes:visit_record", args=[day_1.pk]), typed
    )
    assert response.context["form"].errors == {
        "visit_date": ["This field is required."],
        "spo2": ["SpO2 must be between 50 and 100 %."],
    }
    assert VisitRecord.objects.count() == 0


def test_the_visit_date_proposed_is_the_sites_today(client_for, coordinator_a, day_1):
    response = client_for(coordinator_a).get(reverse("outcomes:visit_record", args=[day_1.pk]))
    assert 'value="2026-03-11"' in response.content.decode()
