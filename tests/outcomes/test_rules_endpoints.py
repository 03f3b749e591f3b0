"""Derived endpoints, pure: hand-made histories of (study day, WHO score, respiratory support)."""

import pytest

from outcomes import rules
from outcomes.rules import TimeToEvent

# A severe participant on high flow at baseline, seen at every protocol visit.
STEADY = [(0, 6, "high_flow"), (1, 6, "high_flow"), (4, 6, "high_flow"), (7, 5, "oxygen")]


def improvement(observations, *, discharge_day=None, death_day=None, end_day=28):
    return rules.time_to_improvement(
        observations, discharge_day=discharge_day, death_day=death_day, end_day=end_day
    )


# --- 28-day mortality -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "death_day,end_day,died",
    [
        (28, 28, True),  # the last day counts
        (29, 29, False),  # alive through day 28
        (3, 3, True),
        (None, 28, False),
        (None, 31, False),  # the day-28 visit late in its window
        (None, None, False),
        (None, 27, None),  # lost or withdrawn the day before: not known
        (None, 10, None),  # still on study at day 10: not known yet
    ],
)
def test_mortality_to_day_28(death_day, end_day, died):
    assert rules.mortality_28_day(death_day=death_day, end_day=end_day) is died


# --- Time to clinical improvement -------------------------------------------------------------


def test_improvement_is_the_first_day_two_points_below_baseline():
    history = [*STEADY, (14, 4, "none"), (28, 2, "none")]
    assert improvement(history) == TimeToEvent(14, event=True)


def test_one_point_below_baseline_is_not_improvement():
    assert improvement(STEADY) == TimeToEvent(28, event=False)


def test_improvement_on_day_28_exactly_is_an_event():
    assert improvement([*STEADY, (28, 4, "none")]) == TimeToEvent(28, event=True)


def test_improvement_after_day_28_is_censored_at_day_28():
    # The day-28 visit on day 29, inside its window, is past the endpoint's horizon.
    assert improvement([*STEADY, (29, 4, "none")], end_day=29) == TimeToEvent(28, event=False)


def test_discharge_before_the_score_falls_is_the_event():
    assert improvement([*STEADY, (14, 3, "none")], discharge_day=9) == TimeToEvent(9, event=True)


def test_discharge_on_day_28_is_an_event_and_after_it_is_not():
    assert improvement(STEADY, discharge_day=28) == TimeToEvent(28, event=True)
    assert improvement(STEADY, discharge_day=29, end_day=29) == TimeToEvent(28, event=False)


def test_discharge_and_improvement_on_the_same_day():
    assert improvement([*STEADY, (14, 4, "none")], discharge_day=14) == TimeToEvent(14, True)


def test_two_records_on_one_day_count_when_either_is_low_enough():
    history = [*STEADY, (7, 6, "high_flow"), (7, 4, "none")]
    assert improvement(history) == TimeToEvent(7, event=True)


def test_death_before_improvement_is_censored_at_day_28_not_at_death():
    history = [(0, 6, "high_flow"), (1, 8, "invasive"), (4, 9, "ecmo")]
    assert improvement(history, death_day=6, end_day=6) == TimeToEvent(28, event=False)


def test_improvement_before_death_stays_an_event():
    history = [(0, 7, "invasive"), (4, 5, "oxygen"), (7, 9, "ecmo")]
    assert improvement(history, death_day=10, end_day=10) == TimeToEvent(4, event=True)


def test_nothing_after_death_counts():
    # A record dated after the death (a typing slip) is not an improvement.
    history = [(0, 6, "high_flow"), (14, 3, "none")]
    assert improvement(history, death_day=10, end_day=10) == TimeToEvent(28, event=False)


def test_censored_at_the_end_of_study_before_day_28():
    history = [*STEADY, (14, 4, "none")]
    assert improvement(history, end_day=10) == TimeToEvent(10, event=False)


