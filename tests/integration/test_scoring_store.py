"""Scoring's store against real PostgreSQL: its migrations create exactly the tables
store.py describes, and a batch names the leads another transaction inserted meanwhile."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from baton import registry
from baton_runtime.db import create_engine
from baton_runtime.migrations import upgrade
from services.scoring import store
from tests.conftest import Infrastructure
from tests.support.kafka import lead_captured, wait_until
from tests.support.locks import waiting_for_a_lock

pytestmark = pytest.mark.integration


async def test_a_lead_another_transaction_inserts_meanwhile_is_named_and_found_on_retry(
    infrastructure: Infrastructure,
) -> None:
    await asyncio.to_thread(upgrade, registry.migrations_dir("scoring"),
                            infrastructure.database_url)
    engine = create_engine(infrastructure.database_url)
    event = lead_captured(f"meanwhile-{uuid.uuid4().hex[:8]}@example.co.jp")
    since = datetime.now(UTC) - timedelta(days=30)

    async def record(connection: AsyncConnection) -> dict[uuid.UUID, store.Recorded]:
        return await store.record_touchpoints(
            connection, [event], decision_makers={event.lead_id: False},
            engaged_since=since, read=(3, 2))

    try:
        async with engine.connect() as first, engine.connect() as second:
            await first.begin()
            await record(first)  # inserts the lead, not yet committed
            await second.begin()
            racing = asyncio.create_task(record(second))  # waits on the first's insert
            await wait_until(lambda: waiting_for_a_lock(engine), 30, "the second to wait")
            await first.commit()
            with pytest.raises(store.LeadsInsertedMeanwhile, match="1 lead"):
                await racing
            await second.rollback()
            async with second.begin():
                assert event.lead_id in await record(second), "the retry finds it known"
    finally:
        await engine.dispose()


