"""Notifier's settings."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, HttpUrl, SecretStr, field_validator

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
    alert_locale: Literal["ja", "en"] = "ja"
    alert_timezone: str = "Asia/Tokyo"

    @field_validator("alert_timezone")
    @classmethod
    def known_timezone(cls, value: str) -> str:
        """Return the time zone name if the system knows it."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value
