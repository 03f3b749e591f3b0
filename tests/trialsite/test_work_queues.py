"""The work queues of the role home pages: each count is its own sites' rows and links to the
list it counts, each row links to the form where the work is done (only for a user who may do
it), another site's participants never appear, and the page costs the same queries for 20
participants as for 2."""

import re
import uuid
from datetime import datetime, time, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from arms.models import Allocation, ListEntry, RandomizationList
from dosing.models import ScheduledDose
from dosing.services import doses_mark_overdue
from enrollment.models import Decision, Screening, Withdrawal, WithdrawalScope
from outcomes.models import ScheduledVisit
from outcomes.services import adverse_event_record, participant_visits_create, visit_record
from tests.dosing.conftest import randomize, screened_participant
from tests.factories import (
    ParticipantFactory,
    active_randomization_list,
    ready_participant,
)
from trialsite.core.audit import audited_save
from trialsite.core.clock import site_today
from trialsite.core.models import Protocol, Role

MEASURED = {"who_score": 4, "respiratory_support": "oxygen"}


def _on_treatment(site, coordinator, randomization_list):
    """A randomized participant on the MSC infusions since four days ago (site date): day 1's
    infusion overdue, day 4's due today; visit D0 overdue, D1 recorded two days late, D4 due
    today."""
    participant = ParticipantFactory(site=site, user=coordinator)
    at = datetime.combine(site_today(site) - timedelta(days=4), time(10, 0), tzinfo=site.zone)
    # The allocation row only (the list's next entry): the doses and visits are written below,
    # on the arm and at the instant the test needs.
    stratum = randomization_list.strata.get(site=site, severity="severe")
    entry = ListEntry.objects.filter(stratum=stratum, allocation__isnull=True).order_by("sequence")[
        0
    ]
    audited_save(
        Allocation(
            participant=participant,
            entry=entry,
            stratum=stratum,
            arm=entry.arm,
            randomization_number=f"R-{stratum.code}-{entry.sequence:04d}",
            randomized_at=at,
            randomized_by=coordinator,
            idempotency_key=uuid.uuid4(),
        ),
        user=coordinator,
    )
    audited_save(
        Screening(
            participant=participant,
            protocol=Protocol.objects.get(is_current=True),
            screened_by=coordinator,
            screening_date=at.date(),
            answers={"severity": "severe", "weight_kg": "70"},
            decision=Decision.ELIGIBLE,
            results=[{"code": "I3", "outcome": "met", "reason": "BMI in range"}],
        ),
        user=coordinator,
    )
    randomize(participant, "MSC", at=at, user=coordinator)
    visits = {
        v.definition.code: v
        for v in participant_visits_create(
            participant=participant,
            randomized_at=at,
            protocol=Protocol.objects.get(is_current=True),
            user=coordinator,
        )
    }
    visit_record(
        scheduled_visit=visits["D1"],
        user=coordinator,
        visit_date=site_today(site),
        vital_status="alive",
        measurements=MEASURED,
    )
    return participant


def _serious_event(participant, coordinator):
    return adverse_event_record(
        participant=participant,
        user=coordinator,
        term="Pneumonia",
        onset_date=site_today(participant.site),
        end_date=None,
        grade=3,
        death_date=None,
        serious=True,
        criteria={"hospitalisation"},
        action_taken="none",
        outcome="recovering",
    )


def add_work(site, coordinator, investigator, randomization_list, copies: int = 1) -> dict:
    """`copies` of each kind of work at `site`: a registration never screened, an incomplete
    screening, an eligible screening awaiting sign-off (and consent), a participant ready to
    randomize, and one on treatment with a serious adverse event."""
    made = {"treated": []}
    for _copy in range(copies):
        ParticipantFactory(site=site, user=coordinator)
        incomplete = ParticipantFactory(site=site, user=coordinator)
        audited_save(
            Screening(
                participant=incomplete,
                protocol=Protocol.objects.get(is_current=True),
                screened_by=coordinator,
                screening_date=site_today(site),
                answers={"severity": "severe"},
                decision=Decision.INCOMPLETE,
                results=[{"code": "I3", "outcome": "unanswered", "reason": "BMI missing"}],
            ),
            user=coordinator,
        )
        screened_participant(site=site, user=coordinator)
        ready_participant(site=site, user=coordinator, investigator=investigator)
        treated = _on_treatment(site, coordinator, randomization_list)
        _serious_event(treated, coordinator)
        made["treated"].append(treated)
    doses_mark_overdue()
    return made


