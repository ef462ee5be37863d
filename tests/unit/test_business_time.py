"""Business time on the Japanese calendar: weekends, holidays and opening hours skipped."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton_runtime.business_time import JAPANESE_YEAR_END, BusinessCalendar, month_days

TOKYO = ZoneInfo("Asia/Tokyo")
JAPAN = BusinessCalendar()


def tokyo(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=TOKYO)


def test_an_hour_inside_opening_hours_is_an_hour() -> None:
    assert JAPAN.add(tokyo(2026, 11, 20, 10, 0), timedelta(hours=1)) == tokyo(2026, 11, 20, 11, 0)


def test_friday_evening_rolls_over_the_weekend_to_monday_morning() -> None:
    # Friday 2026-11-20 17:30 + 1h: 30 min on Friday, 30 min on Monday 2026-11-24?
    # No: Monday 2026-11-23 is Labour Thanksgiving Day (勤労感謝の日), so Tuesday.
    assert JAPAN.add(tokyo(2026, 11, 20, 17, 30), timedelta(hours=1)) == tokyo(
        2026, 11, 24, 9, 30)


def test_golden_week_holidays_do_not_count() -> None:
    # Wednesday 2026-04-29 (昭和の日) is a holiday; 2026-05-04..06 too.
    assert JAPAN.add(tokyo(2026, 4, 28, 17, 0), timedelta(hours=2)) == tokyo(2026, 4, 30, 10, 0)
    assert JAPAN.add(tokyo(2026, 5, 1, 18, 0), timedelta(minutes=1)) == tokyo(2026, 5, 7, 9, 1)


def test_the_year_end_closing_is_skipped_when_the_business_closes_for_it() -> None:
    # Monday 2026-12-28 17:00 + 2h: an hour that day, then 29 December to 3 January are
    # closed (Sunday the 3rd anyway): Monday 4 January, 10:00.
    closing = BusinessCalendar(closed_days=month_days(JAPANESE_YEAR_END))
    assert closing.add(tokyo(2026, 12, 28, 17, 0), timedelta(hours=2)) == tokyo(
        2027, 1, 4, 10, 0)
    assert JAPAN.add(tokyo(2026, 12, 28, 17, 0), timedelta(hours=2)) == tokyo(
        2026, 12, 29, 10, 0), "without closed days the 29th is a working Tuesday"
    assert closing.between(tokyo(2026, 12, 28, 9, 0), tokyo(2027, 1, 5, 9, 0)) == timedelta(
        hours=18)


def test_closed_days_are_days_of_the_year() -> None:
    assert month_days(["12-29", " 02-29 ", "01-03"]) == {(12, 29), (2, 29), (1, 3)}
    for text in ("13-01", "02-30", "1229", "12/29", "", "12-29-2026"):
        with pytest.raises(ValueError, match="not a day of the year"):
            month_days([text])


def test_a_start_before_opening_counts_from_opening() -> None:
    assert JAPAN.add(tokyo(2026, 11, 20, 7, 0), timedelta(hours=1)) == tokyo(2026, 11, 20, 10, 0)


def test_three_business_days_are_twenty_seven_opening_hours() -> None:
    assert JAPAN.add(tokyo(2026, 11, 18, 9, 0), timedelta(hours=27)) == tokyo(
        2026, 11, 20, 18, 0)


def test_between_counts_only_opening_hours() -> None:
    assert JAPAN.between(tokyo(2026, 11, 20, 17, 0), tokyo(2026, 11, 24, 10, 0)) == timedelta(
        hours=2)


def test_bad_calendars_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        BusinessCalendar(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="before closing"):
        BusinessCalendar(opens=time(18), closes=time(9))
    with pytest.raises(ValueError, match="holiday calendar"):
        BusinessCalendar(holidays="XX")


moments = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                       timezones=st.just(UTC))
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20))


@given(moments, durations)
def test_adding_then_measuring_gives_the_duration_back(start: datetime,
                                                       duration: timedelta) -> None:
    end = JAPAN.add(start, duration)
    assert end >= start
    assert JAPAN.between(start, end) == duration


@given(moments, durations, durations)
def test_adding_is_monotonic(start: datetime, shorter: timedelta, longer: timedelta) -> None:
    shorter, longer = sorted((shorter, longer))
    assert JAPAN.add(start, shorter) <= JAPAN.add(start, longer)
