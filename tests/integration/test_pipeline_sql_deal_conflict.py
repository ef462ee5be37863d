"""An SQL whose deal cannot be opened, over real PostgreSQL and a real broker.

on_lead_promoted opens an SQL's deal unless the lead has an open one; when the open deal it
met closes before its lock is taken, it tries again, ``OPEN_DEAL_ATTEMPTS`` times in all,
then raises DealConflict so that the consumer retries the event and dead-letters it.

Reaching that takes a deal of the lead opening before each attempt and closing under it.
Here a rep's session does it with pipeline's own code: it opens the lead's deal by hand
(``handlers.create_deal``), holds it as a change does (``store.get_deal`` locked) until the
hand-off waits for that lock, then loses it (``handlers.change_deal`` with ``domain.lose``).
The one thing the test adds to the database is a gate: a trigger on the lead's deal inserts
that waits for an advisory lock the rep's session holds while it opens the next deal, so
each attempt meets a deal opened before it rather than racing the rep (row locks alone
cannot order that: the hand-off's next insert follows the rep's commit of the loss at
once). Every wait is for what PostgreSQL says blocks whom, or for a committed row.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_runtime.dead_letters import DeadLetter
from baton_runtime.uow import UnitOfWork
from schemas.envelope import decode, encode
from schemas.events import DealPhaseChanged, LeadPromoted, dead_letter_topic
from services.pipeline import domain, handlers, store
from tests.conftest import Infrastructure
from tests.integration.test_pipeline_service import Pipeline, handle, promoted, running
from tests.support.kafka import produce, read_all, wait_until

pytestmark = pytest.mark.integration
GATE_KEY = 7_204_001  # the advisory lock that holds the hand-off's inserts of the lead's deal
ROW_LOCK_WAITS = frozenset({"transactionid", "tuple"})  # waiting for another's row lock


@dataclass
class Rep:
    """A rep's database session that opens the lead's deal by hand and loses it under each
    attempt of the hand-off to open the SQL's deal."""

    pipeline: Pipeline
    connection: AsyncConnection  # in autocommit mode, as units of work want theirs
    pid: int
    lead_id: uuid.UUID
    lost: list[uuid.UUID] = field(default_factory=list)

    def unit_of_work(self) -> UnitOfWork:
        """Return a unit of work on this session, as the API's routes use theirs."""
        definition = self.pipeline.definition
        return UnitOfWork(self.connection, definition.tables, definition.source)

    async def gate(self, function: str) -> None:
        """Close (pg_advisory_lock) or open (pg_advisory_unlock) the gate."""
        await self.connection.execute(text(f"SELECT {function}({GATE_KEY})"))

    async def held_up(self) -> set[str]:
        """Return the kinds of lock that sessions waiting for this one wait for."""
        async with self.pipeline.engine.connect() as connection:
            rows = await connection.execute(text(
                "SELECT locktype FROM pg_locks "
                "WHERE NOT granted AND :pid = ANY(pg_blocking_pids(pid))"), {"pid": self.pid})
            return {row.locktype for row in rows}

    async def hand_off_at_the_gate(self) -> bool:
        """Return True while the hand-off waits at the gate to insert the lead's deal."""
        return "advisory" in await self.held_up()

    async def hand_off_waits_for_the_deal(self) -> bool:
        """Return True while the hand-off waits for this session's lock on the deal."""
        return bool(ROW_LOCK_WAITS & await self.held_up())

    async def open_and_lose_a_deal(self) -> None:
        """With the hand-off at the gate: open the lead's deal, let the hand-off meet it,
        and lose it once the hand-off waits for it (the gate closed again first)."""
        now = self.pipeline.clock()
        opened = domain.open_deal(deal_id=uuid.uuid4(), lead_id=self.lead_id,
                                  owner_id="field-suzuki", team="field-east", company=None,
                                  now=now, reason="opened by hand")
        rules = self.pipeline.settings.rules()
        async with self.unit_of_work() as uow:
            await handlers.create_deal(uow, opened, actor="field-suzuki",
                                       probabilities=rules.probabilities)
            await uow.commit()
        deal_id = opened.deal.deal_id
        async with self.unit_of_work() as uow:
            assert await store.get_deal(uow.connection, deal_id, lock=True) is not None
            await self.gate("pg_advisory_unlock")
            await wait_until(self.hand_off_waits_for_the_deal, 30,
                             "the hand-off to wait for the rep's lock on the deal it met")
            await self.gate("pg_advisory_lock")  # its next attempt waits at the gate
            await handlers.change_deal(uow, deal_id, now, lambda deal: domain.lose(
                deal, now, "no_budget", rules.lost_reasons), actor="field-suzuki",
                probabilities=rules.probabilities)
            await uow.commit()
        self.lost.append(deal_id)

    async def lose_deals_until(self, done: Callable[[], Awaitable[bool]]) -> None:
        """Lose a deal under each attempt the hand-off makes, until ``done``."""
        while True:
            async def next_attempt_or_done() -> bool:
                return await done() or await self.hand_off_at_the_gate()

            await wait_until(next_attempt_or_done, 60, "the hand-off's next attempt, or its end")
            if await done():
                return
            await self.open_and_lose_a_deal()


