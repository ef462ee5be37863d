"""Pipeline's settings."""

from __future__ import annotations

from pydantic import Field

from baton_runtime.settings import RuntimeSettings


class PipelineSettings(RuntimeSettings):
    """Pipeline service settings."""

    http_port: int = Field(default=8004, ge=1, le=65535)
