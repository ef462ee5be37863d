"""Ingest's settings: bad API keys and mapping files stop the start, naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton_runtime.settings import SettingsError, load_settings
from services.ingest.settings import IngestSettings


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("BATON_INGEST_API_KEYS", "BATON_INGEST_WEBHOOK_MAPPING_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATON_DATABASE_URL", "postgresql://u@localhost/baton")
    monkeypatch.setenv("BATON_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    return monkeypatch


def test_a_source_listed_twice_is_refused_naming_the_variable(
        environment: pytest.MonkeyPatch) -> None:
    # Only the last key used to be kept: the first one's clients were refused (403).
    environment.setenv("BATON_INGEST_API_KEYS",
                       "web=old-key-0123456789,partner=fedcba9876543210,web=new-key-0123456789")
    with pytest.raises(SettingsError, match=r"BATON_INGEST_API_KEYS(.|\n)*'web' is listed twice"):
        load_settings(IngestSettings)


def test_a_mapping_file_with_a_bad_constant_stops_the_start_naming_the_variable(
        environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    file = tmp_path / "mapping.yaml"
    file.write_text("adapters:\n  forms:\n    fields: {email: mail}\n"
                    "    constants: {touchpoint.type: inquiry.bogus}\n", encoding="utf-8")
    environment.setenv("BATON_INGEST_WEBHOOK_MAPPING_FILE", str(file))
    with pytest.raises(SettingsError, match=r"BATON_INGEST_WEBHOOK_MAPPING_FILE(.|\n)*"
                       r"constants\.touchpoint\.type"):
        load_settings(IngestSettings)