EXPECTED_PER_COPY = {
    Role.COORDINATOR: {
        "screenings": 2,
        "consents": 3,
        "reconsents": 0,
        "randomize": 1,
        "doses-today": 1,
        "visits-today": 1,
        "doses-overdue": 1,
        "visits-overdue": 1,
    },
    Role.INVESTIGATOR: {
        "signoffs": 1,
        "sae-reports": 1,
        "causality": 1,
        "ends-to-sign": 0,
        "doses-overdue": 1,
    },
    Role.DATA_MANAGER: {"screenings": 2, "visits-overdue": 1, "causality": 1, "out-of-window": 1},
}


def counts(html: str) -> dict[str, int]:
    return {
        key: int(n)
        for key, n in re.findall(r'data-testid="queue-count-([a-z-]+)" data-count="(\d+)"', html)
    }


def count_links(html: str) -> dict[str, str]:
    return dict(re.findall(r'href="([^"]+)" data-testid="queue-count-([a-z-]+)"', html)[::1])


def home(client, role) -> str:
    response = client.get(reverse("role_home", args=[role]))
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def work(protocol, site_a, site_b, cast):
    randomization_list = active_randomization_list(administrator=cast["administrator"], seed=3)
    a = add_work(site_a, cast["coordinator_a"], cast["investigator_a"], randomization_list)
    # Site B: only a registration never screened, so that its numbers differ from A's.
    ParticipantFactory(site=site_b, user=cast["coordinator_b"])
    return a


def test_each_roles_queues_count_their_sites_work(client_for, cast, work):
    for role, user in (
        (Role.COORDINATOR, cast["coordinator_a"]),
        (Role.INVESTIGATOR, cast["investigator_a"]),
    ):
        assert counts(home(client_for(user), role)) == EXPECTED_PER_COPY[role], role
    expected = dict(EXPECTED_PER_COPY[Role.DATA_MANAGER], screenings=3)  # both sites
    assert counts(home(client_for(cast["data_manager"]), Role.DATA_MANAGER)) == expected


def test_the_outsider_sees_only_their_own_sites_work(client_for, cast, work):
    page = home(client_for(cast["coordinator_b"]), Role.COORDINATOR)
    assert counts(page) == {
        "screenings": 1,
        "consents": 1,
        "reconsents": 0,
        "randomize": 0,
        "doses-today": 0,
        "visits-today": 0,
        "doses-overdue": 0,
        "visits-overdue": 0,
    }
    assert "SHE-" not in page
    for key in EXPECTED_PER_COPY[Role.COORDINATOR]:
        if key in ("randomize", "reconsents", "doses-today", "doses-overdue"):
            continue  # another page's list or the home page's own panel
        listed = client_for(cast["coordinator_b"]).get(
            reverse("work_queue", args=[Role.COORDINATOR, key])
        )
        assert listed.status_code == 200
        assert "SHE-" not in listed.content.decode()


def test_each_count_links_to_the_list_it_counts(client_for, cast, work):
    client = client_for(cast["coordinator_a"])
    page = home(client, Role.COORDINATOR)
    links = count_links(page)
    assert links == {
        reverse("work_queue", args=[Role.COORDINATOR, "screenings"]): "screenings",
        reverse("work_queue", args=[Role.COORDINATOR, "consents"]): "consents",
        reverse("enrollment:reconsent_list"): "reconsents",
        reverse("role_home", args=[Role.COORDINATOR]) + "#ready-to-randomize-heading": "randomize",
        reverse("dosing:worklist"): "doses-overdue",  # and doses-today: the same worklist
        reverse("work_queue", args=[Role.COORDINATOR, "visits-today"]): "visits-today",
        reverse("work_queue", args=[Role.COORDINATOR, "visits-overdue"]): "visits-overdue",
    }
    assert page.count(f'href="{reverse("dosing:worklist")}" data-testid="queue-count-') == 2
    # Each queue's own list holds as many rows as its count.
    for key, n in counts(page).items():
        url = reverse("work_queue", args=[Role.COORDINATOR, key])
        if url not in links:
            continue
        listed = client.get(url).content.decode()
        assert listed.count('data-testid="queue-row"') == n, key
        assert f'data-testid="queue-total">{n}<' in listed
    investigator_links = count_links(home(client_for(cast["investigator_a"]), Role.INVESTIGATOR))
    assert investigator_links[reverse("outcomes:ae_open_reports")] == "sae-reports"


