"""Routing's settings."""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from baton_runtime.business_time import (
    JAPANESE_YEAR_END,
    BusinessCalendar,
    known_holiday_country,
    known_timezone,
    month_days,
)
from baton_runtime.settings import FiscalYearStartMonth, Port, RuntimeSettings

HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


class RoutingSettings(RuntimeSettings):
    """Routing service settings.

    The signing secret verifies Slack button clicks; Slack's ``response_url`` is only
    followed to the allowed hosts. The business calendar (time zone, hours, public
    holidays) counts the SLA due times lead.promoted announces and sets the funnel's periods.
    """

    http_port: Port = 8003
    slack_signing_secret: SecretStr | None = None
    slack_response_hosts: Annotated[frozenset[str], NoDecode] = frozenset({"hooks.slack.com"})
    slack_locale: Literal["ja", "en"] = "ja"
    mql_sla_minutes: int = Field(default=60, ge=1, description="Business minutes to accept.")
    routing_outbound_sources: Annotated[frozenset[str], NoDecode] = frozenset({"outbound"})
    routing_timezone: str = "Asia/Tokyo"
    routing_business_hours: str = "09:00-18:00"
    routing_holidays: str = Field(default="JP", description="ISO country code, or 'none'.")
    routing_closed_days: Annotated[tuple[str, ...], NoDecode] = Field(
        default=JAPANESE_YEAR_END, description="Comma-separated MM-DD days closed every year, "
                                               "or 'none'.")
    # The funnel's fiscal quarters, named as pipeline's forecast names them.
    fiscal_year_start_month: FiscalYearStartMonth = 4
    routing_queue_interval_seconds: float = Field(
        default=60.0, gt=0, le=3600,
        description="How often queued leads are offered to reps who became available "
                    "(their day started, they came back from leave, they joined).")

    @field_validator("slack_response_hosts", "routing_outbound_sources", mode="before")
    @classmethod
    def comma_separated(cls, value: object) -> object:
        """Return ``a,b,c`` as a set of trimmed, non-empty names."""
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("routing_closed_days", mode="before")
    @classmethod
    def days_of_the_year(cls, value: object) -> object:
        """Return ``MM-DD,...`` (or 'none') as a tuple of days, refusing any other text."""
        if value == "none":
            return ()
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, tuple | list):
            month_days(value)
        return value

    @field_validator("routing_holidays")
    @classmethod
    def known_country(cls, value: str) -> str:
        """Return the country code if the holidays package knows it (or 'none')."""
        if value != "none":
            known_holiday_country(value)
        return value

    @field_validator("routing_timezone")
    @classmethod
    def known_zone(cls, value: str) -> str:
        """Return the time zone name if the system knows it."""
        return known_timezone(value)

    @field_validator("routing_business_hours")
    @classmethod
    def opening_before_closing(cls, value: str) -> str:
        """Return ``HH:MM-HH:MM`` if both are times of day and opening comes first."""
        opens, closes = parse_hours(value)
        if opens >= closes:
            raise ValueError(f"opening {opens:%H:%M} must be before closing {closes:%H:%M}")
        return value

    def business_calendar(self) -> BusinessCalendar:
        """Return the business calendar these settings describe."""
        opens, closes = parse_hours(self.routing_business_hours)
        return BusinessCalendar(
            timezone=self.routing_timezone, opens=opens, closes=closes,
            holidays=None if self.routing_holidays == "none" else self.routing_holidays,
            closed_days=month_days(self.routing_closed_days))


def parse_hours(value: str) -> tuple[time, time]:
    """Return the opening and closing times of ``HH:MM-HH:MM``; raise ValueError if invalid."""
    match = HOURS.match(value)
    if match is None:
        raise ValueError("expected HH:MM-HH:MM")
    hour_open, minute_open, hour_close, minute_close = map(int, match.groups())
    return time(hour_open, minute_open), time(hour_close, minute_close)
