"""Adverse-event, SAE-report and end-of-study pages: the fixed cast, the outsider's 404, the
monitor reads only, bad input beside its field with nothing saved."""

import datetime
import re

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dosing.models import ScheduledDose
from dosing.services import dose_record
from outcomes.models import AdverseEvent, CausalityAssessment, EndOfStudy, SaeAlert
from outcomes.services import adverse_event_record
from tests.factories import PASSWORD, user_with_role
from tests.outcomes.ae_helpers import randomized_to, site_time
from trialsite.core.models import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def msc(protocol, site_a, coordinator_a, investigator_a, administrator):
    return randomized_to(
        "MSC",
        site=site_a,
        coordinator=coordinator_a,
        investigator=investigator_a,
        administrator=administrator,
        at=site_time(site_a, 2026, 3, 10, 10, 0),
    )


@pytest.fixture(autouse=True)
def on_day_2(site_a):
    with time_machine.travel(site_time(site_a, 2026, 3, 12, 15, 0), tick=False) as traveller:
        yield traveller


@pytest.fixture
def serious(msc, coordinator_a):
    return adverse_event_record(
        participant=msc.participant,
        user=coordinator_a,
        term="Pneumonia",
        onset_date=datetime.date(2026, 3, 11),
        end_date=None,
        grade=3,
        death_date=None,
        serious=True,
        criteria={"hospitalisation"},
        action_taken="none",
        outcome="recovering",
    )


FORM = {
    "term": "Rash",
    "onset_date": "2026-03-11",
    "end_date": "",
    "grade": "2",
    "death_date": "",
    "action_taken": "none",
    "outcome": "recovering",
    "submission_token": "7d6f4c1e-2b1a-4c59-8a5e-3c1d2e4f5a6b",
}


def test_the_list_for_each_role(msc, serious, cast, client_for):
    number = msc.participant.study_number
    url = reverse("outcomes:ae_list", args=[number])
    for role, status in (
        ("coordinator_a", 200),
        ("investigator_a", 200),
        ("monitor", 200),
        ("data_manager", 200),
        ("coordinator_b", 404),
    ):
        response = client_for(cast[role]).get(url)
        assert response.status_code == status, role
    page = client_for(cast["coordinator_a"]).get(url).content.decode()
    assert "Pneumonia" in page and "24 h 00 min left" in page
    assert 'data-testid="record-ae"' in page
    monitor_page = client_for(cast["monitor"]).get(url).content.decode()
    assert 'data-testid="record-ae"' not in monitor_page
    assert 'data-testid="mark-reported"' not in monitor_page


def test_bad_input_stays_in_the_form_with_its_message_and_nothing_is_saved(
    msc, coordinator_a, client_for
):
    url = reverse("outcomes:ae_record", args=[msc.participant.study_number])
    response = client_for(coordinator_a).post(
        url, FORM | {"end_date": "2026-03-10", "serious": "on"}
    )
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors == {
        "end_date": ["The event cannot end before its onset (2026-03-11)."],
        "serious": ["A serious event needs at least one seriousness criterion."],
    }
    assert 'value="Rash"' in response.content.decode()
    assert (AdverseEvent.objects.count(), SaeAlert.objects.count()) == (0, 0)


def test_grade_5_without_a_date_of_death_is_refused_beside_the_date(msc, coordinator_a, client_for):
    url = reverse("outcomes:ae_record", args=[msc.participant.study_number])
    response = client_for(coordinator_a).post(
        url, FORM | {"grade": "5", "serious": "on", "criteria": ["death"]}
    )
    assert response.context["form"].errors == {
        "death_date": ["A grade 5 event is a death: give the date of death."]
    }
    assert not AdverseEvent.objects.exists() and not EndOfStudy.objects.exists()


