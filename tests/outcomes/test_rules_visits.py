"""Visit rules, pure: windows in site dates, the blood-gas ratio, the form's ranges."""

import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone

from outcomes import rules

SHANGHAI = ZoneInfo("Asia/Shanghai")  # UTC+8: the site date turns at 16:00 UTC


def utc(*parts):
    return datetime.datetime(*parts, tzinfo=datetime.UTC)


# --- Day 0 and windows in site dates ------------------------------------------------------------


@pytest.mark.parametrize(
    "randomized_at,day_zero",
    [
        (utc(2026, 3, 10, 15, 59), datetime.date(2026, 3, 10)),  # 23:59 in Shanghai
        (utc(2026, 3, 10, 16, 0), datetime.date(2026, 3, 11)),  # 00:00 the next day there
        (utc(2026, 3, 10, 16, 1), datetime.date(2026, 3, 11)),
    ],
)
def test_day_zero_is_the_site_date_at_randomization(randomized_at, day_zero):
    assert rules.study_day_zero(randomized_at, SHANGHAI) == day_zero


def test_the_protocol_windows_from_day_zero():
    day_zero = datetime.date(2026, 3, 10)
    windows = {
        day: rules.visit_window(day_zero, study_day=day, window_days=width)
        for day, width in [(0, 0), (1, 0), (4, 0), (7, 1), (14, 2), (28, 3)]
    }
    assert windows[0] == rules.VisitWindow(day_zero, day_zero, day_zero)
    assert windows[1].window_start == windows[1].window_end == datetime.date(2026, 3, 11)
    assert (windows[7].window_start, windows[7].window_end) == (
        datetime.date(2026, 3, 16),
        datetime.date(2026, 3, 18),
    )
    assert (windows[28].window_start, windows[28].due_on, windows[28].window_end) == (
        datetime.date(2026, 4, 4),
        datetime.date(2026, 4, 7),
        datetime.date(2026, 4, 10),
    )


def test_no_window_opens_before_randomization():
    day_zero = datetime.date(2026, 3, 10)
    window = rules.visit_window(day_zero, study_day=1, window_days=3)
    assert window.window_start == day_zero


# The day-7 visit of a participant randomized on 2026-03-10 (site date): on time from
# 2026-03-16 to 2026-03-18 in Shanghai, i.e. from 2026-03-15 16:00 UTC to 2026-03-18 16:00 UTC.
D7 = rules.visit_window(datetime.date(2026, 3, 10), study_day=7, window_days=1)


@pytest.mark.parametrize(
    "now,closed",
    [
        (utc(2026, 3, 18, 15, 59, 59), False),  # 23:59:59 on the last day, Shanghai
        (utc(2026, 3, 18, 16, 0), True),  # 00:00 the day after, Shanghai
        (utc(2026, 3, 18, 16, 1), True),
        (utc(2026, 3, 18, 20, 0), True),  # still the 18th in UTC: the site's date decides
    ],
)
def test_a_window_closes_at_the_site_midnight_not_the_servers(now, closed):
    with time_machine.travel(now, tick=False):
        assert rules.window_closed(timezone.now(), SHANGHAI, D7.window_end) is closed


@pytest.mark.parametrize(
    "now,outside",
    [
        (utc(2026, 3, 15, 15, 59), -1),  # 23:59 on 03-15 in Shanghai: a day early
        (utc(2026, 3, 15, 16, 0), None),  # 00:00 on 03-16: the window has opened
        (utc(2026, 3, 18, 15, 59), None),  # 23:59 on 03-18: the last minute on time
        (utc(2026, 3, 18, 16, 0), 1),  # 00:00 on 03-19: a day late
    ],
)
def test_a_visit_on_either_edge_of_its_window(now, outside):
    with time_machine.travel(now, tick=False):
        visit_date = timezone.localdate(timezone=SHANGHAI)
    assert rules.days_outside_window(visit_date, D7) == outside


def test_days_outside_count_from_the_nearest_edge():
    assert rules.days_outside_window(datetime.date(2026, 3, 13), D7) == -3
    assert rules.days_outside_window(datetime.date(2026, 3, 21), D7) == 3


