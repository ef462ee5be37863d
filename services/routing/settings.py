"""Routing's settings."""

from __future__ import annotations

from pydantic import Field, SecretStr

from baton_runtime.settings import RuntimeSettings


class RoutingSettings(RuntimeSettings):
    """Routing service settings; the signing secret verifies Slack button clicks."""

    http_port: int = Field(default=8003, ge=1, le=65535)
    slack_signing_secret: SecretStr | None = None
    mql_sla_minutes: int = Field(default=60, ge=1)