def test_rows_link_to_the_form_only_for_a_user_who_may_do_the_work(client_for, cast, work):
    treated = work["treated"][0]
    overdue = ScheduledDose.objects.get(participant=treated, sequence=1)
    due_today = ScheduledDose.objects.get(participant=treated, sequence=2)
    d0 = ScheduledVisit.objects.get(participant=treated, definition__code="D0")
    d4 = ScheduledVisit.objects.get(participant=treated, definition__code="D4")
    coordinator = home(client_for(cast["coordinator_a"]), Role.COORDINATOR)
    for url in (
        reverse("dosing:dose_record", args=[overdue.pk]),
        reverse("dosing:dose_record", args=[due_today.pk]),
        reverse("outcomes:visit_record", args=[d0.pk]),
        reverse("outcomes:visit_record", args=[d4.pk]),
        reverse("enrollment:participant_screen", args=["SHE-0001"]),
        reverse("enrollment:consent_record", args=["SHE-0001"]),
    ):
        assert f'href="{url}"' in coordinator, url

    investigator = home(client_for(cast["investigator_a"]), Role.INVESTIGATOR)
    event = treated.adverse_events.get()
    assert f'href="{reverse("outcomes:ae_report", args=[event.pk])}"' in investigator
    assert "left" in investigator.split('data-testid="queue-sae-reports"')[1].split("</table>")[0]

    manager = home(client_for(cast["data_manager"]), Role.DATA_MANAGER)
    assert "/record/" not in manager
    assert "/screen/" not in manager
    assert reverse("outcomes:ae_causality", args=[event.pk]) not in manager
    # The deviation is opened, not corrected, from the data manager's queue.
    d1 = ScheduledVisit.objects.get(participant=treated, definition__code="D1")
    assert f'href="{reverse("outcomes:visit_detail", args=[d1.pk])}"' in manager


def test_a_queue_page_of_another_role_or_an_unknown_queue_is_refused(client_for, cast, work):
    client = client_for(cast["coordinator_a"])
    assert client.get(reverse("work_queue", args=[Role.COORDINATOR, "nothing"])).status_code == 404
    assert client.get(reverse("work_queue", args=[Role.MONITOR, "screenings"])).status_code == 404
    refused = client.get(reverse("work_queue", args=[Role.DATA_MANAGER, "out-of-window"]))
    assert refused.status_code == 403


def test_the_home_pages_cost_as_many_queries_for_20_participants_as_for_2(
    client_for, protocol, site_a, site_b, cast, django_assert_max_num_queries
):
    randomization_list = active_randomization_list(administrator=cast["administrator"], seed=5)
    users = {
        Role.COORDINATOR: cast["coordinator_a"],
        Role.INVESTIGATOR: cast["investigator_a"],
        Role.DATA_MANAGER: cast["data_manager"],
    }
    add_work(site_a, cast["coordinator_a"], cast["investigator_a"], randomization_list, 2)
    pinned = {}
    for role, user in users.items():
        client = client_for(user)
        with CaptureQueriesContext(connection) as captured:
            page = home(client, role)
        assert counts(page)[next(iter(EXPECTED_PER_COPY[role]))] > 0
        pinned[role] = len(captured)

    list_ = RandomizationList.objects.get(pk=randomization_list.pk)
    add_work(site_a, cast["coordinator_a"], cast["investigator_a"], list_, 18)
    for role, user in users.items():
        client = client_for(user)
        with django_assert_max_num_queries(pinned[role]):
            page = home(client, role)
        expected = {key: n * 20 for key, n in EXPECTED_PER_COPY[role].items()}
        assert counts(page) == expected, role


def test_a_participant_off_study_has_no_overdue_visit(client_for, cast, work):
    treated = work["treated"][0]
    before = counts(home(client_for(cast["coordinator_a"]), Role.COORDINATOR))
    assert before["visits-overdue"] == 1
    coordinator = cast["coordinator_a"]
    audited_save(
        Withdrawal(
            participant=treated,
            scope=WithdrawalScope.FOLLOW_UP,
            withdrawn_on=site_today(treated.site),
            reason="Moved away",
            recorded_by=coordinator,
        ),
        user=coordinator,
    )
    after = counts(home(client_for(coordinator), Role.COORDINATOR))
    assert after["visits-overdue"] == 0
