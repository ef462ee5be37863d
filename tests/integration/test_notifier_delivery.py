"""Alert delivery against real PostgreSQL, a real HTTP server standing in for Slack and aiosmtpd."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from slack_sdk.models.blocks import ActionsBlock, Block
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from baton_runtime.clock import system_clock
from baton_runtime.db import create_engine
from baton_runtime.embedded import LOOPBACK, free_port
from baton_runtime.http import create_app
from baton_runtime.service import ServiceContext
from schemas.events import (
    Account,
    LeadProfile,
    LeadPromoted,
    LifecycleStage,
    ScoreReason,
    Tier,
    TouchpointType,
)
from services.notifier import api, handlers, store
from services.notifier.channels import SlackBotChannel, allowed_hosts, host_guard, open_channels
from services.notifier.config import Environment, NotifierConfig, NotifierFile, build
from services.notifier.delivery import DeliveryWorker
from services.notifier.messages import AlertMessage
from tests.support.databases import ServiceDatabase, migrated_database
from tests.support.fake_slack import FakeSlack, ReceivedMessage, Reply
from tests.support.infrastructure import PostgresServer
from tests.support.kafka import wait_until

pytestmark = pytest.mark.integration
SOURCE = "/baton/notifier"


NotifierDatabase = ServiceDatabase  # a migrated notifier schema in a fresh database


def notifier_database(postgres: PostgresServer
                      ) -> contextlib.AbstractAsyncContextManager[NotifierDatabase]:
    """Return a fresh database with the notifier's migrations applied."""
    return migrated_database(postgres, "notifier", store.plumbing, SOURCE)


@pytest.fixture
async def database(postgres: PostgresServer) -> AsyncIterator[NotifierDatabase]:
    async with notifier_database(postgres) as created:
        yield created


def configure(default_hook: str | None = None, *, smtp: bool = False,
              email_to: tuple[str, ...] = (), **channels: Any) -> NotifierConfig:
    """Return a configuration: a default webhook, and the YAML file's channels section."""
    environment = Environment(slack_webhook_url=default_hook, slack_channel=None,
                              email_to=email_to, bot_configured=False, smtp_configured=smtp,
                              locale="ja", display_timezone="Asia/Tokyo")
    return build(NotifierFile.model_validate({"channels": channels}), environment)


def promoted(lead_id: uuid.UUID | None = None, *, at: datetime | None = None,
             from_stage: LifecycleStage = LifecycleStage.LEAD,
             to_stage: LifecycleStage = LifecycleStage.MQL, owner_id: str | None = None,
             owner_name: str | None = None, team: str | None = "sdr",
             trigger: TouchpointType | None = None,
             company: str = "株式会社サンプル製作所") -> LeadPromoted:
    """Return a lead.promoted event; by default a tier-A lead becoming an MQL now."""
    return LeadPromoted(
        lead_id=lead_id or uuid.uuid4(), occurred_at=at or datetime.now(UTC),
        from_stage=from_stage, to_stage=to_stage, reason="test", owner_id=owner_id,
        owner_name=owner_name, team=team,
        profile=LeadProfile(email="taro@sample.co.jp", name="山田 太郎", company=company,
                            title="製造部 部長"),
        account=Account(account_key="sample.co.jp", domain="sample.co.jp"),
        score=88, tier=Tier.A, trigger=trigger,
        top_reasons=[ScoreReason(code="inquiry.demo_request", label="デモ依頼", points=50)])


async def handle(database: NotifierDatabase, config: NotifierConfig,
                 *events: LeadPromoted) -> None:
    """Run the lead.promoted handler over ``events``, each in its own unit of work."""
    for event in events:
        async with database.unit_of_work() as uow:
            await handlers.on_leads_promoted([event], uow, policy=config.policy)
            await uow.commit()


