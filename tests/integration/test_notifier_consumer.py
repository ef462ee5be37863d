"""The notifier as main.py wires it, fed by a real broker: an event delivered twice posts once."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from baton import registry
from baton_runtime.clock import system_clock
from baton_runtime.consumer import RetryPolicy
from baton_runtime.db import create_engine
from baton_runtime.kafka import build_consumer, ensure_topics
from baton_runtime.migrations import upgrade
from baton_runtime.service import ServiceContext
from baton_runtime.uow import unit_of_work_factory
from schemas.envelope import encode
from schemas.events import LeadPromoted
from services.notifier import main, store
from services.notifier.settings import NotifierSettings
from tests.conftest import Infrastructure
from tests.integration.test_notifier_delivery import (
    NotifierDatabase,
    lead_ids_in,
    promoted,
    settled,
)
from tests.support.fake_slack import FakeSlack
from tests.support.kafka import committed_offsets, produce, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_a_hot_lead_alert_arrives_once_when_its_event_is_delivered_twice(
        infrastructure: Infrastructure) -> None:
    await asyncio.to_thread(upgrade, registry.migrations_dir("notifier"),
                            infrastructure.database_url)
    async with FakeSlack().running() as slack:
        settings = infrastructure.settings(NotifierSettings,
                                           slack_webhook_url=slack.webhook_url)
        await ensure_topics(settings)
        definition = main.definition(settings)
        engine = create_engine(infrastructure.database_url)
        unit_of_work = unit_of_work_factory(engine, definition.tables, definition.source)
        context = ServiceContext("notifier", settings, engine, unit_of_work, system_clock)
        loop = definition.consumer_loop(
            build_consumer(settings, definition.consumer_group, "notifier"), unit_of_work,
            retry=RetryPolicy(3, 0.01), batch_size=100)
        event = promoted()
        record = encode(event, source="/baton/routing")
        re_emitted = encode(event, source="/baton/routing")  # the same event under a new id
        await produce(infrastructure.bootstrap_servers, [record, record, re_emitted])

        stop = asyncio.Event()
        tasks = [asyncio.create_task(loop.run(stop)),
                 *(asyncio.create_task(worker(context, stop))
                   for worker in definition.workers)]
        try:
            async def consumed_all() -> bool:
                return await committed_offsets(infrastructure.bootstrap_servers,
                                               definition.consumer_group,
                                               LeadPromoted.topic) == 3

            await wait_until(consumed_all, 60, "the notifier to consume all three records")
            database = NotifierDatabase(infrastructure.database_url, engine, unit_of_work)
            await wait_until(lambda: settled(database), 20, "the alert to be delivered")
            async with engine.connect() as connection:
                inbox = await connection.scalar(
                    select(func.count()).select_from(store.plumbing.inbox))
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await engine.dispose()
        [message] = slack.messages
        assert lead_ids_in(message) == [str(event.lead_id)]
        assert inbox == 2, "the repeated record was recognised by the inbox"

