"""Routing's settings: lists, the business calendar, and errors that name the variable."""

from __future__ import annotations

import os
from datetime import date, time

import pytest

from baton_runtime.settings import ENV_PREFIX, SettingsError, load_settings
from services.routing.settings import RoutingSettings


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BATON_DATABASE_URL", "postgresql://u@localhost/baton")
    monkeypatch.setenv("BATON_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    return monkeypatch


def test_defaults_describe_tokyo_business_hours_and_slack_only(
        environment: pytest.MonkeyPatch) -> None:
    settings = load_settings(RoutingSettings)
    calendar = settings.business_calendar()
    assert (calendar.timezone, calendar.opens, calendar.closes, calendar.holidays) == (
        "Asia/Tokyo", time(9), time(18), "JP")
    assert settings.slack_response_hosts == frozenset({"hooks.slack.com"})
    assert settings.routing_outbound_sources == frozenset({"outbound"})
    assert not calendar.is_business_day(date(2026, 12, 30)), "the year-end closing"


def test_lists_are_comma_separated_and_holidays_can_be_off(
        environment: pytest.MonkeyPatch) -> None:
    environment.setenv("BATON_SLACK_RESPONSE_HOSTS", " hooks.slack.com, 127.0.0.1 ,")
    environment.setenv("BATON_ROUTING_OUTBOUND_SOURCES", "outbound,bdr-list")
    environment.setenv("BATON_ROUTING_HOLIDAYS", "none")
    environment.setenv("BATON_ROUTING_BUSINESS_HOURS", "08:30-17:15")
    environment.setenv("BATON_ROUTING_CLOSED_DAYS", "none")
    settings = load_settings(RoutingSettings)
    assert settings.slack_response_hosts == frozenset({"hooks.slack.com", "127.0.0.1"})
    assert settings.routing_outbound_sources == frozenset({"outbound", "bdr-list"})
    calendar = settings.business_calendar()
    assert (calendar.opens, calendar.closes, calendar.holidays) == (time(8, 30), time(17, 15),
                                                                    None)
    assert calendar.is_business_day(date(2026, 12, 30)), "no closed days"


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("BATON_ROUTING_BUSINESS_HOURS", "18:00-09:00", "must be before closing"),
    ("BATON_ROUTING_BUSINESS_HOURS", "9-18", "expected HH:MM-HH:MM"),
    ("BATON_ROUTING_BUSINESS_HOURS", "09:00-25:00", "hour must be in 0..23"),
    ("BATON_ROUTING_TIMEZONE", "Asia/Atlantis", "unknown time zone"),
    ("BATON_ROUTING_HOLIDAYS", "XX", "no public holiday calendar"),
    ("BATON_ROUTING_CLOSED_DAYS", "12-29,12-32", "'12-32' is not a day of the year"),
    ("BATON_SLACK_LOCALE", "fr", "'ja' or 'en'"),
    ("BATON_MQL_SLA_MINUTES", "0", "greater than or equal to 1"),
])
def test_a_bad_variable_is_named(environment: pytest.MonkeyPatch, variable: str, value: str,
                                 message: str) -> None:
    environment.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"{variable} .*{message}"):
        load_settings(RoutingSettings)
