"""Today's doses at my site: due, overdue, given; site-scoped; query count pinned."""

import pytest
import time_machine
from django.urls import reverse

from dosing.services import dose_record, doses_mark_overdue
from tests.dosing.conftest import randomize, screened_participant, site_time

pytestmark = pytest.mark.django_db

URL = reverse("dosing:worklist")


def msc_participants(site, user, n, *, at):
    with time_machine.travel(at, tick=False):
        return [
            randomize(screened_participant(site=site, user=user), "MSC", at=at, user=user)
            for _ in range(n)
        ]


def test_day_4_infusions_due_today_overdue_and_given_at_my_site(
    client_for, protocol, site_a, coordinator_a, investigator_a
):
    (due_today,), (given_today,), (missed,) = (
        msc_participants(site_a, coordinator_a, 1, at=site_time(site_a, 2026, 3, 10, 8, 0)),
        msc_participants(site_a, coordinator_a, 1, at=site_time(site_a, 2026, 3, 10, 8, 0)),
        msc_participants(site_a, coordinator_a, 1, at=site_time(site_a, 2026, 3, 9, 8, 0)),
    )
    with time_machine.travel(site_time(site_a, 2026, 3, 14, 10, 0), tick=False):
        doses_mark_overdue()
        dose_record(
            dose=given_today[1],
            user=coordinator_a,
            outcome="given",
            given_at=site_time(site_a, 2026, 3, 14, 9, 5),
            amount=given_today[1].planned_amount,
            lot_number="L7",
        )
        response = client_for(coordinator_a).get(URL)
    assert response.status_code == 200
    rows = {
        (dose.pk, dose.status)
        for entry in response.context["lists"]
        for dose in entry.due + entry.overdue + entry.done
    }
    # Day 4 due today, day 4 given today, and every overdue dose (day 1s and the day-4 of
    # the participant randomized a day earlier, whose day 4 was yesterday).
    assert (due_today[1].pk, "scheduled") in rows
    assert (given_today[1].pk, "given") in rows
    assert (missed[1].pk, "overdue") in rows
    assert {s for _, s in rows} == {"scheduled", "given", "overdue"}
    assert len(rows) == 6  # 3 x day 1 overdue + 3 x day 4
    assert reverse("dosing:dose_record", args=[due_today[1].pk]) in response.text


def test_the_outsider_sees_nothing_of_site_a_and_others_are_refused(
    client_for, protocol, site_a, coordinator_a, coordinator_b, monitor, data_manager
):
    msc_participants(site_a, coordinator_a, 1, at=site_time(site_a, 2026, 3, 10, 8, 0))
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 10, 0), tick=False):
        response = client_for(coordinator_b).get(URL)
        assert response.status_code == 200
        assert [e.site.code for e in response.context["lists"]] == ["WUH"]
        assert "SHE-" not in response.text
        assert client_for(monitor).get(URL).status_code == 403
        assert client_for(data_manager).get(URL).status_code == 403


@pytest.mark.parametrize("n", [2, 20])
def test_the_worklist_query_count_does_not_grow_with_the_rows(
    n, client_for, protocol, site_a, coordinator_a, django_assert_max_num_queries
):
    msc_participants(site_a, coordinator_a, n, at=site_time(site_a, 2026, 3, 10, 8, 0))
    client = client_for(coordinator_a)
    with (
        time_machine.travel(site_time(site_a, 2026, 3, 11, 10, 0), tick=False),
        django_assert_max_num_queries(12),
    ):
        response = client.get(URL)
    assert sum(len(e.due) for e in response.context["lists"]) == n
