"""Where alerts go: Slack (webhook or bot), e-mail over SMTP, or the console.

Only hosts named in the configuration are ever called: the HTTP client refuses
any other host, and redirects are not followed.
"""

from __future__ import annotations

import email.utils
import re
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib
import httpx

from services.notifier.config import Destination
from services.notifier.messages import AlertMessage

SLACK_API_URL = "https://slack.com/api/chat.postMessage"
HTTP_TIMEOUT_SECONDS = 10.0
# chat.postMessage errors that refuse the message itself: another message may go through.
MESSAGE_SLACK_ERRORS = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_too_long",
                                  "no_text"})
# chat.postMessage errors that no retry can fix.
PERMANENT_SLACK_ERRORS = MESSAGE_SLACK_ERRORS | frozenset({
    "channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "not_authed",
    "account_inactive", "token_revoked", "token_expired", "no_permission", "missing_scope",
    "restricted_action",
})
# A header is one line: the email package refuses every break str.splitlines() knows.
LINE_BREAK_RUN = re.compile(r"\s*[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]\s*")


@dataclass
class DeliveryFailed(Exception):
    """A delivery attempt failed; ``retry_after`` is the server's wish, if it said one.

    ``message_refused`` says the destination refused this message's content, not the
    destination itself being unusable.
    """

    reason: str
    permanent: bool = False
    retry_after: float | None = None
    message_refused: bool = False

    def __str__(self) -> str:
        return self.reason


class Channel(Protocol):
    """Sends one alert message to one destination; raises DeliveryFailed when it could not."""

    min_interval: timedelta

    async def send(self, message: AlertMessage) -> None:
        """Return once the destination accepted the message."""


class ConsoleChannel:
    """Prints alerts on standard output: the channel when none is configured."""

    min_interval = timedelta(0)

    async def send(self, message: AlertMessage) -> None:
        """Print the alert's text."""
        print(f"ALERT {message.text}", file=sys.stdout, flush=True)


class SlackWebhookChannel:
    """Posts alerts to one Slack incoming-webhook URL."""

    def __init__(self, client: httpx.AsyncClient, url: str, min_interval: timedelta) -> None:
        self._client = client
        self._url = url
        self.min_interval = min_interval

    async def send(self, message: AlertMessage) -> None:
        """Post the Block Kit message; classify the failure if Slack refuses it."""
        response = await _post(self._client, self._url, json=message.slack_payload())
        _raise_for_status(response)


class SlackBotChannel:
    """Posts alerts with a bot token to one Slack channel through chat.postMessage."""

    def __init__(self, client: httpx.AsyncClient, token: str, channel: str,
                 min_interval: timedelta, api_url: str = SLACK_API_URL) -> None:
        self._client = client
        self._token = token
        self._channel = channel
        self._api_url = api_url
        self.min_interval = min_interval

    async def send(self, message: AlertMessage) -> None:
        """Post the message; Slack answers 200 with ``ok: false`` for most refusals."""
        response = await _post(self._client, self._api_url,
                               json={"channel": self._channel, **message.slack_payload()},
                               headers={"Authorization": f"Bearer {self._token}"})
        _raise_for_status(response)
        try:
            answer = response.json()
        except ValueError:
            raise DeliveryFailed(f"Slack answered no JSON: {response.text[:200]}") from None
        if not answer.get("ok"):
            error = str(answer.get("error", "unknown_error"))
            raise DeliveryFailed(f"Slack refused the message: {error}",
                                 permanent=error in PERMANENT_SLACK_ERRORS,
                                 message_refused=error in MESSAGE_SLACK_ERRORS)


@dataclass(frozen=True)
class SmtpServer:
    """An SMTP submission server from ``smtp://`` (STARTTLS if offered) or ``smtps://`` URLs."""

    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        """Return the server ``url`` names."""
        parts = urlsplit(url)
        implicit_tls = parts.scheme == "smtps"
        return cls(hostname=parts.hostname or "localhost",
                   port=parts.port or (465 if implicit_tls else 587),
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None,
                   use_tls=implicit_tls)


