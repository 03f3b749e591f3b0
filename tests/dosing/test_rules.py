"""The dosing rules at their boundaries, on the protocol file itself. No database."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings

from dosing.rules import (
    amount_is_plausible,
    deviation_hours,
    dose_plan,
    far_outside_window,
    given_before_randomization,
    is_overdue,
    plain_amount,
    planned_amount,
    reminder_times,
    retry_delay,
    scientific,
    study_day_zero,
)
from trialsite.core.protocol import definition_from_dict, definition_from_toml, protocol_problems

PROTOCOL = definition_from_toml(settings.PROTOCOL_FILE)
SCHEDULES = PROTOCOL.sections["dose_schedules"]
MSC = SCHEDULES["MSC"][0]
PAX = SCHEDULES["PAX"][0]
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def at(zone, *parts):
    return datetime(*parts, tzinfo=zone)


def local(dt, zone):
    return dt.astimezone(zone)


# --- Study day 0 is the site's calendar day of randomization ------------------------------------


def test_randomized_at_2359_site_time_puts_day_1_on_the_next_calendar_day():
    doses = dose_plan(
        MSC, randomized_at=at(SHANGHAI, 2026, 3, 10, 23, 59), zone=SHANGHAI, weight_kg=Decimal("70")
    )
    assert [(d.study_day, local(d.due_at, SHANGHAI)) for d in doses] == [
        (1, at(SHANGHAI, 2026, 3, 11, 9, 0)),
        (4, at(SHANGHAI, 2026, 3, 14, 9, 0)),
    ]


def test_randomized_at_0001_site_time_is_already_the_next_study_day_zero():
    # 00:01 in Shanghai is 16:01 UTC the day before: the site's date counts, not UTC's.
    randomized = at(SHANGHAI, 2026, 3, 11, 0, 1)
    assert randomized.astimezone(UTC).date() == date(2026, 3, 10)
    doses = dose_plan(MSC, randomized_at=randomized, zone=SHANGHAI, weight_kg=Decimal("70"))
    assert [local(d.due_at, SHANGHAI).date() for d in doses] == [
        date(2026, 3, 12),
        date(2026, 3, 15),
    ]


def test_a_schedule_across_the_month_end():
    doses = dose_plan(
        MSC, randomized_at=at(SHANGHAI, 2026, 1, 30, 14, 0), zone=SHANGHAI, weight_kg=Decimal("70")
    )
    assert [local(d.due_at, SHANGHAI).date() for d in doses] == [
        date(2026, 1, 31),
        date(2026, 2, 3),
    ]
    feb = dose_plan(
        MSC, randomized_at=at(SHANGHAI, 2026, 2, 27, 14, 0), zone=SHANGHAI, weight_kg=Decimal("70")
    )
    assert [local(d.due_at, SHANGHAI).date() for d in feb] == [date(2026, 2, 28), date(2026, 3, 3)]


def test_a_site_in_another_time_zone_uses_its_own_calendar_and_clock():
    # 23:30 in New York on 10 March is 03:30 UTC on 11 March: day 0 is still 10 March there.
    randomized = at(NEW_YORK, 2026, 3, 10, 23, 30)
    assert randomized.astimezone(UTC).date() == date(2026, 3, 11)
    assert study_day_zero(randomized, NEW_YORK) == date(2026, 3, 10)
    doses = dose_plan(MSC, randomized_at=randomized, zone=NEW_YORK, weight_kg=Decimal("70"))
    assert [d.due_at for d in doses] == [
        datetime(2026, 3, 11, 13, 0, tzinfo=UTC),  # 09:00 EDT
        datetime(2026, 3, 14, 13, 0, tzinfo=UTC),
    ]


def test_due_times_stay_at_the_site_clock_across_a_daylight_saving_change():
    # New York moves to EDT on 8 March 2026: day 1 is EST, day 4 is EDT; both at 09:00.
    doses = dose_plan(
        MSC, randomized_at=at(NEW_YORK, 2026, 3, 6, 10, 0), zone=NEW_YORK, weight_kg=Decimal("70")
    )
    assert [d.due_at for d in doses] == [
        datetime(2026, 3, 7, 14, 0, tzinfo=UTC),
        datetime(2026, 3, 10, 13, 0, tzinfo=UTC),
    ]
    assert {local(d.due_at, NEW_YORK).hour for d in doses} == {9}


def test_the_same_instant_is_a_different_study_day_zero_at_two_sites():
    instant = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)  # 01:00 in Shanghai, 13:00 in New York
    assert study_day_zero(instant, SHANGHAI) == date(2026, 3, 11)
    assert study_day_zero(instant, NEW_YORK) == date(2026, 3, 10)


def test_a_naive_randomization_time_is_refused():
    with pytest.raises(ValueError, match="aware"):
        study_day_zero(datetime(2026, 3, 10, 12, 0), SHANGHAI)  # noqa: DTZ001 - the point


# --- Windows ----------------------------------------------------------------------------------


def test_the_infusion_window_is_the_whole_scheduled_day_in_site_time():
    day4 = dose_plan(
        MSC, randomized_at=at(SHANGHAI, 2026, 3, 10, 12, 0), zone=SHANGHAI, weight_kg=Decimal("70")
    )[1]
    assert local(day4.window_start, SHANGHAI) == at(SHANGHAI, 2026, 3, 14, 0, 0)
    assert local(day4.window_end, SHANGHAI) == at(SHANGHAI, 2026, 3, 14, 23, 59, 59, 999999)
    assert (
        deviation_hours(at(SHANGHAI, 2026, 3, 14, 23, 59), day4.window_start, day4.window_end)
        is None
    )
    assert (
        deviation_hours(at(SHANGHAI, 2026, 3, 14, 0, 0), day4.window_start, day4.window_end) is None
    )
    # A minute either side is a deviation, and never reads as 0 hours.
    assert deviation_hours(
        at(SHANGHAI, 2026, 3, 15, 0, 1), day4.window_start, day4.window_end
    ) == Decimal("0.02")
    assert deviation_hours(
        at(SHANGHAI, 2026, 3, 13, 23, 59), day4.window_start, day4.window_end
    ) == Decimal("0.02")
    assert deviation_hours(
        at(SHANGHAI, 2026, 3, 15, 3, 0), day4.window_start, day4.window_end
    ) == Decimal("3.00")


def test_overdue_only_after_the_last_instant_of_the_window():
    day4 = dose_plan(
        MSC, randomized_at=at(SHANGHAI, 2026, 3, 10, 12, 0), zone=SHANGHAI, weight_kg=Decimal("70")
    )[1]
    end = day4.window_end
    assert not is_overdue(now=at(SHANGHAI, 2026, 3, 14, 23, 59), window_end=end)
    assert is_overdue(now=at(SHANGHAI, 2026, 3, 15, 0, 0), window_end=end)
    assert is_overdue(now=at(SHANGHAI, 2026, 3, 15, 0, 1), window_end=end)


# --- Paxlovid ---------------------------------------------------------------------------------


def test_paxlovid_is_ten_doses_twelve_hours_apart_the_tenth_on_day_5_at_2000():
    doses = dose_plan(PAX, randomized_at=at(SHANGHAI, 2026, 3, 10, 15, 0), zone=SHANGHAI)
    assert len(doses) == 10
    assert [d.sequence for d in doses] == list(range(1, 11))
    assert local(doses[0].due_at, SHANGHAI) == at(SHANGHAI, 2026, 3, 11, 8, 0)
    assert (doses[-1].study_day, local(doses[-1].due_at, SHANGHAI)) == (
        5,
        at(SHANGHAI, 2026, 3, 15, 20, 0),
    )
    gaps = {b.due_at - a.due_at for a, b in zip(doses, doses[1:], strict=False)}
    assert gaps == {timedelta(hours=12)}
    # Window: 2 hours either side (protocol file).
    assert (
        doses[0].window_end - doses[0].due_at
        == timedelta(hours=PAX.window_hours)
        == timedelta(hours=2)
    )
    assert (
        deviation_hours(
            doses[0].due_at + timedelta(hours=2), doses[0].window_start, doses[0].window_end
        )
        is None
    )
    assert deviation_hours(
        doses[0].due_at + timedelta(hours=2, minutes=30), doses[0].window_start, doses[0].window_end
    ) == Decimal("0.50")


@pytest.mark.parametrize(
    ("egfr", "amount"),
    [
        (None, "300"),
        (
            Decimal("29.9"),
            "300",
        ),  # below 30: the adjustment does not apply (not an eligible patient either)
        (Decimal("30"), "150"),
        (Decimal("45"), "150"),
        (Decimal("59.9"), "150"),
        (Decimal("60"), "300"),
        (Decimal("95"), "300"),
    ],
)
def test_nirmatrelvir_is_150_mg_when_egfr_is_30_to_below_60(egfr, amount):
    planned = planned_amount(PAX, egfr=egfr)
    assert planned.amount == Decimal(amount)
    assert planned.unit == "mg nirmatrelvir"


def test_the_reduced_dose_says_why_and_a_missing_egfr_says_so():
    assert planned_amount(PAX, egfr=Decimal("45")).note == "eGFR 30 to < 60 mL/min"
    assert planned_amount(PAX, egfr=None).note == "eGFR not given: standard dose"
    assert planned_amount(PAX, egfr=Decimal("80")).note == ""


# --- UC-MSC amount ----------------------------------------------------------------------------


def test_cells_per_kg_times_screening_weight_in_scientific_notation():
    planned = planned_amount(MSC, weight_kg=Decimal("70.5"))
    assert planned.amount == Decimal("70500000")
    assert planned.unit == "cells"
    assert scientific(planned.amount) == "7.05 × 10⁷"
    assert scientific(Decimal("60000000")) == "6 × 10⁷"
    assert scientific(Decimal("99990000")) == "1 × 10⁸"
    assert scientific(Decimal("300")) == "300"


def test_a_per_kg_dose_without_a_weight_is_refused():
    with pytest.raises(ValueError, match="body weight"):
        planned_amount(MSC, weight_kg=None)


# --- Reminder times and retries -----------------------------------------------------------------


def test_reminders_24_and_1_hour_ahead_but_none_already_in_the_past():
    due = at(SHANGHAI, 2026, 3, 11, 9, 0)
    early = at(SHANGHAI, 2026, 3, 10, 8, 0)
    assert reminder_times(due, PROTOCOL.reminder_lead_hours, not_before=early) == [
        (24, at(SHANGHAI, 2026, 3, 10, 9, 0)),
        (1, at(SHANGHAI, 2026, 3, 11, 8, 0)),
    ]
    late = at(SHANGHAI, 2026, 3, 10, 23, 59)
    assert reminder_times(due, PROTOCOL.reminder_lead_hours, not_before=late) == [
        (1, at(SHANGHAI, 2026, 3, 11, 8, 0))
    ]


def test_retry_backoff_doubles_and_is_capped():
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert retry_delay(30) == timedelta(hours=1)


def test_amounts_read_as_people_write_them_never_in_exponent_notation():
    assert plain_amount(Decimal("300.0000")) == "300"
    assert plain_amount(Decimal("62.5000")) == "62.5"
    assert plain_amount(Decimal("70500000.0000")) == "70500000"
    assert scientific(Decimal("300.0000")) == "300"
    assert scientific(Decimal("150")) == "150"
    assert scientific(Decimal("9999")) == "9999"
    assert scientific(Decimal("10000")) == "1 × 10⁴"
    assert scientific(Decimal("0.0001")) == "1 × 10⁻⁴"


# --- Plausibility of a record: the protocol's settings, at their edges -----------------------


def test_the_protocol_file_sets_each_schedules_plausible_amounts_and_far_hours():
    assert (PAX.amount_min_fraction, PAX.amount_max_fraction) == (Decimal("0.5"), Decimal("2"))
    assert PAX.far_outside_window_hours == 6
    assert (MSC.amount_min_fraction, MSC.amount_max_fraction) == (Decimal("0.05"), Decimal("1.5"))
    assert MSC.far_outside_window_hours == 24


def pax_plausible(amount: str) -> bool:
    return amount_is_plausible(
        Decimal(amount),
        planned=Decimal("300"),
        min_fraction=PAX.amount_min_fraction,
        max_fraction=PAX.amount_max_fraction,
    )


@pytest.mark.parametrize(
    ("amount", "plausible"),
    [
        ("149.9999", False),
        ("150", True),
        ("300", True),
        ("600", True),
        ("600.0001", False),
        ("300000000", False),
    ],
)
def test_nirmatrelvir_300_mg_accepts_half_to_double_and_refuses_a_typing_slip(amount, plausible):
    assert pax_plausible(amount) is plausible


@pytest.mark.parametrize(
    ("amount", "plausible"),
    [("3524999", False), ("3525000", True), ("105750000", True), ("105750001", False)],
)
def test_uc_msc_70_5_million_cells_accepts_5_percent_to_150_percent(amount, plausible):
    assert (
        amount_is_plausible(
            Decimal(amount),
            planned=Decimal("70500000"),
            min_fraction=MSC.amount_min_fraction,
            max_fraction=MSC.amount_max_fraction,
        )
        is plausible
    )


def test_given_in_the_minute_of_randomization_is_not_before_it_the_minute_before_is():
    randomized = at(SHANGHAI, 2026, 3, 10, 10, 0, 30)
    assert not given_before_randomization(at(SHANGHAI, 2026, 3, 10, 10, 0), randomized)
    assert given_before_randomization(at(SHANGHAI, 2026, 3, 10, 9, 59), randomized)
    assert given_before_randomization(at(SHANGHAI, 1960, 1, 1, 8, 0), randomized)


def pax_far(*parts) -> bool:
    # The 08:00 dose on 2026-03-11: on time 06:00 to 10:00.
    return far_outside_window(
        at(SHANGHAI, *parts),
        window_start=at(SHANGHAI, 2026, 3, 11, 6, 0),
        window_end=at(SHANGHAI, 2026, 3, 11, 10, 0),
        far_hours=PAX.far_outside_window_hours,
    )


@pytest.mark.parametrize(
    ("parts", "far"),
    [
        ((2026, 3, 10, 23, 59), True),
        ((2026, 3, 11, 0, 0), False),
        ((2026, 3, 11, 9, 0), False),
        ((2026, 3, 11, 16, 0), False),
        ((2026, 3, 11, 16, 1), True),
    ],
)
def test_a_paxlovid_dose_is_far_outside_more_than_6_hours_either_side_of_its_window(parts, far):
    assert pax_far(*parts) is far


def msc_far(*parts) -> bool:
    doses = dose_plan(
        MSC, randomized_at=at(SHANGHAI, 2026, 3, 10, 8, 0), zone=SHANGHAI, weight_kg=Decimal("70")
    )
    return far_outside_window(
        at(SHANGHAI, *parts),
        window_start=doses[0].window_start,
        window_end=doses[0].window_end,
        far_hours=MSC.far_outside_window_hours,
    )


@pytest.mark.parametrize(
    ("parts", "far"),
    [
        ((2026, 3, 9, 23, 59), True),
        ((2026, 3, 10, 0, 0), False),
        ((2026, 3, 12, 23, 59), False),
        ((2026, 3, 13, 0, 0), True),
    ],
)
def test_a_day_1_infusion_is_far_outside_beyond_the_day_either_side(parts, far):
    assert msc_far(*parts) is far


def schedule_with(**plausibility) -> dict:
    return {
        "code": "T",
        "title": "T",
        "version": "1",
        "randomization": {"block_sizes": [2]},
        "arms": [
            {
                "code": "A",
                "name": "A",
                "arm_type": "experimental",
                "ratio": 2,
                "dose_schedules": [
                    {
                        "product": "Drug",
                        "route": "oral",
                        "study_days": [1],
                        "times": ["08:00"],
                        "window_kind": "hours",
                        "window_hours": 2,
                        "amount": "100",
                        "amount_unit": "mg",
                        **plausibility,
                    }
                ],
            }
        ],
    }


def test_a_schedule_without_the_settings_gets_half_to_double_and_24_hours():
    schedule = definition_from_dict(schedule_with()).sections["dose_schedules"]["A"][0]
    assert (schedule.amount_min_fraction, schedule.amount_max_fraction) == (
        Decimal("0.5"),
        Decimal("2"),
    )
    assert schedule.far_outside_window_hours == 24


@pytest.mark.parametrize(
    "plausibility",
    [
        {"plausible_amount_fraction": ["1.1", "2"]},
        {"plausible_amount_fraction": ["0", "2"]},
        {"plausible_amount_fraction": ["0.5", "0.9"]},
        {"far_outside_window_hours": -1},
    ],
)
def test_a_plausible_range_that_leaves_out_the_planned_dose_is_a_protocol_problem(plausibility):
    def e010(**settings):
        problems = protocol_problems(definition_from_dict(schedule_with(**settings)))
        return [p.msg for p in problems if p.id == "trialsite.E010"]

    assert e010() == []
    assert len(e010(**plausibility)) == 1


def test_the_protocol_problem_names_the_schedule_and_its_settings():
    problems = protocol_problems(
        definition_from_dict(schedule_with(plausible_amount_fraction=["1.1", "2"]))
    )
    assert [p.msg for p in problems if p.id == "trialsite.E010"] == [
        "Arm A: the schedule of Drug has a plausible amount of 1.1 to 2 x planned and 24 h as "
        "far outside its window."
    ]


def test_the_shipped_protocol_has_no_problem_with_its_plausibility_settings():
    assert protocol_problems(PROTOCOL) == []