@contextlib.asynccontextmanager
async def delivering(database: NotifierDatabase, config: NotifierConfig, *,
                     slack_interval: timedelta = timedelta(seconds=1), max_attempts: int = 8,
                     smtp_url: str | None = None) -> AsyncIterator[DeliveryWorker]:
    """Run a delivery worker, as the service wires it, for the duration of the block."""
    guard = host_guard(allowed_hosts(config.destinations.values(), bot_api_url="http://x"))
    async with httpx.AsyncClient(event_hooks={"request": [guard]}) as client:
        channels = open_channels(config.destinations, client, bot_token=None,
                                 smtp_url=smtp_url, sender="baton@example.co.jp",
                                 slack_interval=slack_interval)
        worker = DeliveryWorker(database.engine, channels, database_url=database.url,
                                max_attempts=max_attempts, locale="ja")
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop, poll_seconds=0.2))
        try:
            yield worker
        finally:
            stop.set()
            await task


async def alert_rows(database: NotifierDatabase) -> list[Any]:
    """Return every delivery record, oldest first."""
    async with database.engine.connect() as connection:
        rows = await store.list_alerts(connection, status=None, kind=None, lead_id=None,
                                       limit=500)
    return sorted(rows, key=lambda row: row.id)


async def settled(database: NotifierDatabase) -> bool:
    """Return True once no delivery record is pending."""
    return all(row.status != "pending" for row in await alert_rows(database))


def lead_ids_in(message: ReceivedMessage) -> list[str]:
    """Return the lead ids of the Accept / Reject blocks in a Slack message, parsed by slack-sdk."""
    blocks = [Block.parse(block) for block in message.body["blocks"]]
    assert all(block is not None for block in blocks), "every block is valid Block Kit"
    return [block.block_id.removeprefix("lead:") for block in blocks
            if isinstance(block, ActionsBlock) and block.block_id]


async def test_slack_answering_500_then_200_gives_one_delivery(
        database: NotifierDatabase) -> None:
    async with FakeSlack().running() as slack:
        slack.replies = [Reply(500, "internal_error")]
        config = configure(slack.webhook_url)
        event = promoted()
        await handle(database, config, event)
        async with delivering(database, config):
            await wait_until(lambda: settled(database), 20, "the alert to be delivered")
        [row] = await alert_rows(database)
        assert (row.status, row.attempts, row.last_error) == ("delivered", 2, None)
        first, second = slack.messages
        assert first.body == second.body and lead_ids_in(second) == [str(event.lead_id)]


async def test_429_with_retry_after_is_waited_out(database: NotifierDatabase) -> None:
    async with FakeSlack().running() as slack:
        slack.replies = [Reply(429, "rate_limited", {"Retry-After": "2"})]
        config = configure(slack.webhook_url)
        await handle(database, config, promoted())
        async with delivering(database, config, max_attempts=1):
            await wait_until(lambda: settled(database), 20, "the alert to be delivered")
        first, second = slack.messages
        assert second.arrived_at - first.arrived_at >= 2.0
        [row] = await alert_rows(database)
        assert row.status == "delivered", "being asked to wait never uses up attempts"