@contextlib.asynccontextmanager
async def rep_churning(pipeline: Pipeline, lead_id: uuid.UUID) -> AsyncIterator[Rep]:
    """Gate the lead's deal inserts, closed, and give the rep's session that holds the gate."""
    async with pipeline.engine.begin() as connection:
        await connection.execute(text(
            "CREATE FUNCTION pipeline.test_deal_insert_gate() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"PERFORM pg_advisory_lock({GATE_KEY}); PERFORM pg_advisory_unlock({GATE_KEY}); "
            "RETURN NEW; END $$"))
        # Only the lead's deals: any other lead's SQL opens its deal as ever. The rep's own
        # inserts pass too (a session's advisory locks never hold up the session itself).
        await connection.execute(text(
            "CREATE TRIGGER test_deal_insert_gate BEFORE INSERT ON pipeline.deals "
            f"FOR EACH ROW WHEN (NEW.lead_id = '{lead_id}'::uuid) "
            "EXECUTE FUNCTION pipeline.test_deal_insert_gate()"))
    autocommit = pipeline.engine.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as connection:
        pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        rep = Rep(pipeline, connection, pid, lead_id)
        await rep.gate("pg_advisory_lock")
        yield rep


async def phase_changes_of(pipeline: Pipeline, lead_id: uuid.UUID) -> list[DealPhaseChanged]:
    """Return the lead's deal.phase_changed events on the broker, once all are published."""
    await wait_until(pipeline.outbox_empty, 30, "the relay to publish")
    return [e for e in await pipeline.events(DealPhaseChanged) if e.lead_id == lead_id]


async def test_an_sql_whose_open_deal_closes_under_each_attempt_raises_after_three(
    infrastructure: Infrastructure,
) -> None:
    lead_id = uuid.uuid4()
    async with running(infrastructure, consume=False) as pipeline, \
            rep_churning(pipeline, lead_id) as rep:
        hand_off = asyncio.create_task(handle(pipeline, promoted(lead_id)))

        async def handed_off() -> bool:
            return hand_off.done()

        await rep.lose_deals_until(handed_off)
        with pytest.raises(domain.DealConflict, match="each of 3 attempts"):
            await hand_off
        deals = await store.deals_of_lead(rep.connection, lead_id)
        events = await phase_changes_of(pipeline, lead_id)

    assert handlers.OPEN_DEAL_ATTEMPTS == 3, "the number the handler documents"
    assert len(rep.lost) == handlers.OPEN_DEAL_ATTEMPTS, "one deal lost under each attempt"
    assert sorted(d.deal_id for d in deals) == sorted(rep.lost), "the hand-off opened none"
    assert all(not d.is_open and d.outcome is domain.Outcome.LOST for d in deals)
    assert [e.reason for e in events] == ["opened by hand", "no_budget"] * 3, (
        "the hand-off announced nothing")


async def test_an_sql_whose_deal_cannot_be_opened_is_retried_then_dead_lettered(
    infrastructure: Infrastructure,
) -> None:
    doomed, next_lead = uuid.uuid4(), uuid.uuid4()
    event, event_id = promoted(doomed), str(uuid.uuid4())
    record = encode(event, source="/tests", event_id=event_id)
    async with running(infrastructure) as pipeline, rep_churning(pipeline, doomed) as rep:
        group = pipeline.definition.consumer_group
        inbox = store.plumbing.inbox

        async def consumed() -> bool:
            async with pipeline.engine.connect() as connection:
                claimed = await connection.execute(select(inbox.c.event_id).where(
                    inbox.c.consumer_group == group, inbox.c.event_id == event_id))
                return claimed.first() is not None

        # One partition: the SQL after it waits for the doomed one, then gets its deal.
        await produce(infrastructure.bootstrap_servers, [record, promoted(next_lead)],
                      partition=0)
        await rep.lose_deals_until(consumed)

        async def next_lead_has_its_deal() -> bool:
            return bool(await store.deals_of_lead(rep.connection, next_lead))

        await wait_until(next_lead_has_its_deal, 30, "the next SQL's deal")
        deals = await store.deals_of_lead(rep.connection, doomed)
        events = await phase_changes_of(pipeline, doomed)
        dead = await read_all(infrastructure.bootstrap_servers,
                              dead_letter_topic(LeadPromoted.topic))

    # Each run of the handler lost one deal per attempt, and it ran more than once.
    runs, rest = divmod(len(rep.lost), handlers.OPEN_DEAL_ATTEMPTS)
    assert rest == 0 and runs >= 2, f"{len(rep.lost)} deals lost under the hand-off"
    assert sorted(d.deal_id for d in deals) == sorted(rep.lost), "the hand-off opened none"
    assert all(not d.is_open for d in deals)
    assert {e.reason for e in events} == {"opened by hand", "no_budget"}
    [letter] = [DeadLetter.from_record(r) for r in dead]
    assert (letter.consumer_group, letter.event_id, letter.error_type, letter.attempts) == (
        group, event_id, "DealConflict", 2)
    assert "each of 3 attempts" in letter.error
    original = letter.original
    assert decode(original.topic, original.key, original.headers, original.value).event == event
