"""Where alerts go: a Slack incoming webhook, or the console when nothing is configured."""

from __future__ import annotations

import email.utils
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx


@dataclass
class DeliveryFailed(Exception):
    """A delivery attempt failed; ``retry_after`` is the server's wish, if it said one."""

    reason: str
    permanent: bool = False
    retry_after: float | None = None

    def __str__(self) -> str:
        return self.reason


class Channel(Protocol):
    """Sends one alert message; raises DeliveryFailed when it could not."""

    name: str

    async def send(self, message: dict[str, Any]) -> None:
        """Return once the channel accepted the message."""


class ConsoleChannel:
    """Prints alerts on standard output: the channel when none is configured."""

    name = "console"

    async def send(self, message: dict[str, Any]) -> None:
        """Print the alert's text."""
        print(f"ALERT {message['text']}", file=sys.stdout, flush=True)


class SlackWebhookChannel:
    """Posts alerts to one Slack incoming-webhook URL, and to nothing else."""

    name = "slack_webhook"

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self._client = client
        self._url = url

    async def send(self, message: dict[str, Any]) -> None:
        """Post the Block Kit message; classify the failure if Slack refuses it."""
        try:
            response = await self._client.post(self._url, json=message, timeout=10)
        except httpx.HTTPError as error:
            raise DeliveryFailed(f"{type(error).__name__}: {error}") from error
        if response.status_code == 200:
            return
        reason = f"Slack answered {response.status_code}: {response.text[:200]}"
        if response.status_code == 429:
            raise DeliveryFailed(reason, retry_after=retry_after(response.headers))
        # 4xx other than 429 means the message or the webhook is wrong: retrying cannot help.
        raise DeliveryFailed(reason, permanent=400 <= response.status_code < 500)


def retry_after(headers: httpx.Headers) -> float | None:
    """Return the seconds a Retry-After header asks for (delta or HTTP date), if any."""
    value = headers.get("retry-after")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value)
    parsed = email.utils.parsedate_to_datetime(value)
    return max(0.0, (parsed - datetime.now(UTC)).total_seconds())
