"""Notifier's settings."""

from __future__ import annotations

from pydantic import Field, HttpUrl, SecretStr

from baton_runtime.settings import RuntimeSettings


class NotifierSettings(RuntimeSettings):
    """Where alerts go; with none of the channels set they print to the console."""

    http_port: int = Field(default=8005, ge=1, le=65535)
    slack_webhook_url: HttpUrl | None = None
    slack_bot_token: SecretStr | None = None
    slack_channel: str | None = None
    smtp_url: str | None = Field(default=None, pattern=r"^smtps?://")
    alert_email_to: str | None = None
    delivery_max_attempts: int = Field(default=8, ge=1, le=100)
