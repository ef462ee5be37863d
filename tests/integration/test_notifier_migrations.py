"""Notifier's migrations on a database holding data: down to a version the older code reads."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from baton import registry
from baton_runtime.migrations import downgrade, upgrade
from schemas.events import LifecycleStage
from tests.integration.test_notifier_delivery import (
    NotifierDatabase,
    handle,
    notifier_database,
    promoted,
)
from tests.integration.test_notifier_first_meeting import appointment, handle_scored
from tests.integration.test_notifier_sla import CONFIG, jst, scored
from tests.support.infrastructure import PostgresServer

pytestmark = pytest.mark.integration
MIGRATIONS = registry.migrations_dir("notifier")
S = LifecycleStage
# The clock kinds the notifier knew before migration 0006 (its ClockKind then).
KINDS_BEFORE_0006 = {"mql_acceptance", "first_touch", "first_contact", "owner_activity"}


@pytest.fixture
async def database(postgres: PostgresServer) -> AsyncIterator[NotifierDatabase]:
    async with notifier_database(postgres) as created:
        yield created


async def test_downgrading_below_0006_leaves_only_clocks_and_stops_the_older_code_knows(
        database: NotifierDatabase) -> None:
    # A first meeting's clock open, another ended by its lead leaving sales (a cancel
    # kept), and a first-touch clock. The code before 0006 has no first_meeting kind: its
    # timer sweep fails on such a clock (and with it every rung of its batch), and its
    # clock list answers 500.
    waiting, left, rising = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await handle_scored(database, appointment(waiting), appointment(left),
                        scored(rising, jst(16, 10)))
    await handle(database, CONFIG, promoted(left, at=jst(18, 10), from_stage=S.SAL,
                                            to_stage=S.NURTURE, owner_id="rep-1"))
    await database.engine.dispose()
    await asyncio.to_thread(downgrade, MIGRATIONS, database.url, "0005")
    async with database.engine.connect() as connection:
        clock_kinds = set(await connection.scalars(text(
            "SELECT DISTINCT kind FROM notifier.sla_clocks")))
        stop_kinds = set(await connection.scalars(text(
            "SELECT DISTINCT kind FROM notifier.clock_stops")))
    assert clock_kinds == {"first_touch"}
    assert stop_kinds <= KINDS_BEFORE_0006
    await database.engine.dispose()
    await asyncio.to_thread(upgrade, MIGRATIONS, database.url)


async def test_downgrading_below_0008_keeps_every_clock_and_upgrading_marks_moved_ones(
        database: NotifierDatabase) -> None:
    # A meeting moved before it (its clock superseded), and a no-show set again after its
    # record fell due (its clock breached, replaced). The older code reads both without the
    # column; upgrading again marks the superseded one replaced, as that code recorded it.
    moved, no_show = uuid.uuid4(), uuid.uuid4()
    await handle_scored(database, appointment(moved), appointment(no_show))
    await handle_scored(database, appointment(moved, jst(26, 15), at=jst(18, 10)),
                        appointment(no_show, jst(30, 15), at=jst(26, 10)))
    query = text("SELECT lead_id, started_at, status FROM notifier.sla_clocks ORDER BY id")
    async with database.engine.connect() as connection:
        before = list(await connection.execute(query))
    await database.engine.dispose()
    await asyncio.to_thread(downgrade, MIGRATIONS, database.url, "0007")
    async with database.engine.connect() as connection:
        assert list(await connection.execute(query)) == before
    await database.engine.dispose()
    await asyncio.to_thread(upgrade, MIGRATIONS, database.url)
    async with database.engine.connect() as connection:
        marked = list(await connection.execute(text(
            "SELECT lead_id, status FROM notifier.sla_clocks WHERE replaced")))
    assert marked == [(moved, "superseded")]
