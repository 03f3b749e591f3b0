"""The participant page tells the participant's whole story: every event in date order with
its audit history, what is due next at the top, in a number of queries that does not grow
with the story."""

import datetime
import re

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dosing.models import ScheduledDose
from dosing.services import dose_record
from enrollment.models import EligibilitySignoff
from enrollment.signals import TimelineEntry
from enrollment.timeline import story_order
from outcomes.models import ScheduledVisit
from outcomes.services import adverse_event_record, visit_record
from tests.factories import ready_participant
from tests.outcomes.ae_helpers import randomized_to, site_time
from tests.outcomes.test_selectors_endpoints import MEASURED

pytestmark = pytest.mark.django_db

SHANGHAI = datetime.timezone(datetime.timedelta(hours=8))


def test_a_day_only_event_sits_in_its_day_at_the_time_it_was_recorded():
    morning = TimelineEntry(
        at=datetime.datetime(2026, 3, 10, 2, 0, tzinfo=datetime.UTC), kind="a", title=""
    )
    visit = TimelineEntry(
        at=datetime.date(2026, 3, 10),
        order_at=datetime.datetime(2026, 3, 10, 10, 0, tzinfo=datetime.UTC),
        kind="b",
        title="",
    )
    unrecorded = TimelineEntry(at=datetime.date(2026, 3, 10), kind="c", title="")
    recorded_next_day = TimelineEntry(
        at=datetime.date(2026, 3, 9),
        order_at=datetime.datetime(2026, 3, 10, 1, 0, tzinfo=datetime.UTC),
        kind="f",
        title="",
    )
    # 23:30 UTC on the 9th is already the 10th in Shanghai, and before the morning's event.
    late_utc = TimelineEntry(
        at=datetime.datetime(2026, 3, 9, 23, 30, tzinfo=datetime.UTC), kind="d", title=""
    )
    now = TimelineEntry(at=None, kind="e", title="", due=True)
    zone = SHANGHAI
    entries = [unrecorded, visit, morning, late_utc, now, recorded_next_day]
    ordered = sorted(entries, key=lambda e: story_order(e, zone))
    assert [e.kind for e in ordered] == ["e", "f", "d", "a", "b", "c"]


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


def day_0_visit(participant, user):
    visit = ScheduledVisit.objects.get(participant=participant, definition__code="D0")
    with time_machine.travel(site_time(participant.site, 2026, 3, 10, 18, 0), tick=False):
        visit_record(
            scheduled_visit=visit,
            user=user,
            visit_date=datetime.date(2026, 3, 10),
            vital_status="alive",
            discharged_on=None,
            date_of_death=None,
            measurements={**MEASURED, "who_score": 6, "respiratory_support": "high_flow"},
        )


def first_infusion(participant, user):
    dose = ScheduledDose.objects.filter(participant=participant).order_by("due_at").first()
    with time_machine.travel(site_time(participant.site, 2026, 3, 11, 9, 30), tick=False):
        dose_record(
            dose=dose,
            user=user,
            outcome="given",
            given_at=site_time(participant.site, 2026, 3, 11, 9, 10),
            amount=dose.planned_amount,
            route="intravenous",
            lot_number="LOT-7",
        )


