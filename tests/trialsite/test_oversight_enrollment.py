"""Enrollment over time (cumulative randomized per week, per arm and per site, as a chart drawn
on the server with its table) and the screen-failure reasons, each number linking to the
screening log filtered to its criterion; scoped to the user's sites."""

import datetime
import re
import xml.etree.ElementTree as ET  # our own server's output, parsed to check it is well formed

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from arms.models import Allocation, Arm
from enrollment.models import Decision, Screening
from tests.factories import ParticipantFactory, active_randomization_list, bulk_allocated
from trialsite.core.audit import audited_save
from trialsite.core.clock import site_today
from trialsite.core.models import Protocol
from trialsite.oversight import chart
from trialsite.oversight.rules import cumulative_by_week, week_start

PAGE = reverse("oversight:enrollment")
LOG = reverse("enrollment:screening_log")
# Friday 2026-03-20, 10:00 in Shanghai.
FRIDAY = datetime.datetime(2026, 3, 20, 2, 0, tzinfo=datetime.UTC)
D = datetime.date


# --- The rule ------------------------------------------------------------------------------------


def test_weeks_start_on_monday():
    assert week_start(D(2026, 3, 16)) == D(2026, 3, 16)
    assert week_start(D(2026, 3, 22)) == D(2026, 3, 16)  # Sunday
    assert week_start(D(2026, 3, 23)) == D(2026, 3, 23)


def test_cumulative_counts_run_without_gaps_to_the_last_day_shown():
    randomized = [
        (D(2026, 3, 3), "MSC"),
        (D(2026, 3, 8), "STD"),  # Sunday: the week of 2 March
        (D(2026, 3, 9), "MSC"),
        (D(2026, 3, 24), "MSC"),  # nothing in the week of 16 March
        (D(2026, 3, 24), "OLD"),  # an arm no longer in the protocol: shown after the others
    ]
    result = cumulative_by_week(
        randomized,
        [("STD", "Standard"), ("MSC", "UC-MSC"), ("PAX", "Paxlovid")],
        until=D(2026, 4, 1),
    )
    assert result.weeks == (
        D(2026, 3, 2),
        D(2026, 3, 9),
        D(2026, 3, 16),
        D(2026, 3, 23),
        D(2026, 3, 30),
    )
    assert [(s.key, s.label, s.values) for s in result.series] == [
        ("STD", "Standard", (1, 1, 1, 1, 1)),
        ("MSC", "UC-MSC", (1, 2, 2, 3, 3)),
        ("PAX", "Paxlovid", (0, 0, 0, 0, 0)),
        ("OLD", "OLD", (0, 0, 0, 1, 1)),
    ]
    assert result.rows[1] == (D(2026, 3, 9), [1, 2, 0, 0])


def test_nobody_randomized_is_no_weeks_and_an_empty_chart():
    result = cumulative_by_week([], [("STD", "Standard")], until=D(2026, 4, 1))
    assert result.weeks == ()
    assert [s.values for s in result.series] == [()]
    drawn = chart.layout(result)
    assert drawn["empty"] and drawn["x_ticks"] == []


def test_the_chart_scales_to_a_round_top_and_labels_at_most_eight_weeks():
    weeks = [(D(2026, 1, 5) + datetime.timedelta(weeks=i), "STD") for i in range(20)]
    drawn = chart.layout(cumulative_by_week(weeks, [("STD", "Standard")], until=D(2026, 1, 5)))
    assert [t["value"] for t in drawn["y_ticks"]] == [0, 5, 10, 15, 20]
    assert len(drawn["x_ticks"]) <= 9  # every third week, and the last
    assert drawn["x_ticks"][-1]["x"] == drawn["right"]
    points = drawn["lines"][0]["points"].split()
    assert (len(points), points[0].split(",")[1], points[-1].split(",")[1]) == (
        20,
        str(float(drawn["bottom"]) - (drawn["bottom"] - drawn["top"]) / 20),
        str(float(drawn["top"])),
    )


# --- The page ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _pinned_clock():
    with time_machine.travel(FRIDAY, tick=False):
        yield


def _screen(participant, user, failures: dict):
    return audited_save(
        Screening(
            participant=participant,
            protocol=Protocol.objects.get(is_current=True),
            screened_by=user,
            screening_date=site_today(participant.site),
            answers={"severity": "severe"},
            decision=Decision.INELIGIBLE if failures else Decision.ELIGIBLE,
            results=[{"code": c, "outcome": "not_met", "reason": r} for c, r in failures.items()]
            or [{"code": "I2", "outcome": "met", "reason": "severe"}],
            failures=failures,
        ),
        user=user,
    )


