"""Ingest's settings."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from baton_runtime.settings import RuntimeSettings


class IngestSettings(RuntimeSettings):
    """Capture API settings; API keys come as ``source=key,...``."""

    http_port: int = Field(default=8001, ge=1, le=65535)
    ingest_api_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)

    @field_validator("ingest_api_keys", mode="before")
    @classmethod
    def parse_api_keys(cls, value: object) -> object:
        """Return ``source=key,...`` as a mapping of source to key."""
        if not isinstance(value, str):
            return value
        keys: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            source, separator, key = item.partition("=")
            if not separator or not source.strip() or len(key.strip()) < 16:
                raise ValueError(
                    "expected source=key pairs separated by commas, keys of 16+ characters"
                )
            keys[source.strip()] = key.strip()
        return keys
