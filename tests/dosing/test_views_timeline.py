"""The participant's dosing timeline (page and partial) and the reminders page."""

import pytest
import time_machine
from django.template import Context, Template
from django.urls import reverse

from dosing.models import Reminder
from dosing.services import dose_record
from tests.dosing.conftest import MRN, NAME, randomize, site_time

pytestmark = pytest.mark.django_db


@pytest.fixture
def doses(participant_a, site_a, coordinator_a):
    at = site_time(site_a, 2026, 3, 10, 8, 0)
    with time_machine.travel(at, tick=False):
        return randomize(participant_a, "MSC", at=at, user=coordinator_a)


def test_the_timeline_counts_given_infusions(doses, client_for, site_a, coordinator_a):
    url = reverse("dosing:participant_timeline", args=[doses[0].participant.study_number])
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 12, 0), tick=False):
        dose_record(
            dose=doses[0],
            user=coordinator_a,
            outcome="given",
            given_at=site_time(site_a, 2026, 3, 11, 9, 10),
            amount=doses[0].planned_amount,
            lot_number="L1",
        )
        response = client_for(coordinator_a).get(url)
    assert response.status_code == 200
    assert "1/2 infusions" in response.text
    assert "2026-03-14 09:00" in response.text  # site time, not UTC (01:00)
    assert NAME not in response.text and MRN not in response.text


def test_the_partial_renders_from_the_template_tag(doses, rf, coordinator_a):
    html = Template("{% load dosing %}{% dosing_timeline participant %}").render(
        Context({"participant": doses[0].participant})
    )
    assert "0/2 infusions" in html and 'data-testid="dosing-timeline"' in html


def test_the_outsider_gets_404_on_the_timeline_and_the_reminders_of_a_participant(
    doses, client_for, coordinator_b
):
    number = doses[0].participant.study_number
    client = client_for(coordinator_b)
    assert client.get(reverse("dosing:participant_timeline", args=[number])).status_code == 404
    assert client.get(reverse("dosing:reminder_list") + f"?participant={number}").status_code == 404
    assert number not in client.get(reverse("dosing:reminder_list")).text


def test_reminders_page_tabs_and_resend_of_a_failed_one(
    doses, client_for, coordinator_a, coordinator_b, monitor
):
    failed = Reminder.objects.order_by("due_at").first()
    Reminder.objects.filter(pk=failed.pk).update(
        status="failed", attempts=5, last_error="SMTPServerDisconnected: gone", interrupted=1
    )
    client = client_for(coordinator_a)
    upcoming = client.get(reverse("dosing:reminder_list"))
    assert [(n, c) for n, _, c in upcoming.context["tabs"]] == [
        ("upcoming", 5),
        ("sent", 0),
        ("failed", 1),
        ("cancelled", 0),
    ]
    page = client.get(reverse("dosing:reminder_list") + "?tab=failed")
    assert "SMTPServerDisconnected: gone" in page.text
    assert "interrupted once: may have arrived twice" in page.text
    resend = reverse("dosing:reminder_resend", args=[failed.pk])
    assert client_for(coordinator_b).post(resend).status_code == 404
    assert client_for(monitor).post(resend).status_code == 403
    failed.refresh_from_db()
    assert failed.status == "failed"
    response = client_for(coordinator_a).post(resend)
    assert response.status_code == 302
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("pending", 0)
