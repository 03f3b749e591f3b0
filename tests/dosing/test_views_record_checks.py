"""The dose page refuses the impossible beside each field and keeps what was typed; a far
time brings up the confirmation; a wrong record is voided on its own page."""

from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from dosing.models import Administration, DoseStatus, ScheduledDose
from dosing.services import dose_record
from tests.dosing.conftest import site_time

pytestmark = pytest.mark.django_db

TOKEN = "7f0c7a52-3a5e-4c55-9d6e-5f1d1e1b2a01"


def post(client, dose, **data):
    form = {
        "submission_token": TOKEN,
        "outcome": "given",
        "given_at": "2026-03-11T08:05",
        "amount": "300",
        "route": "oral",
        "lot_number": "PAX-2603-17",
    } | data
    return client.post(reverse("dosing:dose_record", args=[dose.pk]), form)


def test_an_overdue_dose_proposes_now_not_the_end_of_its_window_and_300_not_3e2(
    pax_doses, client_for, site_a, coordinator_a
):
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 14, 37, 20), tick=False):
        response = client_for(coordinator_a).get(
            reverse("dosing:dose_record", args=[pax_doses[0].pk])
        )
    form = response.context["form"]
    assert str(form["given_at"].value()) == "2026-03-11 14:37:00"
    assert 'value="2026-03-11T14:37"' in response.text
    assert 'name="amount" value="300"' in response.text
    assert "3E+2" not in response.text
    assert "Amount given (mg nirmatrelvir)" in response.text


def test_impossible_amount_and_time_are_refused_beside_their_fields_and_kept(
    pax_doses, client_for, site_a, coordinator_a
):
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 8, 30), tick=False):
        response = post(
            client_for(coordinator_a),
            pax_doses[0],
            given_at="1960-01-01T08:00",
            amount="300000000",
        )
    assert response.status_code == 200
    assert response.context["form"].errors == {
        "given_at": [
            "The dose cannot have been given before randomization (2026-03-10 10:00 UTC+08:00)."
        ],
        "amount": [
            "Not plausible for a planned 300 mg nirmatrelvir: the amount given must be between "
            "150 and 600 mg nirmatrelvir. Check the number typed."
        ],
    }
    assert 'value="1960-01-01T08:00"' in response.text
    assert 'value="300000000"' in response.text
    assert 'id="error_1_id_given_at"' in response.text
    assert 'id="error_1_id_amount"' in response.text
    assert not Administration.objects.exists()


def test_a_time_in_the_future_is_refused(pax_doses, client_for, site_a, coordinator_a):
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 8, 30), tick=False):
        response = post(client_for(coordinator_a), pax_doses[0], given_at="2026-03-11T08:31")
    assert response.context["form"].errors == {
        "given_at": ["The time given cannot be in the future."]
    }


def test_far_outside_the_window_shows_the_confirmation_then_records_with_the_reason(
    pax_doses, client_for, site_a, coordinator_a
):
    dose_10 = pax_doses[9]
    client = client_for(coordinator_a)
    with time_machine.travel(site_time(site_a, 2026, 3, 10, 21, 0), tick=False):
        page = client.get(reverse("dosing:dose_record", args=[dose_10.pk]))
        assert 'name="confirm_outside_window"' not in page.text
        response = post(client, dose_10, given_at="2026-03-10T20:00")
        assert response.context["form"].errors == {
            "given_at": [
                "This is 118.00 h outside the dose's window (2026-03-15 18:00 UTC+08:00 to "
                "2026-03-15 22:00 UTC+08:00). If the time is right, tick the confirmation and "
                "give the reason."
            ]
        }
        # Right under the time it is about, before the amount.
        html = response.text
        assert (
            html.index('name="given_at"')
            < html.index('name="confirm_outside_window"')
            < html.index('name="outside_window_reason"')
            < html.index('name="amount"')
        )
        assert not Administration.objects.exists()
        response = post(
            client,
            dose_10,
            given_at="2026-03-10T20:00",
            confirm_outside_window="on",
            outside_window_reason="",
        )
        assert response.context["form"].errors == {
            "outside_window_reason": [
                "Give the reason the dose was given so far outside its window."
            ]
        }
        assert 'id="id_confirm_outside_window" checked' in response.text
        response = post(
            client,
            dose_10,
            given_at="2026-03-10T20:00",
            confirm_outside_window="on",
            outside_window_reason="Weekend supply handed over early",
        )
    assert response.status_code == 302
    record = Administration.objects.get()
    assert record.outside_window_reason == "Weekend supply handed over early"


def void_url(dose):
    return reverse("dosing:administration_void", args=[dose.pk])


@pytest.fixture
def recorded(pax_doses, site_a, coordinator_a):
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 8, 30), tick=False):
        dose_record(
            dose=pax_doses[0],
            user=coordinator_a,
            outcome="given",
            given_at=site_time(site_a, 2026, 3, 11, 8, 5),
            amount=Decimal("300"),
            lot_number="PAX-2603-17",
        )
    return pax_doses[0]


def test_voiding_needs_a_reason_then_reopens_the_dose_on_the_timeline(
    recorded, client_for, site_a, coordinator_a
):
    client = client_for(coordinator_a)
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 9, 0), tick=False):
        page = client.get(void_url(recorded))
        assert "Given 2026-03-11 08:05 · 300 mg nirmatrelvir · lot PAX-2603-17" in page.text
        response = client.post(void_url(recorded), {"reason": ""})
        assert response.context["form"].errors == {"reason": ["This field is required."]}
        assert not Administration.objects.get().is_void
        response = client.post(void_url(recorded), {"reason": "Recorded on the wrong patient"})
        assert response.status_code == 302
        timeline = client.get(response["Location"])
        # Nothing left to void or correct: the pages say not found.
        assert client.get(void_url(recorded)).status_code == 404
        correct = reverse("dosing:administration_correct", args=[recorded.pk])
        assert client.get(correct).status_code == 404
    assert "The record of dose 1 was voided; the dose is open for recording again." in timeline.text
    assert Administration.objects.get().void_reason == "Recorded on the wrong patient"
    assert ScheduledDose.objects.get(pk=recorded.pk).status == DoseStatus.SCHEDULED
    assert reverse("dosing:dose_record", args=[recorded.pk]) in timeline.text
    assert reverse("dosing:administration_correct", args=[recorded.pk]) not in timeline.text
    assert 'data-testid="void-record"' in timeline.text


def test_the_outsider_cannot_void_and_the_monitor_is_refused(
    recorded, client_for, coordinator_b, monitor
):
    assert client_for(coordinator_b).get(void_url(recorded)).status_code == 404
    assert client_for(coordinator_b).post(void_url(recorded), {"reason": "x"}).status_code == 404
    assert client_for(monitor).post(void_url(recorded), {"reason": "x"}).status_code == 403
    assert not Administration.objects.get().is_void


def test_the_correction_page_shows_the_amount_as_typed_and_links_to_void(
    recorded, client_for, coordinator_a
):
    page = client_for(coordinator_a).get(
        reverse("dosing:administration_correct", args=[recorded.pk])
    )
    assert 'name="amount" value="300"' in page.text
    assert "300.0000" not in page.text
    assert void_url(recorded) in page.text
