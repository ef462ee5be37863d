"""Delivery failures that must neither lose an alert nor break a destination's pace."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.integration.test_notifier_delivery import (
    Inbox,
    NotifierDatabase,
    alert_rows,
    configure,
    delivering,
    handle,
    lead_ids_in,
    notifier_database,
    promoted,
    settled,
    smtp_server,
)
from tests.support.fake_slack import FakeSlack, Reply
from tests.support.infrastructure import PostgresServer
from tests.support.kafka import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def database(postgres: PostgresServer) -> AsyncIterator[NotifierDatabase]:
    async with notifier_database(postgres) as created:
        yield created


class GreylistingInbox(Inbox):
    """Refuses each recipient once with 451, as a greylisting mail server does, then accepts."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address not in self.refused:
            self.refused.append(address)
            return "451 4.7.1 Greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def test_a_recipient_refused_for_now_is_mailed_again_not_given_up(
        database: NotifierDatabase) -> None:
    # 4xx to RCPT (greylisting, a full mailbox) means "try later"; only 5xx is final.
    with smtp_server(GreylistingInbox()) as (inbox, url):
        config = configure(None, smtp=True, email_to=("eigyo@example.co.jp",))
        event = promoted()
        await handle(database, config, event)
        async with delivering(database, config, smtp_url=url):
            await wait_until(lambda: settled(database), 20, "the e-mail to be settled")
    assert inbox.refused == ["eigyo@example.co.jp"]
    [row] = await alert_rows(database)
    assert (row.status, row.attempts) == ("delivered", 2)
    [envelope] = inbox.received
    assert envelope.rcpt_tos == ["eigyo@example.co.jp"]


async def test_being_rate_limited_first_leaves_every_attempt_for_real_failures(
        database: NotifierDatabase) -> None:
    async with FakeSlack().running() as slack:
        slack.replies = [Reply(429, "rate_limited", {"Retry-After": "1"}),
                         Reply(500, "internal_error")]
        config = configure(slack.webhook_url)
        event = promoted()
        await handle(database, config, event)
        async with delivering(database, config, max_attempts=2):
            await wait_until(lambda: settled(database), 20, "the alert to be settled")
        [row] = await alert_rows(database)
        assert row.status == "delivered", (
            "the 429 asked for a wait; only the 500 was a failed attempt of two")
        assert [lead_ids_in(message) for message in slack.messages] == [
            [str(event.lead_id)]] * 3


@pytest.mark.parametrize("reply", [Reply(500, "internal_error"), Reply(429, "rate_limited")])
async def test_a_failed_send_still_keeps_the_destination_s_pace(
        database: NotifierDatabase, reply: Reply) -> None:
    # A request Slack answered is a request against its limit, even a refused one;
    # a 429 without Retry-After says the same louder.
    async with FakeSlack().running() as slack:
        slack.replies = [reply]
        config = configure(slack.webhook_url)
        first, second = promoted(), promoted()
        async with delivering(database, config):
            await handle(database, config, first)
            await slack.wait_for(1, timeout=10)
            await handle(database, config, second)
            await wait_until(lambda: settled(database), 20, "both alerts to be delivered")
        failed, *later = slack.messages
        assert lead_ids_in(failed) == [str(first.lead_id)]
        assert all(message.arrived_at - failed.arrived_at >= 1.0 for message in later), (
            "at most one message a second to a webhook")
        assert sorted(lead for message in later for lead in lead_ids_in(message)) == sorted(
            [str(first.lead_id), str(second.lead_id)])