async def test_a_permanent_failure_is_kept_and_listed_by_the_api(
        database: NotifierDatabase) -> None:
    async with FakeSlack().running() as slack:
        slack.replies = [Reply(404, "no_service")]
        config = configure(slack.webhook_url)
        event = promoted()
        await handle(database, config, event)
        async with delivering(database, config):
            await wait_until(lambda: settled(database), 20, "the alert to fail")
        assert len(slack.messages) == 1, "a 404 is not retried"

    app = create_app(service="notifier", version="test", routers=[api.router], readiness={})
    app.state.context = ServiceContext("notifier", None, database.engine, database.unit_of_work,
                                       system_clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://notifier") as client:
        failed = (await client.get("/v1/alerts", params={"status": "failed"})).json()
        bad = await client.get("/v1/alerts", params={"status": "lost", "limit": 0})
    [alert] = failed
    assert alert["kind"] == "hot_lead" and alert["lead_id"] == str(event.lead_id)
    assert alert["last_error"] == "Slack answered 404: no_service"
    assert alert["title"] == "🔥 ホットリード: 株式会社サンプル製作所"
    assert bad.status_code == 422
    assert {tuple(error["loc"]) for error in bad.json()["detail"]} == {
        ("query", "status"), ("query", "limit")}


async def test_a_burst_to_one_webhook_waits_a_second_and_goes_out_as_one_digest(
        database: NotifierDatabase) -> None:
    async with FakeSlack().running() as slack:
        config = configure(slack.webhook_url)
        first = promoted()
        async with delivering(database, config):
            await handle(database, config, first)
            await slack.wait_for(1, timeout=10)
            burst = [promoted() for _ in range(5)]
            await handle(database, config, *burst)
            await wait_until(lambda: settled(database), 20, "the burst to be delivered")
        single, folded = slack.messages
        assert folded.arrived_at - single.arrived_at >= 1.0, "at most one message a second"
        assert lead_ids_in(single) == [str(first.lead_id)]
        assert sorted(lead_ids_in(folded)) == sorted(str(e.lead_id) for e in burst)
        assert folded.body["text"].startswith("📬 通知まとめ: 5件")
        assert [row.digest_size for row in await alert_rows(database)] == [1, 5, 5, 5, 5, 5]


class StrictSlack(FakeSlack):
    """Refuses, as Slack does, a message whose blocks repeat a block_id: 400 invalid_blocks."""

    async def _receive(self, request: Request) -> PlainTextResponse:
        block_ids = [block["block_id"] for block in json.loads(await request.body())["blocks"]
                     if "block_id" in block]
        if len(block_ids) != len(set(block_ids)):
            self.replies.insert(0, Reply(400, "invalid_blocks"))
        return await super()._receive(request)


async def test_a_digest_slack_refuses_is_sent_again_one_alert_at_a_time(
        database: NotifierDatabase) -> None:
    async with FakeSlack().running() as slack:
        # The digest is refused, then the first alert on its own: only that one is lost.
        slack.replies = [Reply(400, "invalid_blocks")] * 2
        config = configure(slack.webhook_url)
        events = [promoted() for _ in range(3)]
        await handle(database, config, *events)
        async with delivering(database, config):
            await wait_until(lambda: settled(database), 20, "every alert to be settled")
        folded, *alone = slack.messages
        assert sorted(lead_ids_in(folded)) == sorted(str(e.lead_id) for e in events)
        assert [lead_ids_in(message) for message in alone] == [[str(e.lead_id)]
                                                               for e in events]
        assert alone[0].arrived_at - folded.arrived_at >= 1.0, "the refusal keeps the pace"
        rows = await alert_rows(database)
        assert [(row.status, row.attempts, row.digest_size) for row in rows] == [
            ("failed", 2, None), ("delivered", 2, 1), ("delivered", 2, 1)]
        assert rows[0].last_error == "Slack answered 400: invalid_blocks"


async def test_a_digest_refused_for_its_destination_is_not_sent_again(
        database: NotifierDatabase) -> None:
    async with FakeSlack().running() as slack:
        slack.replies = [Reply(404, "no_service")]
        config = configure(slack.webhook_url)
        await handle(database, config, promoted(), promoted())
        async with delivering(database, config):
            await wait_until(lambda: settled(database), 20, "the alerts to fail")
        assert len(slack.messages) == 1
        assert [row.status for row in await alert_rows(database)] == ["failed", "failed"]


async def test_two_replicas_never_send_an_alert_twice(database: NotifierDatabase) -> None:
    async with FakeSlack().running() as slack:
        teams = {f"team{i}": {"slack_webhook_url": f"{slack.webhook_url}/{i}"} for i in range(4)}
        config = configure(slack.webhook_url, teams=teams)
        events = [promoted(team=f"team{i % 4}") for i in range(40)]
        await handle(database, config, *events)
        replica = create_engine(database.url)
        other = NotifierDatabase(database.url, replica, database.unit_of_work)
        try:
            async with delivering(database, config, slack_interval=timedelta(0)), \
                    delivering(other, config, slack_interval=timedelta(0)):
                await wait_until(lambda: settled(database), 30, "every alert to be delivered")
        finally:
            await replica.dispose()
        received = [lead for message in slack.messages for lead in lead_ids_in(message)]
        assert sorted(received) == sorted(str(event.lead_id) for event in events)


async def test_only_the_configured_host_is_called_and_redirects_are_not_followed(
        database: NotifierDatabase) -> None:
    async with FakeSlack().running() as configured, FakeSlack().running() as elsewhere:
        configured.replies = [Reply(307, "moved", {"Location": elsewhere.webhook_url})] * 3
        config = configure(configured.webhook_url)
        await handle(database, config, promoted())
        async with delivering(database, config, max_attempts=2):
            await wait_until(lambda: settled(database), 20, "the alert to fail")
        assert len(configured.messages) == 2 and elsewhere.messages == []
        [row] = await alert_rows(database)
        assert row.status == "failed" and "307" in row.last_error


class SlackWebApi(FakeSlack):
    """Slack's Web API for chat.postMessage: answers JSON ``{"ok": true}``."""

    def __init__(self) -> None:
        super().__init__()
        self.replies = [Reply(200, json.dumps({"ok": True}),
                              {"content-type": "application/json"})] * 10


async def test_a_bot_token_posts_to_its_channel_through_chat_post_message(
        database: NotifierDatabase) -> None:
    async with SlackWebApi().running() as slack:
        api_url = f"http://{LOOPBACK}:{slack.port}/api/chat.postMessage"
        config = configure(None)
        event = promoted()
        async with httpx.AsyncClient() as client:
            channel = SlackBotChannel(client, "xoxb-test-token", "#sdr-alerts",
                                      timedelta(seconds=1), api_url)
            await handle(database, config, event)
            [row] = await alert_rows(database)
            await channel.send(AlertMessage.from_json(row.message))
        [message] = slack.messages
        assert message.path == "/api/chat.postMessage"
        assert message.headers["authorization"] == "Bearer xoxb-test-token"
        assert message.body["channel"] == "#sdr-alerts"
        assert lead_ids_in(message) == [str(event.lead_id)]


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 OK"


InboxT = TypeVar("InboxT", bound=Inbox)


@contextlib.contextmanager
def smtp_server(inbox: InboxT) -> Iterator[tuple[InboxT, str]]:
    """Run a real SMTP server on the loopback address answering as ``inbox`` does; yield
    the inbox and the server's URL."""
    port = free_port()
    controller = Controller(inbox, hostname=LOOPBACK, port=port)
    controller.start()
    try:
        yield inbox, f"smtp://{LOOPBACK}:{port}"
    finally:
        controller.stop()


async def test_e_mail_arrives_with_its_japanese_subject_and_body_correctly_encoded(
        database: NotifierDatabase) -> None:
    with smtp_server(Inbox()) as (inbox, url):
        config = configure(None, smtp=True, email_to=("eigyo@example.co.jp",))
        event = promoted()
        await handle(database, config, event)
        async with delivering(database, config, smtp_url=url):
            await wait_until(lambda: settled(database), 20, "the e-mail to be sent")
    [envelope] = inbox.received
    assert envelope.rcpt_tos == ["eigyo@example.co.jp"]
    assert envelope.mail_from == "baton@example.co.jp"
    raw = envelope.original_content
    assert raw is not None and raw.isascii(), "8-bit-clean: encoded words and base64"
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["Subject"] == "🔥 ホットリード: 株式会社サンプル製作所"
    body = mail.get_content()
    for expected in ("山田 太郎", "製造部 部長", "デモ依頼 (+50)", str(event.lead_id)):
        assert expected in body


async def test_without_configuration_alerts_print_on_the_console(
        database: NotifierDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    config = configure(None)
    await handle(database, config, promoted())
    async with delivering(database, config):
        await wait_until(lambda: settled(database), 20, "the alert to be printed")
    assert "ALERT 🔥 ホットリード: 山田 太郎 / 株式会社サンプル製作所" in capsys.readouterr().out
