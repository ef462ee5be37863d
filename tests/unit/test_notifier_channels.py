"""Channels: how Slack's and SMTP's answers are read, e-mail encoding, and the host guard."""

from __future__ import annotations

import email
import email.policy
import email.utils
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifier.channels import (
    LONGEST_RETRY_AFTER,
    DeliveryFailed,
    EmailChannel,
    SlackBotChannel,
    SlackWebhookChannel,
    SmtpServer,
    allowed_hosts,
    host_guard,
    open_channels,
    retry_after,
)
from services.notifier.config import Destination, webhook
from services.notifier.delivery import MAX_BACKOFF_SECONDS, backoff
from services.notifier.messages import AlertMessage

MESSAGE = AlertMessage(title="🔥 ホットリード: 株式会社サンプル",
                       text="山田 太郎 / 株式会社サンプル",
                       body="氏名: 山田 太郎\n会社: 株式会社サンプル\n", blocks=[])
HOOK = "https://hooks.slack.com/services/T/B/x"


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after(httpx.Headers({"Retry-After": "30"})) == 30.0
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    seconds = retry_after(httpx.Headers({"Retry-After": later}))
    assert seconds is not None and 100 < seconds <= 120
    assert retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_after(httpx.Headers()) is None



@pytest.mark.parametrize("value", [
    "99999999999999999999999",  # more seconds than a timedelta holds
    "Fri, 31 Dec 9999 23:59:59 GMT",
])
def test_retry_after_takes_an_absurd_wait_as_the_longest_it_honours(value: str) -> None:
    seconds = retry_after(httpx.Headers({"Retry-After": value}))
    assert seconds == LONGEST_RETRY_AFTER
    assert timedelta(seconds=seconds), "a wait the delivery worker can schedule"


def test_retry_after_reads_a_date_that_names_no_zone_as_gmt() -> None:
    later = datetime.now(UTC) + timedelta(seconds=120)
    seconds = retry_after(httpx.Headers({"Retry-After": later.strftime(
        "%a, %d %b %Y %H:%M:%S -0000")}))
    assert seconds is not None and 100 < seconds <= 120

def test_smtp_urls_name_server_port_credentials_and_tls() -> None:
    assert SmtpServer.from_url("smtps://alerts:p%40ss@smtp.example.com") == SmtpServer(
        "smtp.example.com", 465, "alerts", "p@ss", use_tls=True)
    assert SmtpServer.from_url("smtp://127.0.0.1:2525") == SmtpServer(
        "127.0.0.1", 2525, None, None, use_tls=False)
    assert SmtpServer.from_url("smtp://mail.example.com").port == 587


def test_e_mail_carries_japanese_subject_and_body_encoded_for_any_relay() -> None:
    channel = EmailChannel(SmtpServer.from_url("smtp://127.0.0.1:2525"),
                           "baton@example.co.jp", "sales@example.co.jp")
    raw = channel.compose(MESSAGE).as_bytes()
    assert raw.isascii(), "headers use encoded words and the body base64"
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == MESSAGE.title
    assert parsed["To"] == "sales@example.co.jp"
    assert parsed.get_content_charset() == "utf-8"
    assert parsed.get_content() == MESSAGE.body


@pytest.mark.parametrize("line_break", ["\n", "\r\n", " \r\n\t", "\u2028", "\x85"])
def test_a_company_with_a_line_break_still_makes_a_one_line_subject(line_break: str) -> None:
    title = f"🔥 ホットリード: 株式会社サンプル{line_break}東京支店"
    body = f"{title}\n\n会社: 株式会社サンプル{line_break}東京支店\n"
    channel = EmailChannel(SmtpServer.from_url("smtp://127.0.0.1:2525"),
                           "baton@example.co.jp", "sales@example.co.jp")
    raw = channel.compose(AlertMessage(title=title, text=title, body=body, blocks=[])).as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "🔥 ホットリード: 株式会社サンプル 東京支店"
    assert parsed.get_content().splitlines() == body.splitlines(), "the body keeps its lines"