def serious_pneumonia(participant, user):
    with time_machine.travel(site_time(participant.site, 2026, 3, 12, 8, 0), tick=False):
        return adverse_event_record(
            participant=participant,
            user=user,
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


def kinds(page: str, testid: str) -> list[str]:
    return re.findall(rf'data-testid="{testid}" data-kind="(\w+)"', page)


def test_the_story_in_date_order_with_what_is_due_next(msc, coordinator_a, client_for):
    participant = msc.participant
    day_0_visit(participant, coordinator_a)
    first_infusion(participant, coordinator_a)
    serious_pneumonia(participant, coordinator_a)
    url = reverse("enrollment:participant_detail", args=[participant.study_number])
    with time_machine.travel(site_time(participant.site, 2026, 3, 12, 15, 0), tick=False):
        page = client_for(coordinator_a).get(url).content.decode()

    assert kinds(page, "timeline-entry") == [
        "consent",  # taken two hours before the patient was registered
        "registration",
        "screening",
        "signoff",
        "allocation",
        "visit",  # day 0, recorded that evening: after the randomization of the morning
        "dose",  # given on the 11th at 09:10
        "adverse_event",  # onset on the 11th, recorded on the 12th: the end of the 11th
    ]
    # Day 1's window closed on the 11th with no record: overdue. The SAE report is due 24
    # hours after the clock started (08:00 on the 12th); the second infusion and the day-4
    # visit on the 14th, the infusion at its hour, the visit at the end of its day.
    assert kinds(page, "due-entry") == ["visit_due", "sae_report_due", "dose_due", "visit_due"]
    due = page[page.index('data-testid="due-next"') : page.index('data-testid="timeline"')]
    assert re.search(r"list-group-item-danger[^>]*data-kind=\"visit_due\"", due)
    assert "Visit D1, Day 1" in due and "Visit D4, Day 4" in due
    # The visits card agrees before the sweep marks day 1 missed.
    assert "1 of 6 visits done" in page and "1 missed" in page
    assert "Next: D4, 2026-03-14 – 2026-03-14" in page
    assert "17 h 00 min left" in page


def test_each_event_links_to_its_record_and_its_audit_history(msc, coordinator_a, client_for):
    participant = msc.participant
    day_0_visit(participant, coordinator_a)
    first_infusion(participant, coordinator_a)
    serious_pneumonia(participant, coordinator_a)
    client = client_for(coordinator_a)
    url = reverse("enrollment:participant_detail", args=[participant.study_number])
    with time_machine.travel(site_time(participant.site, 2026, 3, 12, 15, 0), tick=False):
        page = client.get(url).content.decode()
        timeline = page[page.index('data-testid="timeline"') :]
        histories = re.findall(r'href="([^"]+)" data-testid="history-link"', timeline)
        assert len(histories) == len(kinds(page, "timeline-entry"))
        for link in histories:
            history = client.get(link)
            assert history.status_code == 200, link
            assert participant.name not in history.content.decode()
        links = re.findall(r'<a href="([^"#]+)(?:#[^"]*)?" class="me-auto">', timeline)
        for link in set(links):
            assert client.get(link).status_code == 200, link


def test_the_page_costs_the_same_queries_however_long_the_story(msc, coordinator_a, client_for):
    participant = msc.participant
    client = client_for(coordinator_a)
    url = reverse("enrollment:participant_detail", args=[participant.study_number])

    def queries() -> int:
        with time_machine.travel(site_time(participant.site, 2026, 3, 12, 15, 0), tick=False):
            client.get(url)  # the session and the user's access are read once
            with CaptureQueriesContext(connection) as captured:
                assert client.get(url).status_code == 200
        return len(captured)

    short = queries()
    # Pinned: the page, its panels and every app's part of the story. A query per visit, dose
    # or record would add six or more.
    assert short <= 34
    day_0_visit(participant, coordinator_a)
    first_infusion(participant, coordinator_a)
    serious_pneumonia(participant, coordinator_a)
    assert queries() == short


def test_a_step_is_linked_only_for_a_user_who_may_take_it(
    protocol, site_a, coordinator_a, investigator_a, monitor, client_for
):
    participant = ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)
    signoff = EligibilitySignoff.objects.get(screening__participant=participant)
    signoff._change_reason = "test: the sign-off not given yet"
    signoff.delete()
    url = reverse("enrollment:participant_detail", args=[participant.study_number])
    signoff = reverse("enrollment:eligibility_signoff", args=[participant.study_number])
    for user, linked in ((investigator_a, True), (coordinator_a, False), (monitor, False)):
        page = client_for(user).get(url).content.decode()
        due = page[page.index('data-testid="due-next"') : page.index('data-testid="timeline"')]
        assert kinds(due, "due-entry") == ["signoff_awaited"]
        assert "Eligibility sign-off by an investigator" in due
        assert (f'href="{signoff}"' in due) is linked, user
