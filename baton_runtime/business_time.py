"""Business time: opening hours on working days of one time zone, public holidays excluded.

Shared by every service that counts SLA time (routing's due times, notifier's clocks).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import AfterValidator

MONDAY_TO_FRIDAY = frozenset({1, 2, 3, 4, 5})
# Japan's year-end and New Year closing (nenmatsu nenshi): most businesses, and by law
# government offices, close from 29 December to 3 January, holidays or not.
JAPANESE_YEAR_END = ("12-29", "12-30", "12-31", "01-01", "01-02", "01-03")
# A duration needing more calendar days than this is a configuration error, not a wait.
MAX_CALENDAR_DAYS = 3660


def known_timezone(name: str) -> str:
    """Return ``name`` if it is a time zone the system knows; raise ValueError otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


def known_holiday_country(code: str | None) -> str | None:
    """Return ``code`` if the holidays package has that country's calendar (None allowed)."""
    if code is not None and code not in holidays.list_supported_countries():
        raise ValueError(f"no public holiday calendar for {code!r}; use an ISO country code "
                         "such as JP")
    return code


def month_days(texts: Iterable[str]) -> frozenset[tuple[int, int]]:
    """Return ``MM-DD`` days of the year as (month, day); raise ValueError for any other text."""
    days = set()
    for text in texts:
        try:
            month, day = (int(part) for part in text.strip().split("-"))
            date(2000, month, day)  # a leap year: 02-29 is a day of some years
        except ValueError:
            raise ValueError(f"{text!r} is not a day of the year as MM-DD, e.g. 12-29") from None
        days.add((month, day))
    return frozenset(days)


TimeZoneName = Annotated[str, AfterValidator(known_timezone)]
HolidayCountry = Annotated[str | None, AfterValidator(known_holiday_country)]


@lru_cache(maxsize=256)
def public_holidays(country: str, year: int) -> frozenset[date]:
    """Return the public holidays of ``country`` (ISO 3166 code) in ``year``."""
    return frozenset(holidays.country_holidays(country, years=year))


@dataclass(frozen=True)
class BusinessCalendar:
    """Opening hours in a time zone, on working weekdays (ISO 1-7) that are neither public
    holidays nor days the business closes every year (``closed_days``, as (month, day))."""

    timezone: str = "Asia/Tokyo"
    opens: time = time(9)
    closes: time = time(18)
    holidays: str | None = "JP"
    workdays: frozenset[int] = MONDAY_TO_FRIDAY
    closed_days: frozenset[tuple[int, int]] = frozenset()

    def __post_init__(self) -> None:
        known_timezone(self.timezone)  # an unknown zone fails at start-up, not at the first lead
        known_holiday_country(self.holidays)
        if self.opens >= self.closes:
            raise ValueError(f"opening time {self.opens:%H:%M} must be before closing "
                             f"{self.closes:%H:%M}")
        if not self.workdays or not self.workdays <= frozenset(range(1, 8)):
            raise ValueError("workdays must be a non-empty set of ISO weekdays 1..7")

    @property
    def zone(self) -> ZoneInfo:
        """Return the calendar's time zone."""
        return ZoneInfo(self.timezone)

    @property
    def business_day(self) -> timedelta:
        """Return one business day as opening time: the hours from opening to closing."""
        any_day = date(2000, 1, 3)
        return datetime.combine(any_day, self.closes) - datetime.combine(any_day, self.opens)

    def is_business_day(self, day: date) -> bool:
        """Return True on a working weekday that is neither a public holiday nor a closed day."""
        return self.day_off(day) is None

    def day_off(self, day: date) -> str | None:
        """Return why ``day`` is no business day ("not a workday", "a closed day" or "a
        public holiday"), or None if it is one."""
        if day.isoweekday() not in self.workdays:
            return "not a workday"
        if (day.month, day.day) in self.closed_days:
            return "a closed day"
        if self.holidays and day in public_holidays(self.holidays, day.year):
            return "a public holiday"
        return None

    def is_open(self, at: datetime) -> bool:
        """Return True if ``at`` falls inside opening hours on a business day."""
        local = at.astimezone(self.zone)
        return self.is_business_day(local.date()) and self.opens <= local.time() < self.closes

    def _hours_of(self, day: date) -> tuple[datetime, datetime]:
        """Return the opening and closing instants of ``day`` in UTC."""
        return (datetime.combine(day, self.opens, self.zone).astimezone(UTC),
                datetime.combine(day, self.closes, self.zone).astimezone(UTC))

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """Return the instant ``duration`` of opening hours after ``start``, in UTC."""
        remaining = duration
        cursor = start.astimezone(UTC)
        day = cursor.astimezone(self.zone).date()
        for _ in range(MAX_CALENDAR_DAYS):
            if self.is_business_day(day):
                # Elapsed time is measured in UTC: local wall-clock arithmetic breaks on DST.
                opens, closes = self._hours_of(day)
                begin = max(cursor, opens)
                if begin < closes or remaining == timedelta(0):
                    if remaining <= max(timedelta(0), closes - begin):
                        return begin + remaining
                    remaining -= closes - begin
            day += timedelta(days=1)
        raise ValueError(f"no {duration} of business time within {MAX_CALENDAR_DAYS} days")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Return how much opening time lies between ``start`` and ``end`` (zero if reversed)."""
        total = timedelta(0)
        day = start.astimezone(self.zone).date()
        last = end.astimezone(self.zone).date()
        while day <= last:
            if self.is_business_day(day):
                opens, closes = self._hours_of(day)
                total += max(timedelta(0), min(closes, end) - max(opens, start))
            day += timedelta(days=1)
        return total

    def day_start(self, at: datetime) -> datetime:
        """Return local midnight of the day ``at`` falls on, in UTC."""
        local_day = at.astimezone(self.zone).date()
        return datetime.combine(local_day, time(0), self.zone).astimezone(UTC)