def answering(status: int, body: str = "ok", headers: dict[str, str] | None = None
              ) -> httpx.AsyncClient:
    """Return a client whose every request gets this answer (httpx's own test transport)."""
    return httpx.AsyncClient(transport=httpx.MockTransport(
        lambda _: httpx.Response(status, text=body, headers=headers)))


@pytest.mark.parametrize(("status", "permanent", "wait", "refused"), [
    (500, False, None, False), (503, False, None, False), (404, True, None, False),
    (410, True, None, False), (400, True, None, True), (429, False, 7.0, False),
])
async def test_webhook_failures_say_whether_retrying_can_help(
        status: int, permanent: bool, wait: float | None, refused: bool) -> None:
    async with answering(status, headers={"Retry-After": "7"}) as client:
        with pytest.raises(DeliveryFailed) as failure:
            await SlackWebhookChannel(client, HOOK, timedelta(seconds=1)).send(MESSAGE)
    assert (failure.value.permanent, failure.value.retry_after) == (permanent, wait)
    assert failure.value.message_refused is refused, "a 400 refuses the message, not the hook"


@pytest.mark.parametrize(("error", "permanent", "refused"), [
    ("channel_not_found", True, False), ("invalid_auth", True, False),
    ("internal_error", False, False), ("invalid_blocks", True, True),
    ("msg_too_long", True, True)])
async def test_bot_refusals_in_a_200_answer_are_failures(error: str, permanent: bool,
                                                         refused: bool) -> None:
    async with answering(200, f'{{"ok": false, "error": "{error}"}}') as client:
        channel = SlackBotChannel(client, "xoxb-t", "#sales", timedelta(seconds=1))
        with pytest.raises(DeliveryFailed, match=error) as failure:
            await channel.send(MESSAGE)
    assert (failure.value.permanent, failure.value.message_refused) == (permanent, refused)


async def test_the_guard_refuses_hosts_not_configured_before_anything_is_sent() -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, text="ok")

    allowed = allowed_hosts([webhook(HOOK)], bot_api_url="https://slack.com/api/x")
    assert allowed == {"hooks.slack.com"}
    async with httpx.AsyncClient(transport=httpx.MockTransport(record),
                                 event_hooks={"request": [host_guard(allowed)]}) as client:
        await SlackWebhookChannel(client, HOOK, timedelta(0)).send(MESSAGE)
        with pytest.raises(DeliveryFailed, match="not a configured host") as failure:
            await SlackWebhookChannel(client, "https://evil.example.com/x", timedelta(0)
                                      ).send(MESSAGE)
    assert failure.value.permanent
    assert [request.url.host for request in sent] == ["hooks.slack.com"]


def test_the_bot_s_api_host_is_allowed_only_when_a_bot_channel_is_configured() -> None:
    bot = Destination("slack_bot:#sales", "slack_bot", "#sales")
    assert allowed_hosts([bot], bot_api_url="https://slack.com/api/chat.postMessage") == {
        "slack.com"}


async def test_channels_are_opened_only_for_what_is_configured() -> None:
    destinations = {d.key: d for d in (
        webhook(HOOK), Destination("slack_bot:#s", "slack_bot", "#s"),
        Destination("email:a@example.jp", "email", "a@example.jp"),
        Destination("console", "console", "stdout"))}
    async with httpx.AsyncClient() as client:
        channels = open_channels(destinations, client, bot_token=None, smtp_url=None,
                                 sender="b@example.jp", slack_interval=timedelta(seconds=1))
    assert set(channels) == {webhook(HOOK).key, "console"}
    assert channels[webhook(HOOK).key].min_interval == timedelta(seconds=1)
    assert channels["console"].min_interval == timedelta(0)


@given(st.integers(min_value=1, max_value=60))
def test_backoff_doubles_with_jitter_and_is_capped(attempt: int) -> None:
    ceiling = min(MAX_BACKOFF_SECONDS, 2.0 ** (attempt - 1))
    assert ceiling / 2 <= backoff(attempt) <= ceiling