def test_no_baseline_score_is_undefined():
    history = [(0, None, "high_flow"), (1, 6, "high_flow"), (7, 3, "none")]
    assert improvement(history, discharge_day=9) is None
    assert improvement([(1, 6, "high_flow")]) is None
    assert improvement([]) is None


def test_the_baseline_is_day_0_whatever_the_order_given():
    history = [(7, 4, "oxygen"), (1, 6, "high_flow"), (0, 6, "high_flow")]
    assert improvement(history) == TimeToEvent(7, event=True)


def test_a_second_record_on_day_0_is_not_an_improvement():
    assert improvement([(0, 6, "high_flow"), (0, 4, "oxygen")]) == TimeToEvent(28, False)


# --- Days alive and free of invasive ventilation ----------------------------------------------


def free_days(observations, *, death_day=None, end_day=28):
    return rules.ventilation_free_days(observations, death_day=death_day, end_day=end_day)


def test_never_ventilated_is_28_free_days():
    assert free_days(STEADY) == 28


def test_the_last_state_is_carried_forward_between_visits():
    # Ventilated from the day-1 visit; the day-7 visit finds the tube out: days 1-6 not free.
    history = [(0, 6, "high_flow"), (1, 7, "invasive"), (4, 7, "invasive"), (7, 5, "oxygen")]
    assert free_days(history) == 22
    # Extubated by day 4: days 1-3 not free.
    assert free_days([(0, 6, "high_flow"), (1, 7, "invasive"), (4, 5, "oxygen")]) == 25


def test_ecmo_is_not_free_and_the_last_state_runs_to_day_28():
    history = [(0, 6, "high_flow"), (14, 9, "ecmo")]
    assert free_days(history) == 13  # days 1-13


def test_day_28_on_the_ventilator_is_not_free():
    assert free_days([(0, 6, "high_flow"), (28, 7, "invasive")]) == 27


def test_death_counts_the_remaining_days_as_not_free():
    history = [(0, 6, "high_flow"), (4, 5, "oxygen")]
    assert free_days(history, death_day=10, end_day=10) == 9  # days 1-9
    assert free_days(history, death_day=1, end_day=1) == 0
    assert free_days(history, death_day=28, end_day=28) == 27


def test_death_after_day_28_leaves_every_day_free():
    assert free_days(STEADY, death_day=29, end_day=29) == 28


def test_a_day_with_an_invasive_record_among_others_is_not_free():
    history = [(0, 6, "high_flow"), (7, 7, "oxygen"), (7, 7, "invasive"), (14, 5, "oxygen")]
    assert free_days(history) == 21  # days 7-13 not free


def test_unrecorded_support_carries_the_last_recorded_state():
    history = [(0, 7, "invasive"), (4, 6, ""), (7, 5, "oxygen")]
    assert free_days(history) == 22  # days 1-6 not free


def test_no_support_recorded_by_day_1_is_not_known():
    assert free_days([(0, 6, ""), (4, 5, "oxygen")]) is None
    assert free_days([]) is None
    assert free_days([(1, 6, "high_flow")]) == 28


def test_follow_up_ended_alive_before_day_28_is_not_known():
    assert free_days(STEADY, end_day=27) is None
    assert free_days(STEADY, end_day=31) == 28


# --- Worst WHO score --------------------------------------------------------------------------


def test_worst_score_is_the_highest_recorded():
    history = [(0, 6, "high_flow"), (4, 8, "invasive"), (7, 8, "invasive"), (14, None, "")]
    assert rules.worst_who_score(history, death_day=None) == 8


def test_worst_score_of_a_death_is_10_even_without_a_visit_saying_so():
    assert rules.worst_who_score(STEADY, death_day=28) == 10
    assert rules.worst_who_score([], death_day=3) == 10
    assert rules.worst_who_score(STEADY, death_day=29) == 6


def test_worst_score_without_any_score_is_not_known():
    assert rules.worst_who_score([(0, None, "oxygen")], death_day=None) is None
