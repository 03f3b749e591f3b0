"""Correcting a recorded visit: with a reason, checked as the first record was, the visit's
status following a new date, a death ending the study and never undone here; the page for
the site's coordinators and investigators only, bad input beside its field and kept."""

import datetime
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse

from outcomes.models import EndOfStudy, ScheduledVisit, VisitRecord, VisitStatus
from outcomes.services import visit_record, visit_record_correct
from tests.outcomes.visit_helpers import randomized, site_time

pytestmark = pytest.mark.django_db

MEASURED = {
    "who_score": 5,
    "spo2": 94,
    "respiratory_support": "oxygen",
    "pao2": Decimal("82"),
    "fio2": Decimal("40"),
    "lymphocytes": None,
    "crp": None,
    "il6": None,
    "chest_ct": "",
}


@pytest.fixture
def allocation(protocol, site_a, coordinator_a, investigator_a, administrator):
    # Day 0 is 2026-03-10 at the site; day 7's window is the 16th to the 18th.
    return randomized(
        site=site_a,
        coordinator=coordinator_a,
        investigator=investigator_a,
        administrator=administrator,
        at=site_time(site_a, 2026, 3, 10, 10, 0),
    )


@pytest.fixture(autouse=True)
def on_the_20th(site_a):
    with time_machine.travel(site_time(site_a, 2026, 3, 20, 15, 0), tick=False):
        yield


@pytest.fixture
def day_7(allocation, coordinator_a):
    visit = ScheduledVisit.objects.get(participant=allocation.participant, definition__code="D7")
    return visit_record(
        scheduled_visit=visit,
        user=coordinator_a,
        visit_date=datetime.date(2026, 3, 17),
        vital_status="alive",
        measurements=MEASURED,
    )


def correct(record, user, **changes):
    fields = {
        "visit_date": record.visit_date,
        "vital_status": record.vital_status,
        "discharged_on": record.discharged_on,
        "date_of_death": record.date_of_death,
        "reason": "Transcription error",
    }
    measurements = dict(MEASURED)
    for name, value in changes.items():
        (fields if name in fields else measurements)[name] = value
    return visit_record_correct(record=record, user=user, measurements=measurements, **fields)


def test_a_corrected_score_is_kept_with_its_reason_and_the_visit_stays_done(day_7, coordinator_a):
    correct(day_7, coordinator_a, who_score=4)
    record = VisitRecord.objects.get(pk=day_7.pk)
    assert record.who_score == 4
    latest = record.history.order_by("-history_id").first()
    assert (latest.history_change_reason, latest.history_user) == (
        "Transcription error",
        coordinator_a,
    )
    assert record.scheduled_visit.status == VisitStatus.DONE


@pytest.mark.parametrize(
    "visit_date,status,outside",
    [
        (datetime.date(2026, 3, 18), VisitStatus.DONE, None),  # the window's last day
        (datetime.date(2026, 3, 19), VisitStatus.DONE_OUT_OF_WINDOW, 1),
        (datetime.date(2026, 3, 15), VisitStatus.DONE_OUT_OF_WINDOW, -1),
    ],
)
def test_a_new_date_moves_the_visit_in_or_out_of_its_window(
    day_7, coordinator_a, visit_date, status, outside
):
    correct(day_7, coordinator_a, visit_date=visit_date)
    visit = ScheduledVisit.objects.get(pk=day_7.scheduled_visit_id)
    assert (visit.status, visit.days_outside_window) == (status, outside)
    assert visit.history.order_by("-history_id").first().history_change_reason == (
        "Transcription error"
    )


@pytest.mark.parametrize(
    "changes,field,message",
    [
        ({"reason": "  "}, "reason", "Give the reason for the change."),
        ({"who_score": 11}, "who_score", "The WHO score must be between 0 and 10."),
        ({"visit_date": datetime.date(2026, 3, 21)}, "visit_date", "in the future"),
        ({}, "__all__", "Nothing was changed"),
    ],
)
def test_a_bad_correction_changes_nothing(day_7, coordinator_a, changes, field, message):
    before = list(VisitRecord.history.values_list("history_id", flat=True))
    with pytest.raises(ValidationError) as refused:
        correct(day_7, coordinator_a, **changes)
    assert message in " ".join(refused.value.message_dict[field])
    assert list(VisitRecord.history.values_list("history_id", flat=True)) == before
    assert VisitRecord.objects.get(pk=day_7.pk).who_score == 5


def test_a_death_recorded_by_correction_ends_the_study_and_is_not_undone(day_7, coordinator_a):
    correct(day_7, coordinator_a, vital_status="dead", date_of_death=datetime.date(2026, 3, 17))
    end = EndOfStudy.objects.get(participant=day_7.scheduled_visit.participant)
    assert (end.reason, end.ended_on) == ("died", datetime.date(2026, 3, 17))
    record = VisitRecord.objects.get(pk=day_7.pk)
    with pytest.raises(ValidationError) as refused:
        correct(record, coordinator_a, vital_status="alive", date_of_death=None)
    assert "not undone" in refused.value.message_dict["vital_status"][0]
    assert VisitRecord.objects.get(pk=day_7.pk).vital_status == "dead"


def test_the_correction_page(day_7, cast, client_for):
    url = reverse("outcomes:visit_record_correct", args=[day_7.scheduled_visit_id])
    for role, status in (("monitor", 403), ("coordinator_b", 404), ("investigator_a", 200)):
        assert client_for(cast[role]).get(url).status_code == status, role
    client = client_for(cast["coordinator_a"])
    form = client.get(url).content.decode()
    assert 'value="2026-03-17"' in form and 'value="94"' in form  # what was recorded

    typed = {
        "visit_date": "2026-03-17",
        "who_score": "4",
        "spo2": "45",
        "respiratory_support": "oxygen",
        "pao2": "82",
        "fio2": "0.4",
        "vital_status": "alive",
        "reason": "",
    }
    page = client.post(url, typed).content.decode()
    assert "This field is required." in page  # the reason
    assert "SpO2 must be between 50 and 100 %." in page
    assert 'value="45"' in page  # kept as typed
    assert VisitRecord.objects.get(pk=day_7.pk).who_score == 5

    typed.update(spo2="94", reason="Score misread from the chart")
    response = client.post(url, typed)
    assert response.status_code == 302
    assert VisitRecord.objects.get(pk=day_7.pk).who_score == 4
    detail = client.get(response.url).content.decode()
    assert "corrected" in detail
