"""Arm rosters: site isolation, filters, the CSV equals the table, a constant query count."""

import csv
import io
import re
import uuid
from datetime import datetime
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from arms import services
from arms.models import Allocation
from enrollment.models import Participant, Withdrawal
from tests.factories import bulk_allocated
from trialsite.core.clock import site_time_text, utc_offset

pytestmark = pytest.mark.django_db


class TableCells(HTMLParser):
    """The header and body cells of the roster table, as text."""

    def __init__(self):
        super().__init__()
        self.rows, self._row, self._cell, self._in = [], None, None, False

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("data-testid", "roster") in attrs:
            self._in = True
        elif self._in and tag == "tr":
            self._row = []
        elif self._in and tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = False
        elif self._in and tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif self._in and tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def table_rows(response):
    parser = TableCells()
    parser.feed(response.content.decode())
    return parser.rows


def csv_rows(response):
    return list(csv.reader(io.StringIO(response.content.decode())))


UTC_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


def as_the_page_shows_it(exported: list[list[str]]) -> list[list[str]]:
    """The CSV's UTC times turned into the page's site times (through the CSV's zone column,
    which the page does not show): what the page must then show, cell for cell."""
    header, *rows = exported
    zone_at = header.index("Site time zone")
    time_columns = [header.index("Randomized"), header.index("Next due")]

    def site_text(match, zone):
        local = datetime.fromisoformat(match[0]).astimezone(zone)
        return f"{local:%Y-%m-%d %H:%M} {utc_offset(local)}"

    shown = [header[:zone_at] + header[zone_at + 1 :]]
    for row in rows:
        zone = ZoneInfo(row[zone_at])
        cells = list(row)
        for i in time_columns:
            cells[i] = UTC_ISO.sub(lambda m, zone=zone: site_text(m, zone), cells[i])
        shown.append(cells[:zone_at] + cells[zone_at + 1 :])
    return shown


@pytest.fixture
def two_sites(active_list, site_a, site_b, coordinator_a, coordinator_b):
    bulk_allocated(site=site_a, user=coordinator_a, randomization_list=active_list, count=6)
    bulk_allocated(
        site=site_a,
        user=coordinator_a,
        randomization_list=active_list,
        count=3,
        severity="critical",
    )
    bulk_allocated(site=site_b, user=coordinator_b, randomization_list=active_list, count=4)
    return active_list


@pytest.mark.parametrize(
    "role,sites",
    [
        ("coordinator_a", {"SHE"}),
        ("investigator_a", {"SHE"}),
        ("coordinator_b", {"WUH"}),
        ("data_manager", {"SHE", "WUH"}),
        ("monitor", {"SHE", "WUH"}),
        ("administrator", {"SHE", "WUH"}),
    ],
)
def test_each_role_sees_the_rosters_of_its_sites_only(cast, two_sites, client_for, role, sites):
    client = client_for(cast[role])
    response = client.get(reverse("arms:roster"))
    assert response.status_code == 200
    shown = {row[1] for row in table_rows(response)[1:]}
    assert shown == sites
    expected = Allocation.objects.filter(participant__site__code__in=sites).count()
    assert len(table_rows(response)) - 1 == expected
    assert len(csv_rows(client.get(reverse("arms:roster_csv")))) - 1 == expected


def test_another_sites_filter_value_shows_nothing_of_it(two_sites, coordinator_b, client_for):
    response = client_for(coordinator_b).get(reverse("arms:roster"), {"site": "SHE"})
    # Not one of the user's sites: the filter refuses the value and shows their own.
    assert response.context["filter"].errors == {
        "site": ["Select a valid choice. That choice is not one of the available choices."]
    }
    assert {row[1] for row in table_rows(response)[1:]} <= {"WUH"}


def test_the_per_arm_roster_shows_that_arm_only(two_sites, investigator_a, client_for):
    response = client_for(investigator_a).get(reverse("arms:roster_arm", args=["MSC"]))
    rows = table_rows(response)
    assert "Arm" not in rows[0]
    assert (
        len(rows) - 1
        == Allocation.objects.filter(arm__code="MSC", participant__site__code="SHE").count()
    )
    assert (
        client_for(investigator_a).get(reverse("arms:roster_arm", args=["NOPE"])).status_code == 404
    )


def test_the_columns_and_the_empty_later_columns(two_sites, investigator_a, client_for):
    response = client_for(investigator_a).get(reverse("arms:roster"))
    header, first = table_rows(response)[0], table_rows(response)[1]
    assert header == [
        "Study number",
        "Site",
        "Arm",
        "Age",
        "Sex",
        "Severity",
        "Randomized",
        "Study day",
        "Dosing",
        "Next due",
        "WHO score",
        "Open AEs",
        "Status",
    ]
    # No doses scheduled (written in bulk), no WHO score, no AE: nothing, not a placeholder.
    assert first[8:12] == ["", "", "", ""]
    assert first[12] == "On study"


def test_each_cell_names_its_column_and_the_study_number_links_to_the_allocation(
    two_sites, investigator_a, client_for
):
    """On a phone the table shows one card per row, each value under its column's name."""
    response = client_for(investigator_a).get(reverse("arms:roster"))
    header, *rows = table_rows(response)
    page = response.content.decode()
    allocation = Allocation.objects.filter(participant__site__code="SHE").first()
    number = allocation.participant.study_number
    row = re.search(rf'<tr data-study-number="{number}"[^>]*>(.*?)</tr>', page, re.S)[1]
    assert re.findall(r'<td[^>]*data-label="([^"]*)"', row) == header
    assert f'<a href="{reverse("arms:allocation_detail", args=[number])}">{number}</a>' in row
    assert re.findall(r'<td( class="[^"]*")? data-label="Site"', row) == [' class="col-secondary"']
    assert len(rows) == 9


