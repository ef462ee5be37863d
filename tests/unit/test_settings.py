"""Start-up validation names the bad variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from baton_runtime.settings import RuntimeSettings, SettingsError, load_settings
from services.ingest.settings import IngestSettings

VALID = {"BATON_DATABASE_URL": "postgresql://u@localhost/baton",
         "BATON_KAFKA_BOOTSTRAP_SERVERS": "localhost:9092"}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("BATON_DATABASE_URL", "BATON_KAFKA_BOOTSTRAP_SERVERS",
                 "BATON_INGEST_API_KEYS", "BATON_HTTP_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in VALID.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_valid_settings_load(environment: pytest.MonkeyPatch) -> None:
    settings = load_settings(RuntimeSettings)
    assert settings.kafka_bootstrap_servers == "localhost:9092"


def test_a_missing_variable_is_named(environment: pytest.MonkeyPatch) -> None:
    environment.delenv("BATON_DATABASE_URL")
    with pytest.raises(SettingsError, match="BATON_DATABASE_URL is required but not set"):
        load_settings(RuntimeSettings)


def test_an_empty_variable_counts_as_unset(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("BATON_DATABASE_URL", "")
    with pytest.raises(SettingsError, match="BATON_DATABASE_URL is required"):
        load_settings(RuntimeSettings)


def test_every_bad_variable_is_named_at_once(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("BATON_DATABASE_URL", "mysql://nope")
    environment.setenv("BATON_HTTP_PORT", "99999")
    with pytest.raises(SettingsError) as raised:
        load_settings(RuntimeSettings)
    assert "BATON_DATABASE_URL" in str(raised.value)
    assert "BATON_HTTP_PORT" in str(raised.value)


def test_ingest_api_keys_parse_as_source_key_pairs(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("BATON_INGEST_API_KEYS", "web=0123456789abcdef, partner=fedcba9876543210")
    keys = load_settings(IngestSettings).ingest_api_keys
    assert {s: k.get_secret_value() for s, k in keys.items()} == {
        "web": "0123456789abcdef", "partner": "fedcba9876543210"}


@pytest.mark.parametrize("value", ["web", "web=short", "=0123456789abcdef",
                                   "s" * 101 + "=0123456789abcdef"])  # over lead.captured's
def test_malformed_api_keys_are_refused(environment: pytest.MonkeyPatch, value: str) -> None:
    environment.setenv("BATON_INGEST_API_KEYS", value)
    with pytest.raises(SettingsError, match="BATON_INGEST_API_KEYS"):
        load_settings(IngestSettings)


def test_a_service_exits_2_naming_the_variable_before_touching_anything() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "baton", "serve", "scoring"],
        env={"PATH": "/usr/bin:/bin", "BATON_KAFKA_BOOTSTRAP_SERVERS": "localhost:9092"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "BATON_DATABASE_URL is required but not set" in result.stderr


def test_a_heartbeat_interval_not_below_the_session_timeout_is_refused_naming_both(
        environment: pytest.MonkeyPatch) -> None:
    # Heartbeats no more often than the session lasts: the broker would expire the member
    # between two of them, and the group would rebalance over and over instead of consuming.
    environment.delenv("BATON_KAFKA_HEARTBEAT_INTERVAL_MS", raising=False)  # default: 3000
    environment.setenv("BATON_KAFKA_SESSION_TIMEOUT_MS", "2000")
    with pytest.raises(SettingsError) as raised:
        load_settings(RuntimeSettings)
    assert str(raised.value) == (
        "invalid configuration: BATON_KAFKA_HEARTBEAT_INTERVAL_MS (3000) must be below "
        "BATON_KAFKA_SESSION_TIMEOUT_MS (2000)")


def test_a_heartbeat_interval_below_the_session_timeout_is_accepted(
        environment: pytest.MonkeyPatch) -> None:
    environment.setenv("BATON_KAFKA_SESSION_TIMEOUT_MS", "3000")
    environment.setenv("BATON_KAFKA_HEARTBEAT_INTERVAL_MS", "2999")
    assert load_settings(RuntimeSettings).kafka_heartbeat_interval_ms == 2999
