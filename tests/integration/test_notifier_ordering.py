"""SLA clocks whose starting and stopping events arrive on different topics, in any order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from baton_runtime.service import ServiceContext
from baton_runtime.uow import UnitOfWork
from schemas.events import DealPhase, DealPhaseChanged, LeadPromoted, LifecycleStage
from services.notifier import handlers, main, store
from services.notifier.domain import ClockKind
from tests.integration.test_notifier_delivery import (
    NotifierDatabase,
    alert_rows,
    handle,
    notifier_database,
    promoted,
)
from tests.integration.test_notifier_sla import (
    CONFIG,
    MANAGER,
    TEAM,
    clocks,
    handle_scored,
    jst,
    scored,
    sweep,
)
from tests.support.clock import ManualClock
from tests.support.infrastructure import PostgresServer
from tests.support.kafka import wait_until
from tests.support.locks import waiting_for_a_lock

pytestmark = pytest.mark.integration
S = LifecycleStage


@pytest.fixture
async def database(postgres: PostgresServer) -> AsyncIterator[NotifierDatabase]:
    async with notifier_database(postgres) as created:
        yield created


def sql(lead_id: uuid.UUID) -> LeadPromoted:
    """Return the lead's hand-over to field sales at 10:00 on Tuesday 24th (due 25th 10:00)."""
    return promoted(lead_id, at=jst(24, 10), from_stage=S.SAL, to_stage=S.SQL,
                    owner_id="fs-1", team="field_sales")


def deal_moved(lead_id: uuid.UUID, at: datetime) -> DealPhaseChanged:
    """Return a rep closing the lead's deal as lost at ``at``: the lead leaves sales, which
    ends the first-contact clock (a deal's edit or advance is no contact logged)."""
    return DealPhaseChanged(deal_id=uuid.uuid5(uuid.NAMESPACE_OID, str(lead_id)),
                            lead_id=lead_id, occurred_at=at, from_phase=DealPhase.P1,
                            to_phase=DealPhase.LOST, probability=0, owner_id="fs-1",
                            reason="予算凍結")


async def handle_deal(database: NotifierDatabase, event: DealPhaseChanged) -> None:
    """Run the deal.phase_changed handler on ``event`` in its own unit of work."""
    async with database.unit_of_work() as uow:
        await handlers.on_deal_phase_changed(event, uow, policy=CONFIG.policy)
        await uow.commit()


def first_contact(found: list[Any]) -> list[tuple[str, datetime | None, str | None]]:
    """Return (status, stopped_at, stop_reason) of each first-contact clock in ``found``."""
    return [(c.status, c.stopped_at, c.stop_reason) for c in found if c.kind == "first_contact"]


@pytest.mark.parametrize(("to_stage", "score_at"), [(S.LEAD, jst(24, 11)),
                                                    (S.SAL, jst(24, 11, 10))],
                         ids=["contact-logged-after-the-score", "accepted-before-the-score"])
async def test_a_score_handled_while_its_leads_lifecycle_event_commits_opens_no_clock(
        database: NotifierDatabase, to_stage: LifecycleStage, score_at: datetime) -> None:
    # A rep acts on the lead at 11:05 (a logged contact, or acceptance); a tier-B score
    # of 11:00 or 11:10, on the other topic, is handled by another lane meanwhile.
    lead_id = uuid.uuid4()
    acted = promoted(lead_id, at=jst(24, 11, 5), from_stage=S.LEAD if to_stage is S.LEAD
                     else S.MQL, to_stage=to_stage, owner_id="rep-9")
    async with database.unit_of_work() as acting:
        await handlers.on_leads_promoted([acted], acting, policy=CONFIG.policy)
        scoring = asyncio.create_task(handle_scored(database, scored(lead_id, score_at)))
        await wait_until(lambda: waiting_for_a_lock(database.engine), 10,
                         "the score to wait for the lifecycle event")
        await acting.commit()
    await scoring
    assert [c.kind for c in await clocks(database, lead_id)
            if c.status == "open"] == ["owner_activity"]
    # The contact came five minutes after the score: that clock is born met by it.
    assert [(c.status, c.stopped_at) for c in await clocks(database, lead_id)
            if c.kind == "first_touch"] == ([("met", jst(24, 11, 5))] if to_stage is S.LEAD
                                            else [])