def test_no_identifier_reaches_the_roster_not_even_its_query(two_sites, investigator_a, client_for):
    """Names and MRNs are never on the roster, nor in its CSV, and its queries never read
    them."""
    client = client_for(investigator_a)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse("arms:roster")).content.decode()
    exported = client.get(reverse("arms:roster_csv")).content.decode()
    for name, mrn in Participant.objects.values_list("name", "mrn"):
        for text in (page, exported):
            assert name not in text and mrn not in text
    for column in ("name", "mrn", "mrn_hash", "contact"):
        assert not any(
            f'"enrollment_participant"."{column}"' in query["sql"] for query in queries
        ), column


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"severity": "critical"},
        {"arm": "PAX"},
        {"q": "SHE-0000"},
        {"status": "on_study", "sort": "age"},
        {"status": "withdrawn"},
        {"status": "in_error", "sort": "-study_number"},
    ],
)
def test_the_csv_equals_the_filtered_table(
    two_sites, investigator_a, administrator, client_for, query
):
    first, second = Allocation.objects.filter(participant__site__code="SHE")[:2]
    services.allocation_mark_in_error(allocation=first, user=administrator, reason="test")
    from trialsite.core.audit import audited_save

    audited_save(
        Withdrawal(
            participant=second.participant,
            scope="follow_up",
            withdrawn_on=second.randomized_at.date(),
            reason="moved away",
            recorded_by=investigator_a,
        ),
        user=investigator_a,
    )
    client = client_for(investigator_a)
    table = table_rows(client.get(reverse("arms:roster"), query))
    exported = csv_rows(client.get(reverse("arms:roster_csv"), query))
    assert all(UTC_ISO.fullmatch(row[6]) for row in exported[1:])
    assert {row[7] for row in exported[1:]} <= {"Asia/Shanghai"}
    assert as_the_page_shows_it(exported) == table
    assert len(exported) >= 2 or query.get("q")


def test_status_filters_pick_the_right_rows(two_sites, investigator_a, administrator, client_for):
    in_error = Allocation.objects.filter(participant__site__code="SHE").first()
    services.allocation_mark_in_error(allocation=in_error, user=administrator, reason="x")
    client = client_for(investigator_a)
    rows = table_rows(client.get(reverse("arms:roster"), {"status": "in_error"}))
    assert [r[0] for r in rows[1:]] == [in_error.participant.study_number]
    assert rows[1][-1] == "In error"


# Session, user, the second factor's device (an investigator's verified session), roles;
# protocol; count, page of rows; dosing counts, schedule routes, next open doses; outcomes'
# latest WHO score (one subquery for the page) and open adverse events (one count for the
# page); arms (tabs), sites and arms (filter choices); the session saved (savepoint, update,
# release). The CSV: no count, tabs or choices.
ROSTER_QUERIES = 18
CSV_QUERIES = 14


@pytest.mark.parametrize("url_name", ["arms:roster", "arms:roster_csv"])
def test_the_roster_query_count_does_not_grow_with_the_participants(
    protocol,
    site_a,
    site_b,
    administrator,
    coordinator_a,
    investigator_a,
    client_for,
    django_assert_num_queries,
    url_name,
):
    from tests.factories import active_randomization_list

    randomization_list = active_randomization_list(administrator=administrator, per_stratum=1000)
    client = client_for(investigator_a)
    url = reverse(url_name)
    counts = []
    for n in (10, 990):
        bulk_allocated(
            site=site_a, user=coordinator_a, randomization_list=randomization_list, count=n
        )
        client.get(url)  # the first request of a session writes it; measure the next
        expected = ROSTER_QUERIES if url_name == "arms:roster" else CSV_QUERIES
        with django_assert_num_queries(expected):
            response = client.get(url, {"sort": "age"})
        counts.append(
            len(table_rows(response)) - 1
            if url_name == "arms:roster"
            else len(csv_rows(response)) - 1
        )
    assert counts == ([10, 50] if url_name == "arms:roster" else [10, 1000])


def test_dosing_progress_and_next_due_come_from_the_schedule(
    active_list, site_a, coordinator_a, investigator_a, client_for
):
    from dosing.models import ScheduledDose
    from tests.factories import ready_participant

    allocations = [
        services.participant_randomize(
            participant=ready_participant(
                site=site_a, user=coordinator_a, investigator=investigator_a
            ),
            user=coordinator_a,
            idempotency_key=uuid.uuid4(),
        )
        for _ in range(6)
    ]
    rows = {r[0]: r for r in table_rows(client_for(investigator_a).get(reverse("arms:roster")))[1:]}
    expected_text = {"MSC": "0/2 infusions", "PAX": "0/10 doses", "STD": ""}
    assert {a.arm.code for a in allocations} == {"MSC", "PAX", "STD"}  # two blocks of three
    for allocation in allocations:
        row = rows[allocation.participant.study_number]
        assert row[8] == expected_text[allocation.arm.code]
        first = (
            ScheduledDose.objects.filter(participant=allocation.participant)
            .order_by("due_at")
            .first()
        )
        assert row[9] == (site_time_text(first.due_at, site_a) if first else "")
