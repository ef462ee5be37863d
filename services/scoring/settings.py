"""Scoring's settings."""

from __future__ import annotations

from pydantic import Field

from baton_runtime.settings import RuntimeSettings


class ScoringSettings(RuntimeSettings):
    """Scoring service settings."""

    http_port: int = Field(default=8002, ge=1, le=65535)