def test_a_recorded_serious_event_says_when_its_report_is_due(msc, coordinator_a, client_for):
    url = reverse("outcomes:ae_record", args=[msc.participant.study_number])
    response = client_for(coordinator_a).post(
        url, FORM | {"serious": "on", "criteria": ["hospitalisation"], "grade": "3"}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse(
        "outcomes:ae_list", args=[msc.participant.study_number]
    )
    text = response.content.decode()
    assert "by 2026-03-13 15:00 UTC+08:00" in text
    assert SaeAlert.objects.count() == 2


def test_an_infusion_reaction_opens_the_form_prefilled(msc, coordinator_a, client_for, site_a):
    dose = ScheduledDose.objects.filter(participant=msc.participant).order_by("due_at").first()
    administration = dose_record(
        dose=dose,
        user=coordinator_a,
        outcome="given",
        given_at=site_time(site_a, 2026, 3, 11, 9, 10),
        amount=dose.planned_amount,
        route="intravenous",
        lot_number="LOT-7",
        infusion_reaction=True,
    )
    client = client_for(coordinator_a)
    detail = client.get(
        reverse("enrollment:participant_detail", args=[msc.participant.study_number])
    )
    link = (
        reverse("outcomes:ae_record", args=[msc.participant.study_number])
        + f"?administration={administration.pk}"
    )
    assert link in detail.content.decode()
    form = client.get(link).context["form"]
    assert (form.initial["term"], form.initial["onset_date"], form.initial["administration"]) == (
        "Infusion-related reaction",
        datetime.date(2026, 3, 11),
        administration.pk,
    )
    client.post(
        link, FORM | {"term": "Infusion-related reaction", "administration": administration.pk}
    )
    assert AdverseEvent.objects.get().administration == administration
    again = client.get(
        reverse("enrollment:participant_detail", args=[msc.participant.study_number])
    )
    assert link not in again.content.decode()  # reported: no second offer


def test_causality_is_signed_by_the_sites_investigator_only(
    serious, cast, client_for, site_b, investigator_a
):
    url = reverse("outcomes:ae_causality", args=[serious.pk])
    assert client_for(cast["coordinator_a"]).get(url).status_code == 403
    outsider = user_with_role(Role.INVESTIGATOR, site_b, username="dora")
    assert client_for(outsider).get(url).status_code == 404
    client = client_for(investigator_a)
    form = client.get(url).context["form"]
    fields = [name for name in form.fields if name.startswith("related_")]
    assert len(fields) == 2  # two infusions
    wrong = client.post(url, {**{f: "possible" for f in fields}, "expected": "no", "password": "x"})
    assert wrong.context["form"].errors == {"password": ["The password is not correct."]}
    assert not CausalityAssessment.objects.exists()
    client.post(url, {**{f: "possible" for f in fields}, "expected": "no", "password": PASSWORD})
    assert CausalityAssessment.objects.get().relatedness.count() == 2


def test_open_reports_show_the_time_left_in_the_users_sites_only(serious, cast, client_for):
    url = reverse("outcomes:ae_open_reports")
    page = client_for(cast["investigator_a"]).get(url).content.decode()
    assert serious.participant.study_number in page and "24 h 00 min left" in page
    assert "Serious adverse event recorded: Upcoming" in page
    assert "Not reported after 24 hours: Upcoming · Due 2026-03-13 15:00 UTC+08:00" in page
    assert serious.participant.study_number not in (
        client_for(cast["coordinator_b"]).get(url).content.decode()
    )


def test_the_report_is_recorded_and_the_follow_up_cancelled(serious, coordinator_a, client_for):
    url = reverse("outcomes:ae_report", args=[serious.pk])
    future = client_for(coordinator_a).post(url, {"reported_on": "2026-03-13"})
    assert future.context["form"].errors == {
        "reported_on": ["The report date is in the future (today at the site is 2026-03-12)."]
    }
    client_for(coordinator_a).post(url, {"reported_on": "2026-03-12"})
    serious.refresh_from_db()
    assert serious.reported_on == datetime.date(2026, 3, 12)
    assert SaeAlert.objects.get(kind="follow_up").status == "cancelled"


def test_end_of_study_page(msc, cast, client_for):
    url = reverse("outcomes:end_of_study", args=[msc.participant.study_number])
    assert client_for(cast["coordinator_b"]).get(url).status_code == 404
    assert client_for(cast["monitor"]).get(url).status_code == 403
    assert client_for(cast["monitor"]).post(url, {}).status_code == 403
    client = client_for(cast["coordinator_a"])
    early = client.post(url, {"reason": "completed", "ended_on": "2026-03-12"})
    assert early.context["form"].errors == {
        "ended_on": ["Completed means day 28 was reached: day 28 is 2026-04-07."]
    }
    assert not EndOfStudy.objects.exists()
    client.post(url, {"reason": "lost", "ended_on": "2026-03-12", "details": "No answer"})
    assert EndOfStudy.objects.get().reason == "lost"
    assert client.get(url).status_code == 302  # ended: the page says so on the list


def test_the_roster_counts_open_adverse_events(serious, investigator_a, client_for):
    from tests.arms.test_views_roster import table_rows

    rows = table_rows(client_for(investigator_a).get(reverse("arms:roster")))
    header, *body = rows
    column = header.index("Open AEs")
    counts = {row[0]: row[column] for row in body}
    assert counts[serious.participant.study_number] == "1"
    assert {v for k, v in counts.items() if k != serious.participant.study_number} == {""}


def test_an_event_is_changed_with_its_reason_and_closes(serious, coordinator_a, client_for):
    url = reverse("outcomes:ae_change", args=[serious.pk])
    client = client_for(coordinator_a)
    form = client.get(url).context["form"]
    assert form.initial["criteria"] == ["hospitalisation"]
    closed = {
        **FORM,
        "term": "Pneumonia",
        "grade": "3",
        "serious": "on",
        "criteria": ["hospitalisation"],
        "end_date": "2026-03-12",
        "outcome": "recovered",
    }
    without_reason = client.post(url, closed)
    assert without_reason.context["form"].errors == {"reason": ["This field is required."]}
    serious.refresh_from_db()
    assert serious.end_date is None
    client.post(url, closed | {"reason": "Discharged from the ward"})
    serious.refresh_from_db()
    assert (serious.end_date, serious.outcome) == (datetime.date(2026, 3, 12), "recovered")
    assert serious.history.first().history_change_reason == "Discharged from the ward"
    assert SaeAlert.objects.filter(adverse_event=serious).count() == 2  # no new clock
    page = client.get(reverse("outcomes:ae_report", args=[serious.pk]))
    assert page.status_code == 200 and "24 h 00 min left" in page.content.decode()


def test_the_reminders_page_shows_each_sae_alert_to_the_site_only(serious, cast, client_for):
    url = reverse("dosing:reminder_list")
    page = client_for(cast["investigator_a"]).get(url).content.decode()
    rows = re.findall(r'data-testid="sae-alert-row" data-kind="(\w+)" data-status="(\w+)"', page)
    # Recorded serious on the 12th at 15:00: the alert at once, the follow-up 24 hours later.
    assert sorted(rows) == [("follow_up", "pending"), ("immediate", "pending")]
    assert "Pneumonia" in page
    assert "24 h 00 min left" in page
    filtered = client_for(cast["investigator_a"]).get(
        url, {"participant": serious.participant.study_number}
    )
    assert filtered.content.decode().count('data-testid="sae-alert-row"') == 2
    other_site = client_for(cast["coordinator_b"]).get(url).content.decode()
    assert 'data-testid="sae-alert-row"' not in other_site
    assert "Pneumonia" not in other_site


def test_the_reminders_page_reads_the_sae_alerts_in_one_query(
    msc, serious, coordinator_a, cast, client_for
):
    client = client_for(cast["investigator_a"])
    url = reverse("dosing:reminder_list")
    client.get(url)
    with CaptureQueriesContext(connection) as one:
        client.get(url)
    adverse_event_record(
        participant=msc.participant,
        user=coordinator_a,
        term="Sepsis",
        onset_date=datetime.date(2026, 3, 12),
        end_date=None,
        grade=4,
        death_date=None,
        serious=True,
        criteria={"life_threatening"},
        action_taken="none",
        outcome="not_recovered",
    )
    with CaptureQueriesContext(connection) as two:
        page = client.get(url).content.decode()
    assert page.count('data-testid="sae-alert-row"') == 4
    assert len(two) == len(one)