@pytest.fixture
def trial(protocol, site_a, site_b, cast):
    coordinator_a, coordinator_b = cast["coordinator_a"], cast["coordinator_b"]
    for failures in ({"I1": "age 17"}, {"I1": "age 16", "E2": "pregnant"}, {"E2": "pregnant"}):
        _screen(ParticipantFactory(site=site_a, user=coordinator_a), coordinator_a, failures)
    # Screened twice: both screenings failed I1, and both are in the log.
    twice = ParticipantFactory(site=site_a, user=coordinator_a)
    _screen(twice, coordinator_a, {"I1": "age 17"})
    _screen(twice, coordinator_a, {"I1": "age 17"})
    _screen(ParticipantFactory(site=site_b, user=coordinator_b), coordinator_b, {"E3": "x"})
    randomization_list = active_randomization_list(administrator=cast["administrator"], seed=9)
    # Site A: one a day from today back to eleven days ago (Monday 9 March).
    allocated_a = bulk_allocated(
        site=site_a, user=coordinator_a, randomization_list=randomization_list, count=12
    )
    allocated_b = bulk_allocated(
        site=site_b, user=coordinator_b, randomization_list=randomization_list, count=2
    )
    return {"a": allocated_a, "b": allocated_b}


def page_of(client) -> str:
    response = client.get(PAGE)
    assert response.status_code == 200
    return response.content.decode()


def totals(html: str, key: str) -> dict[str, int]:
    svg = html.split(f'data-testid="chart-{key}"')[1].split("</svg>")[0]
    return {s: int(n) for s, n in re.findall(r'data-series="([^"]+)" data-total="(\d+)"', svg)}


def table(html: str, key: str) -> list[list[str]]:
    body = html.split(f'data-testid="table-{key}"')[1].split("</table>")[0]
    return [
        re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", row)
        for row in re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>")[1], re.S)
    ]


def test_cumulative_randomized_per_site_and_arm_for_the_users_sites(client_for, cast, trial):
    # Randomized i days ago: the week of 16 March holds today and the four days before.
    arms_a = [a.arm.code for a in trial["a"]]
    html = page_of(client_for(cast["coordinator_a"]))
    assert totals(html, "site") == {"SHE": 12}
    assert table(html, "site") == [["2026-03-09", "7"], ["2026-03-16", "12"]]
    arms = Arm.objects.filter(protocol__is_current=True).order_by("pk")
    assert totals(html, "arm") == {arm.localized_name(): arms_a.count(arm.code) for arm in arms}
    assert table(html, "arm") == [
        ["2026-03-09", *(str(arms_a[5:].count(arm.code)) for arm in arms)],
        ["2026-03-16", *(str(arms_a.count(arm.code)) for arm in arms)],
    ]
    # Well-formed SVG, drawn on the server.
    for key in ("arm", "site"):
        svg = re.search(rf'<svg [^>]*data-testid="chart-{key}".*?</svg>', html, re.S).group(0)
        drawn = ET.fromstring(svg)  # noqa: S314 - our own page
        assert drawn.find("{http://www.w3.org/2000/svg}title").text.startswith("Randomized per")


def test_the_outsider_sees_only_their_own_sites_randomizations(client_for, cast, trial):
    html = page_of(client_for(cast["coordinator_b"]))
    assert totals(html, "site") == {"WUH": 2}
    assert sum(totals(html, "arm").values()) == 2
    assert "SHE" not in html.split('data-testid="enrollment-arm"')[1]
    manager = page_of(client_for(cast["data_manager"]))
    assert totals(manager, "site") == {"SHE": 12, "WUH": 2}


def test_each_failed_criterion_links_to_the_screening_log_filtered_to_it(client_for, cast, trial):
    client = client_for(cast["coordinator_a"])
    html = page_of(client)
    found = dict(re.findall(r'\?reason=([A-Z0-9]+)" data-count="(\d+)"', html))
    assert found == {"I1": "4", "E2": "2"}  # each screening that failed it, re-screenings too
    assert "5 ineligible screenings." in html
    for code, n in found.items():
        log = client.get(LOG, {"reason": code}).content.decode()
        assert log.count('data-testid="log-row"') == int(n), code
    # Criteria in the protocol's order, with their text.
    assert html.index('data-testid="failure-I1"') < html.index('data-testid="failure-E2"')
    outsider = page_of(client_for(cast["coordinator_b"]))
    assert dict(re.findall(r'\?reason=([A-Z0-9]+)" data-count="(\d+)"', outsider)) == {"E3": "1"}


def test_the_page_costs_the_same_queries_for_20_randomized_as_for_2(
    client_for, protocol, site_a, cast, django_assert_max_num_queries
):
    randomization_list = active_randomization_list(administrator=cast["administrator"], seed=8)
    coordinator = cast["coordinator_a"]

    waiting = [ParticipantFactory(site=site_a, user=coordinator) for _ in range(20)]

    def add(count):
        for participant in waiting[:count]:
            _screen(participant, coordinator, {"I1": "17"})
        del waiting[:count]
        bulk_allocated(
            site=site_a, user=coordinator, randomization_list=randomization_list, count=count
        )

    add(2)
    client = client_for(cast["data_manager"])
    with CaptureQueriesContext(connection) as captured:
        assert totals(page_of(client), "site") == {"SHE": 2, "WUH": 0}
    add(18)
    assert Allocation.objects.count() == 20
    with django_assert_max_num_queries(len(captured)):
        assert totals(page_of(client), "site") == {"SHE": 20, "WUH": 0}