class EmailChannel:
    """Mails alerts to one address, as UTF-8 plain text with an encoded subject."""

    min_interval = timedelta(0)

    def __init__(self, server: SmtpServer, sender: str, recipient: str,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self._server = server
        self._sender = sender
        self._recipient = recipient
        self._tls_context = tls_context

    def compose(self, message: AlertMessage) -> EmailMessage:
        """Return the e-mail carrying ``message``."""
        mail = EmailMessage()
        mail["Subject"] = LINE_BREAK_RUN.sub(" ", message.title)
        mail["From"] = self._sender
        mail["To"] = self._recipient
        mail["Date"] = email.utils.format_datetime(datetime.now(UTC))
        mail["Message-ID"] = email.utils.make_msgid(domain=self._sender.rsplit("@", 1)[1])
        # base64 keeps Japanese text intact through any relay, 8BITMIME or not.
        mail.set_content(message.body, charset="utf-8", cte="base64")
        return mail

    async def send(self, message: AlertMessage) -> None:
        """Submit the e-mail; a 5xx answer, to the recipient too, is permanent."""
        server = self._server
        try:
            await aiosmtplib.send(
                self.compose(message), hostname=server.hostname, port=server.port,
                username=server.username, password=server.password, use_tls=server.use_tls,
                tls_context=self._tls_context, timeout=HTTP_TIMEOUT_SECONDS)
        except aiosmtplib.SMTPRecipientsRefused as error:
            # A 4xx refusal (greylisting, a full mailbox) asks to try again later.
            raise DeliveryFailed(f"recipient refused: {error}", permanent=all(
                refusal.code >= 500 for refusal in error.recipients)) from error
        except aiosmtplib.SMTPResponseException as error:
            raise DeliveryFailed(f"SMTP answered {error.code}: {error.message}",
                                 permanent=error.code >= 500) from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise DeliveryFailed(f"{type(error).__name__}: {error}") from error


async def _post(client: httpx.AsyncClient, url: str, **kwargs: object) -> httpx.Response:
    """Return the answer to a POST, or raise DeliveryFailed if none came."""
    try:
        return await client.post(url, timeout=HTTP_TIMEOUT_SECONDS, **kwargs)  # type: ignore[arg-type]
    except httpx.HTTPError as error:
        raise DeliveryFailed(f"{type(error).__name__}: {error}") from error


def _raise_for_status(response: httpx.Response) -> None:
    """Return if Slack accepted the request; raise DeliveryFailed saying whether to retry."""
    if response.status_code == 200:
        return
    reason = f"Slack answered {response.status_code}: {response.text[:200]}"
    if response.status_code == 429:
        raise DeliveryFailed(reason, retry_after=retry_after(response.headers))
    # 4xx other than 429 means the message or the destination is wrong: retrying cannot help.
    # A webhook answers 400 to the payload (invalid_blocks, no_text, ...), other 4xx to the
    # destination (404 no_service, 403 invalid_token, 410 channel_is_archived).
    raise DeliveryFailed(reason, permanent=400 <= response.status_code < 500,
                         message_refused=response.status_code == 400)


# The longest wait a Retry-After header is taken at: a misbehaving server's year-long (or
# longer than a timedelta holds) wait would otherwise park the destination for good.
LONGEST_RETRY_AFTER = 3600.0


def retry_after(headers: httpx.Headers) -> float | None:
    """Return the seconds a Retry-After header asks for (delta or HTTP date), if any, at most
    LONGEST_RETRY_AFTER."""
    value = headers.get("retry-after")
    if value is None:
        return None
    if value.strip().isdigit():
        return min(float(value), LONGEST_RETRY_AFTER)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:  # a date "-0000" names no zone, but HTTP dates are in GMT
        parsed = parsed.replace(tzinfo=UTC)
    return min(max(0.0, (parsed - datetime.now(UTC)).total_seconds()), LONGEST_RETRY_AFTER)


def host_guard(allowed: Iterable[str]) -> Callable[[httpx.Request], Awaitable[None]]:
    """Return an httpx request hook that refuses every host:port not in ``allowed``."""
    hosts = frozenset(allowed)

    async def guard(request: httpx.Request) -> None:
        if request.url.netloc.decode() not in hosts:
            raise DeliveryFailed(f"{request.url.host} is not a configured host", permanent=True)

    return guard


def allowed_hosts(destinations: Iterable[Destination], *, bot_api_url: str) -> set[str]:
    """Return the host:port of every configured webhook, and the Slack API's for a bot."""
    urls = [d.target for d in destinations if d.kind == "slack_webhook"]
    if any(d.kind == "slack_bot" for d in destinations):
        urls.append(bot_api_url)
    return {httpx.URL(url).netloc.decode() for url in urls}


def open_channels(destinations: Mapping[str, Destination], client: httpx.AsyncClient, *,
                  bot_token: str | None, smtp_url: str | None, sender: str,
                  slack_interval: timedelta, bot_api_url: str = SLACK_API_URL,
                  tls_context: ssl.SSLContext | None = None) -> dict[str, Channel]:
    """Return a channel for each configured destination."""
    channels: dict[str, Channel] = {}
    for key, destination in destinations.items():
        if destination.kind == "slack_webhook":
            channels[key] = SlackWebhookChannel(client, destination.target, slack_interval)
        elif destination.kind == "slack_bot" and bot_token:
            channels[key] = SlackBotChannel(client, bot_token, destination.target,
                                            slack_interval, bot_api_url)
        elif destination.kind == "email" and smtp_url:
            channels[key] = EmailChannel(SmtpServer.from_url(smtp_url), sender,
                                         destination.target, tls_context)
        elif destination.kind == "console":
            channels[key] = ConsoleChannel()
    return channels