def test_the_reminder_goes_the_day_before_the_window_opens_at_eight_site_time():
    at = rules.reminder_at(D7.window_start, SHANGHAI)
    assert at == utc(2026, 3, 15, 0, 0)  # 08:00 on 03-15 in Shanghai
    baseline = rules.visit_window(datetime.date(2026, 3, 10), study_day=0, window_days=0)
    assert not rules.needs_reminder(baseline, datetime.date(2026, 3, 10))
    assert rules.needs_reminder(D7, datetime.date(2026, 3, 10))


# --- The visit date ------------------------------------------------------------------------


def visit_date_error(visit_date, today=datetime.date(2026, 3, 20)):
    return rules.visit_date_error(
        visit_date,
        day_zero=datetime.date(2026, 3, 10),
        study_end=datetime.date(2026, 4, 10),
        today=today,
    )


def test_a_visit_date_inside_the_study_period_and_not_in_the_future():
    assert visit_date_error(datetime.date(2026, 3, 10)) is None
    assert visit_date_error(datetime.date(2026, 3, 20)) is None
    assert visit_date_error(datetime.date(2026, 4, 10), today=datetime.date(2026, 4, 30)) is None


def test_a_visit_date_outside_the_study_period_or_in_the_future():
    assert visit_date_error(datetime.date(2026, 3, 21)) == (
        "The visit date is in the future (today at the site is 2026-03-20)."
    )
    assert visit_date_error(datetime.date(2026, 3, 9)) == (
        "The visit date is before randomization (2026-03-10): outside the study period."
    )
    assert visit_date_error(datetime.date(2026, 4, 11), today=datetime.date(2026, 4, 30)) == (
        "The visit date is after the study period, which ends on 2026-04-10."
    )


# --- PaO2/FiO2 and ranges --------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed,fraction",
    [
        (Decimal("0.21"), Decimal("0.21")),
        (Decimal("1.0"), Decimal("1.00")),
        (Decimal("0.4"), Decimal("0.40")),
        (Decimal("21"), Decimal("0.21")),
        (Decimal("40"), Decimal("0.40")),
        (Decimal("100"), Decimal("1.00")),
        (Decimal("0.20"), None),
        (Decimal("1.5"), None),  # neither a fraction nor a percentage
        (Decimal("20.9"), None),
        (Decimal("101"), None),
    ],
)
def test_fio2_is_normalised_to_a_fraction_from_either_notation(typed, fraction):
    assert rules.normalise_fio2(typed) == fraction


def test_pao2_over_fio2_is_the_same_in_both_notations():
    assert rules.pf_ratio(Decimal("80"), Decimal("0.40")) == 200
    assert rules.pf_ratio(Decimal("80"), Decimal("40")) == 200
    assert rules.pf_ratio(Decimal("95"), Decimal("0.21")) == 452
    assert rules.pf_ratio(Decimal("95"), Decimal("21")) == 452


def test_pao2_over_an_impossible_fio2_is_refused():
    with pytest.raises(ValueError):
        rules.pf_ratio(Decimal("80"), Decimal("5"))


@pytest.mark.parametrize(
    "value,low,high,message",
    [
        (10, 0, 10, None),
        (0, 0, 10, None),
        (11, 0, 10, "WHO score must be between 0 and 10."),
        (-1, 0, 10, "WHO score must be between 0 and 10."),
        (None, 0, 10, None),
    ],
)
def test_the_who_score_range(value, low, high, message):
    assert rules.range_error(value, low, high, label="WHO score") == message


def test_ranges_name_their_unit():
    assert rules.range_error(49, rules.SPO2_MIN, rules.SPO2_MAX, label="SpO2", unit="%") == (
        "SpO2 must be between 50 and 100 %."
    )
    assert rules.range_error(
        Decimal(701), rules.PAO2_MIN, rules.PAO2_MAX, label="PaO2", unit="mmHg"
    ) == ("PaO2 must be between 20 and 700 mmHg.")
    assert rules.range_error(Decimal(700), rules.PAO2_MIN, rules.PAO2_MAX, label="PaO2") is None
    assert rules.range_error(Decimal(20), rules.PAO2_MIN, rules.PAO2_MAX, label="PaO2") is None


def test_every_who_level_has_its_description():
    assert [level for level, _text in rules.WHO_LEVELS] == list(range(11))
    assert str(rules.WHO_LEVELS[0][1]).startswith("Uninfected")
    assert str(rules.WHO_LEVELS[10][1]) == "Dead"