async def test_a_deal_moved_before_its_sql_is_handled_stops_the_first_contact_clock(
        database: NotifierDatabase) -> None:
    # The notifier is behind on lead.promoted: the rep's first move of the deal pipeline
    # opened for the SQL is handled before the SQL itself.
    lead_id = uuid.uuid4()
    await handle_deal(database, deal_moved(lead_id, jst(24, 15)))
    await handle(database, CONFIG, sql(lead_id))
    assert first_contact(await clocks(database, lead_id)) == [
        ("met", jst(24, 15), f"deal {deal_moved(lead_id, jst(24, 15)).deal_id} -> lost")]
    await sweep(database, jst(27, 12))  # past the first contact's due time, twice over
    assert [row for row in await alert_rows(database) if row.kind.startswith("sla")] == []


async def test_a_late_first_contact_handled_before_its_sql_is_reported_as_a_breach_once(
        database: NotifierDatabase) -> None:
    lead_id = uuid.uuid4()
    await handle_deal(database, deal_moved(lead_id, jst(25, 11)))  # an hour after its due
    await handle(database, CONFIG, sql(lead_id), sql(lead_id))  # delivered twice
    await sweep(database, jst(27, 12))
    [(status, stopped_at, _)] = first_contact(await clocks(database, lead_id))
    assert (status, stopped_at) == ("breached", jst(25, 11))
    breaches = [row for row in await alert_rows(database) if row.kind.startswith("sla")]
    assert [(row.kind, row.channel) for row in breaches] == [("sla_breach", TEAM),
                                                             ("sla_breach", MANAGER)]
    assert "期限後に完了" in breaches[0].message["title"]


@pytest.mark.parametrize("first", ["sql", "deal"])
async def test_a_deal_moved_while_its_sql_is_handled_stops_the_first_contact_clock(
        database: NotifierDatabase, first: str) -> None:
    # Two lanes: one handles the SQL, the other the deal's first move, and neither has
    # committed when the other starts.
    lead_id = uuid.uuid4()
    moved = deal_moved(lead_id, jst(24, 15))

    async def handle_first(uow: UnitOfWork) -> None:
        if first == "sql":
            await handlers.on_leads_promoted([sql(lead_id)], uow, policy=CONFIG.policy)
        else:
            await handlers.on_deal_phase_changed(moved, uow, policy=CONFIG.policy)

    async def handle_second() -> None:
        if first == "sql":
            await handle_deal(database, moved)
        else:
            await handle(database, CONFIG, sql(lead_id))

    async with database.unit_of_work() as handling:
        await handle_first(handling)
        second = asyncio.create_task(handle_second())
        await wait_until(lambda: waiting_for_a_lock(database.engine), 10,
                         "the other lane to wait for the first")
        await handling.commit()
    await second
    assert [(status, stopped_at) for status, stopped_at, _ in
            first_contact(await clocks(database, lead_id))] == [("met", jst(24, 15))]
    assert [c.kind for c in await clocks(database, lead_id) if c.status == "open"] == [], \
        "the lost deal ends the owner's activity clock too"


async def test_stops_are_kept_only_as_long_as_a_start_can_still_arrive(
        database: NotifierDatabase) -> None:
    old, recent = uuid.uuid4(), uuid.uuid4()
    async with database.unit_of_work() as uow:
        await store.stop_clocks(uow.connection, [
            store.ClockStop(old, (ClockKind.FIRST_TOUCH,), jst(1, 10), "contact logged"),
            store.ClockStop(recent, (ClockKind.FIRST_TOUCH,), jst(20, 10), "contact logged")])
        await uow.commit()
    now = jst(1, 10) + main.STOPS_KEPT + timedelta(seconds=1)
    assert now < jst(20, 10) + main.STOPS_KEPT
    await main.forget_old_stops(ServiceContext("notifier", None, database.engine,
                                               database.unit_of_work, ManualClock(now)))
    async with database.engine.connect() as connection:
        kept = (await connection.execute(select(store.clock_stops.c.lead_id))).scalars().all()
    assert kept == [recent]
