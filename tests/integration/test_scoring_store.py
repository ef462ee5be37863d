"""Scoring's store against real PostgreSQL: its migrations create exactly the tables
store.py describes, a batch names the leads another transaction inserted meanwhile, and a
lead stored after its deals were recycled starts from the latest recycling."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from baton import registry
from baton_runtime.db import create_engine
from baton_runtime.migrations import upgrade
from services.scoring import store
from services.scoring.domain import DealOutcome
from tests.conftest import Infrastructure
from tests.support.kafka import lead_captured, wait_until
from tests.support.locks import waiting_for_a_lock

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(infrastructure: Infrastructure) -> AsyncIterator[AsyncEngine]:
    """Yield an engine on the test database, scoring's migrations applied."""
    await asyncio.to_thread(upgrade, registry.migrations_dir("scoring"),
                            infrastructure.database_url)
    created = create_engine(infrastructure.database_url)
    yield created
    await created.dispose()


async def test_a_lead_another_transaction_inserts_meanwhile_is_named_and_found_on_retry(
    engine: AsyncEngine,
) -> None:
    event = lead_captured(f"meanwhile-{uuid.uuid4().hex[:8]}@example.co.jp")
    since = datetime.now(UTC) - timedelta(days=30)

    async def record(connection: AsyncConnection) -> dict[uuid.UUID, store.Recorded]:
        return await store.record_touchpoints(
            connection, [event], decision_makers={event.lead_id: False},
            engaged_since=since, read=(3, 2))

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


@pytest.mark.parametrize("placeholder", [True, False])
async def test_a_lead_stored_after_its_deals_were_recycled_starts_from_the_latest_recycling(
    engine: AsyncEngine, placeholder: bool,
) -> None:
    # The recycling handler resets the lead as it records the deal, storing a placeholder
    # for a lead not stored yet; a deal recycled without one (by the version before, still
    # running during a rolling upgrade, or before it) counts too.
    recycled, untouched = (lead_captured(f"{name}-{uuid.uuid4().hex[:8]}@example.co.jp")
                           for name in ("recycled", "untouched"))
    start = datetime(2026, 6, 1, tzinfo=UTC)
    # Only a recycled deal resets behaviour: a deal lost or still open later does not, nor
    # another lead's recycled deal.
    lead_id = recycled.lead_id
    deals = [(lead_id, DealOutcome.RECYCLED, 1), (lead_id, DealOutcome.RECYCLED, 3),
             (lead_id, DealOutcome.RECYCLED, 2), (lead_id, DealOutcome.LOST, 5),
             (lead_id, DealOutcome.OPEN, 6), (uuid.uuid4(), DealOutcome.RECYCLED, 9)]
    async with engine.connect() as connection, connection.begin():
        for deal_lead, deal_outcome, day in deals:
            await store.record_deal(connection, deal_id=uuid.uuid4(), lead_id=deal_lead,
                                    phase="P1", outcome=deal_outcome,
                                    at=start + timedelta(days=day))
            if placeholder and deal_outcome is DealOutcome.RECYCLED:
                await store.reset_baseline(connection, deal_lead, start + timedelta(days=day))
        before = await store.lead(connection, recycled.lead_id)
        recorded = await store.record_touchpoints(
            connection, [recycled, untouched],
            decision_makers={recycled.lead_id: False, untouched.lead_id: False},
            engaged_since=start, read=(3, 2))
        stored = await store.lead(connection, recycled.lead_id)
    if placeholder:
        assert before is not None and before.score is None, "not scored until captured"
    assert recorded[recycled.lead_id].state.baseline_at == start + timedelta(days=3)
    assert stored is not None and stored.baseline_at == start + timedelta(days=3)
    assert recorded[untouched.lead_id].state.baseline_at is None


@pytest.mark.parametrize("first_handled", ["capture", "recycling"])
async def test_a_recycling_and_the_lead_s_first_capture_at_the_same_moment_keep_the_reset(
    engine: AsyncEngine, first_handled: str,
) -> None:
    # Two lanes (or replicas) handle the lead's first capture and its deal's recycling in
    # overlapping transactions: neither sees the other's uncommitted rows, so without a
    # row both lock, the recycling found no lead to reset and the capture no recycled
    # deal, and the lead kept counting the behaviour the recycling had reset.
    event = lead_captured(f"overlap-{uuid.uuid4().hex[:8]}@example.co.jp")
    recycled_at = datetime(2026, 6, 1, tzinfo=UTC)

    async def capture(connection: AsyncConnection) -> dict[uuid.UUID, store.Recorded]:
        return await store.record_touchpoints(
            connection, [event], decision_makers={event.lead_id: False},
            engaged_since=recycled_at, read=(3, 2))

    async def recycle(connection: AsyncConnection) -> None:
        await store.record_deal(connection, deal_id=uuid.uuid4(), lead_id=event.lead_id,
                                phase="P1", outcome=DealOutcome.RECYCLED, at=recycled_at)
        await store.reset_baseline(connection, event.lead_id, recycled_at)

    async def blocked_or_done(task: asyncio.Task[object]) -> bool:
        return task.done() or await waiting_for_a_lock(engine)

    async with engine.connect() as capturing, engine.connect() as recycling:
        first, second = ((capturing, recycling) if first_handled == "capture"
                         else (recycling, capturing))
        await first.begin()
        await (capture if first is capturing else recycle)(first)
        await second.begin()
        overlapping = asyncio.create_task(
            (capture if second is capturing else recycle)(second))
        await wait_until(lambda: blocked_or_done(overlapping), 30,
                         "the second transaction to finish or wait for the first")
        await first.commit()
        try:
            await overlapping
        except store.LeadsInsertedMeanwhile:  # the consumer loop retries the batch
            await capturing.rollback()
            async with capturing.begin():
                await capture(capturing)
        if second.in_transaction():
            await second.commit()
        async with capturing.begin():
            stored = await store.lead(capturing, event.lead_id)
    assert stored is not None and stored.baseline_at == recycled_at
