"""Ingest's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import NoDecode

from baton_runtime.settings import Port, RuntimeSettings
from services.ingest import access
from services.ingest.adapters import load_mapping_file

# A rate limit's bound, for the default and each key's own (the keys table's column is an
# integer, and a limit of millions a minute is no limit).
MOST_REQUESTS_PER_MINUTE = 1_000_000
# A batch's limits unless set otherwise; capture routes built without settings hold them.
MAX_BATCH_RECORDS = 1000
MAX_BATCH_BYTES = 4 * 1024 * 1024


class IngestSettings(RuntimeSettings):
    """Capture API settings; bootstrap API keys come as ``source=key,...``."""

    http_port: Port = 8001
    ingest_api_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    ingest_max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    ingest_max_batch_bytes: int = Field(
        default=MAX_BATCH_BYTES, ge=1024, le=64 * 1024 * 1024,
        description="Body limit of POST /v1/batch: 1,000 records do not fit in 256 KiB.")
    ingest_max_batch_records: int = Field(default=MAX_BATCH_RECORDS, ge=1, le=10_000)
    ingest_rate_limit_per_minute: int = Field(
        default=600, ge=1, le=MOST_REQUESTS_PER_MINUTE,
        description="Requests a minute per API key and process, unless the key sets its own.")
    ingest_signature_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    ingest_idempotency_retention_hours: int = Field(default=72, ge=1, le=24 * 90)
    ingest_public_origin: str | None = Field(
        default=None, pattern=r"^https?://[^/]+$",
        description="Scheme and host the public reaches ingest at (behind a proxy); HubSpot "
        "signs the URL it called.")
    ingest_webhook_mapping_file: Path | None = Field(
        default=None, description="YAML field mappings of the generic webhook adapters.")

    @field_validator("ingest_api_keys", mode="before")
    @classmethod
    def parse_api_keys(cls, value: object) -> object:
        """Return ``source=key,...`` as a mapping of source to key; a source may appear once."""
        if not isinstance(value, str):
            return value
        keys: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            source, separator, key = item.partition("=")
            if not separator or len(key.strip()) < 16:
                raise ValueError(
                    "expected source=key pairs separated by commas, keys of 16+ characters"
                )
            name = access.valid_source(source)
            if name in keys:
                # A dictionary would keep only the last key, and the first one's clients
                # would be refused. Rotating needs no second entry: a listed key is stored
                # and stays valid after it leaves the list, until `baton keys revoke`.
                raise ValueError(
                    f"source {name!r} is listed twice; list each source once (to rotate its "
                    "key, list the new one: the old one stays valid until `baton keys revoke`)")
            keys[name] = key.strip()
        return keys

    @field_validator("ingest_webhook_mapping_file")
    @classmethod
    def mapping_file_is_valid(cls, value: Path | None) -> Path | None:
        """Return the path if it names a valid mapping file, so a bad one stops the start."""
        if value is not None:
            try:
                load_mapping_file(value)
            except (OSError, yaml.YAMLError, ValidationError) as error:
                raise ValueError(f"{value}: {error}") from None
        return value
