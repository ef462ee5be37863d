"""Scoring's migrations on a database holding data: a lead whose deal was recycled before
scoring stored it gets its placeholder, and downgrading leaves what the older code reads."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from baton import registry
from baton_runtime.db import create_engine
from baton_runtime.migrations import downgrade, upgrade
from services.scoring import store
from tests.support.infrastructure import PostgresServer
from tests.support.kafka import lead_captured

pytestmark = pytest.mark.integration
MIGRATIONS = registry.migrations_dir("scoring")
START = datetime(2026, 6, 1, tzinfo=UTC)


async def test_leads_of_deals_recycled_before_they_were_stored_get_placeholders_and_back(
        postgres: PostgresServer) -> None:
    database_url = await postgres.create_database()
    await asyncio.to_thread(upgrade, MIGRATIONS, database_url, "0002")
    waiting = lead_captured(f"waiting-{uuid.uuid4().hex[:8]}@example.co.jp")
    stored, lost = uuid.uuid4(), uuid.uuid4()
    add_deal = text("INSERT INTO scoring.deals (deal_id, lead_id, phase, outcome, opened_at, "
                    "closed_at, changed_at) VALUES (:deal, :lead, 'P1', :outcome, :at, :at, :at)")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            for lead, outcome, day in ((waiting.lead_id, "recycled", 1),
                                       (waiting.lead_id, "recycled", 3),
                                       (stored, "recycled", 4), (lost, "lost", 5)):
                await connection.execute(add_deal, {"deal": uuid.uuid4(), "lead": lead,
                                                    "outcome": outcome,
                                                    "at": START + timedelta(days=day)})
            # Stored and scored when its deal was recycled: the older code reset it then.
            await connection.execute(text(
                "INSERT INTO scoring.leads (lead_id, profile, account, source, baseline_at, "
                "score, tier) VALUES (:lead, '{}', '{}', 'web-form', :at, 30, 'C')"),
                {"lead": stored, "at": START + timedelta(days=4)})

        async def leads() -> dict[uuid.UUID, tuple[datetime | None, int | None]]:
            async with engine.connect() as connection:
                return {row.lead_id: (row.baseline_at, row.score)
                        for row in await connection.execute(text(
                            "SELECT lead_id, baseline_at, score FROM scoring.leads"))}

        await engine.dispose()
        await asyncio.to_thread(upgrade, MIGRATIONS, database_url)
        assert await leads() == {waiting.lead_id: (START + timedelta(days=3), None),
                                 stored: (START + timedelta(days=4), 30)}

        await engine.dispose()
        await asyncio.to_thread(downgrade, MIGRATIONS, database_url, "0002")
        assert await leads() == {stored: (START + timedelta(days=4), 30)}, (
            "the older code stores no unscored lead")

        await engine.dispose()
        await asyncio.to_thread(upgrade, MIGRATIONS, database_url)
        async with engine.begin() as connection:
            recorded = await store.record_touchpoints(
                connection, [waiting], decision_makers={waiting.lead_id: False},
                engaged_since=START, read=(3, 2))
        assert recorded[waiting.lead_id].state.baseline_at == START + timedelta(days=3)
    finally:
        await engine.dispose()
