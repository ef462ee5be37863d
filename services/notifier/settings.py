"""Notifier's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, HttpUrl, SecretStr, ValidationInfo, field_validator

from baton_runtime.business_time import TimeZoneName
from baton_runtime.settings import Port, RuntimeSettings
from services.notifier import config


class NotifierSettings(RuntimeSettings):
    """Where alerts go; with none of the channels set they print to the console.

    ``BATON_NOTIFIER_CONFIG_FILE`` names an optional YAML file with the business
    calendar, the SLA table and per-team, per-rep and manager channels; the
    variables below are the default channel every recipient falls back to.
    """

    http_port: Port = 8005
    slack_webhook_url: HttpUrl | None = None
    slack_bot_token: SecretStr | None = None
    slack_channel: config.SlackChannel | None = None
    smtp_url: str | None = Field(default=None, pattern=r"^smtps?://")
    alert_email_to: str | None = Field(
        default=None, pattern=rf"^\s*{config.ADDRESS}(\s*,\s*{config.ADDRESS})*\s*$",
        description="Comma-separated addresses; used when BATON_SMTP_URL is set.")
    alert_email_from: str = Field(default="baton@localhost", pattern=r"^[^@\s]+@[^@\s]+$")
    delivery_max_attempts: int = Field(default=8, ge=1, le=100)
    slack_min_interval_ms: int = Field(
        default=1000, ge=0, le=60_000,
        description="Least time between two messages to one Slack webhook or channel; "
                    "alerts arriving meanwhile are folded into one digest.")
    sla_sweep_interval_ms: int = Field(default=2000, ge=50, le=600_000)
    alert_locale: Literal["ja", "en"] = "ja"
    alert_timezone: TimeZoneName = "Asia/Tokyo"
    notifier_config_file: Path | None = None

    @field_validator("notifier_config_file")
    @classmethod
    def valid_config_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        """Return the path if the file and the variables it depends on make a configuration."""
        if "alert_timezone" not in info.data:
            return value  # that variable's own error is reported instead
        config.build(config.read_file(value), _environment(info.data))
        return value

    def notifier_config(self) -> config.NotifierConfig:
        """Return the validated configuration: YAML file merged with these variables."""
        return config.build(config.read_file(self.notifier_config_file),
                            _environment(self.model_dump()))


def _environment(values: dict[str, object]) -> config.Environment:
    """Return what the variables contribute to the configuration."""
    webhook = values.get("slack_webhook_url")
    email_to = str(values.get("alert_email_to") or "")
    return config.Environment(
        slack_webhook_url=str(webhook) if webhook else None,
        slack_channel=str(values["slack_channel"]) if values.get("slack_channel") else None,
        email_to=tuple(address.strip() for address in email_to.split(",") if address.strip()),
        bot_configured=values.get("slack_bot_token") is not None,
        smtp_configured=values.get("smtp_url") is not None,
        locale=str(values.get("alert_locale", "ja")),
        display_timezone=str(values["alert_timezone"]),
    )
