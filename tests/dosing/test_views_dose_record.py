"""Recording a dose on its page: site time, field errors, deviation, access."""

from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from dosing.models import Administration, DoseStatus, Reminder
from tests.dosing.conftest import randomize, site_time

pytestmark = pytest.mark.django_db


@pytest.fixture
def day4(participant_a, site_a, coordinator_a):
    at = site_time(site_a, 2026, 3, 10, 8, 0)
    with time_machine.travel(at, tick=False):
        return randomize(participant_a, "MSC", at=at, user=coordinator_a)[1]


def post(client, dose, **data):
    form = {
        "submission_token": "7f0c7a52-3a5e-4c55-9d6e-5f1d1e1b2a01",
        "outcome": "given",
        "given_at": "2026-03-14T23:59",
        "amount": "62000000",
        "route": "intravenous",
        "lot_number": "UCMSC-2603-B",
    } | data
    return client.post(reverse("dosing:dose_record", args=[dose.pk]), form)


def test_the_time_is_typed_in_site_time_and_2359_is_on_time(
    day4, client_for, site_a, coordinator_a
):
    with time_machine.travel(site_time(site_a, 2026, 3, 15, 8, 0), tick=False):
        response = post(client_for(coordinator_a), day4)
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "dosing:participant_timeline", args=[day4.participant.study_number]
    )
    record = Administration.objects.get()
    assert record.given_at == site_time(site_a, 2026, 3, 14, 23, 59)
    assert record.deviation_hours is None
    assert (record.lot_number, record.amount) == ("UCMSC-2603-B", Decimal("62000000"))
    assert not Reminder.objects.filter(scheduled_dose=day4, status="pending").exists()


def test_0001_next_day_is_flagged_as_a_deviation(day4, client_for, site_a, coordinator_a):
    with time_machine.travel(site_time(site_a, 2026, 3, 15, 8, 0), tick=False):
        response = post(client_for(coordinator_a), day4, given_at="2026-03-15T00:01")
        page = client_for(coordinator_a).get(response["Location"])
    assert Administration.objects.get().deviation_hours == Decimal("0.02")
    assert "Given outside its window by 0.02 h: a protocol deviation." in page.text


def test_a_missing_lot_number_stays_on_the_form_with_the_message_and_writes_nothing(
    day4, client_for, site_a, coordinator_a
):
    with time_machine.travel(site_time(site_a, 2026, 3, 14, 12, 0), tick=False):
        response = post(client_for(coordinator_a), day4, given_at="2026-03-14T11:00", lot_number="")
    assert response.status_code == 200
    assert response.context["form"].errors == {"lot_number": ["Give the lot or batch number."]}
    assert not Administration.objects.exists()
    day4.refresh_from_db()
    assert day4.status == DoseStatus.SCHEDULED


def test_an_infusion_reaction_prompts_an_adverse_event_report(
    day4, client_for, site_a, coordinator_a
):
    with time_machine.travel(site_time(site_a, 2026, 3, 14, 12, 0), tick=False):
        response = post(
            client_for(coordinator_a), day4, given_at="2026-03-14T11:00", infusion_reaction="on"
        )
        page = client_for(coordinator_a).get(response["Location"])
    assert "An infusion reaction was recorded: report it as an adverse event." in page.text
    assert Administration.objects.get().infusion_reaction is True


def test_outsider_gets_404_and_monitor_403_and_nothing_is_written(
    day4, client_for, site_a, coordinator_b, monitor, data_manager
):
    with time_machine.travel(site_time(site_a, 2026, 3, 14, 12, 0), tick=False):
        assert post(client_for(coordinator_b), day4, given_at="2026-03-14T11:00").status_code == 404
        assert (
            client_for(coordinator_b).get(reverse("dosing:dose_record", args=[day4.pk])).status_code
            == 404
        )
        assert post(client_for(monitor), day4, given_at="2026-03-14T11:00").status_code == 403
        assert post(client_for(data_manager), day4, given_at="2026-03-14T11:00").status_code == 403
    assert not Administration.objects.exists()


def test_a_correction_needs_a_reason_and_is_audited(
    day4, client_for, site_a, coordinator_a, investigator_a
):
    with time_machine.travel(site_time(site_a, 2026, 3, 14, 12, 0), tick=False):
        post(client_for(coordinator_a), day4, given_at="2026-03-14T11:00")
        url = reverse("dosing:administration_correct", args=[day4.pk])
        client = client_for(investigator_a)
        form = {
            "given_at": "2026-03-14T11:00",
            "amount": "62000000",
            "route": "intravenous",
            "lot_number": "UCMSC-2603-C",
        }
        response = client.post(url, form)
        assert response.context["form"].errors == {"reason": ["This field is required."]}
        response = client.post(url, form | {"reason": "Lot number misread"})
    assert response.status_code == 302
    record = Administration.objects.get()
    assert record.lot_number == "UCMSC-2603-C"
    assert record.history.first().history_change_reason == "Lot number misread"
