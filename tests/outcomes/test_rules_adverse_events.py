"""Adverse-event and end-of-study rules at their edges: no database."""

from datetime import UTC, date, datetime, timedelta

import pytest

from outcomes import rules

DAY_ZERO = date(2026, 3, 10)
TODAY = date(2026, 3, 20)


def problems(**changes):
    values = {
        "onset": date(2026, 3, 12),
        "end": None,
        "grade": 2,
        "death_date": None,
        "serious": False,
        "criteria": set(),
        "day_zero": DAY_ZERO,
        "today": TODAY,
    }
    return rules.adverse_event_problems(**(values | changes))


def test_a_plain_event_inside_the_period_has_no_problem():
    assert problems() == {}


@pytest.mark.parametrize(
    "onset,expected",
    [
        (
            date(2026, 3, 9),
            "The onset is before randomization (2026-03-10): outside the study.",
        ),
        (date(2026, 3, 10), None),  # randomization day itself
        (date(2026, 3, 20), None),  # today at the site
        (date(2026, 3, 21), "The onset is in the future (today at the site is 2026-03-20)."),
    ],
)
def test_onset_from_randomization_day_to_today(onset, expected):
    assert problems(onset=onset).get("onset_date") == expected


def test_onset_up_to_day_28_and_not_after():
    today = date(2026, 5, 1)
    assert problems(onset=date(2026, 4, 7), today=today) == {}  # day 28
    assert problems(onset=date(2026, 4, 8), today=today) == {
        "onset_date": "The onset is after day 28 (2026-04-07): outside the adverse-event period."
    }


@pytest.mark.parametrize(
    "end,expected",
    [
        (date(2026, 3, 11), "The event cannot end before its onset (2026-03-12)."),
        (date(2026, 3, 12), None),  # the same day
        (date(2026, 3, 21), "The end is in the future (today at the site is 2026-03-20)."),
    ],
)
def test_the_end_is_not_before_the_onset_nor_in_the_future(end, expected):
    assert problems(end=end).get("end_date") == expected


def test_grade_5_needs_the_date_of_death_and_only_grade_5_has_one():
    death = {"serious": True, "criteria": {"death"}}
    assert problems(grade=5, **death) == {
        "death_date": "A grade 5 event is a death: give the date of death."
    }
    assert problems(grade=4, death_date=date(2026, 3, 13)) == {
        "death_date": "Only a grade 5 event has a date of death."
    }
    assert problems(grade=5, death_date=date(2026, 3, 11), **death) == {
        "death_date": "The date of death cannot be before the onset (2026-03-12)."
    }
    assert problems(grade=5, death_date=date(2026, 3, 12), **death) == {}


def test_serious_needs_a_criterion_and_criteria_need_serious():
    assert problems(serious=True) == {
        "serious": "A serious event needs at least one seriousness criterion."
    }
    assert problems(criteria={"hospitalisation"}) == {
        "serious": "Seriousness criteria are for a serious event: tick Serious or clear them."
    }
    assert problems(serious=True, criteria={"hospitalisation"}) == {}
    assert problems(
        grade=5, death_date=date(2026, 3, 13), serious=True, criteria={"disability"}
    ) == {"serious": "A grade 5 event is serious with the criterion 'Results in death'."}


def test_time_left_to_the_minute_then_overdue():
    due = datetime(2026, 3, 11, 10, 0, tzinfo=UTC)
    assert rules.sae_report_due(due - timedelta(hours=24)) == due
    assert rules.time_left_text(due, due - timedelta(hours=23, minutes=59, seconds=30)) == (
        "23 h 59 min left"
    )
    assert rules.time_left_text(due, due) == "0 h 00 min left"
    assert rules.time_left_text(due, due + timedelta(minutes=61)) == "overdue by 1 h 01 min"


def test_each_infusion_is_an_intervention_a_tablet_course_is_one_standard_care_none():
    msc = rules.interventions(
        [(7, "UC-MSC suspension", "intravenous")], [(71, 7, 1, 1), (72, 7, 2, 4)]
    )
    assert [(i.key, i.label, i.dose_id) for i in msc] == [
        ("dose-71", "UC-MSC suspension, infusion 1 (day 1)", 71),
        ("dose-72", "UC-MSC suspension, infusion 2 (day 4)", 72),
    ]
    pax = rules.interventions([(5, "Paxlovid", "oral")], [])
    assert [(i.key, i.label, i.dose_id) for i in pax] == [
        ("course-5", "Paxlovid, the course", None)
    ]
    assert rules.interventions([], []) == []


@pytest.mark.parametrize(
    "completed,ended_on,expected",
    [
        (False, date(2026, 3, 9), "The end of study is before randomization (2026-03-10)."),
        (False, date(2026, 3, 10), None),
        (
            False,
            date(2026, 4, 8),
            "The end of study is in the future (today at the site is 2026-04-07).",
        ),
        (True, date(2026, 4, 6), "Completed means day 28 was reached: day 28 is 2026-04-07."),
        (True, date(2026, 4, 7), None),
    ],
)
def test_end_of_study_dates(completed, ended_on, expected):
    found = rules.end_of_study_problems(
        completed=completed, ended_on=ended_on, day_zero=DAY_ZERO, today=date(2026, 4, 7)
    )
    assert found.get("ended_on") == expected
