"""Routing's queue pass: leads nobody could take go to reps as they become available."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from schemas.events import LeadScored, LifecycleStage
from services.routing import handlers, store
from services.routing.main import QUEUE_PASS_LIMIT
from tests.integration.test_routing_harness import Routing, lead_scored, running_routing
from tests.support.infrastructure import PostgresServer
from tests.support.kafka import wait_until
from tests.support.locks import waiting_for_a_lock

pytestmark = pytest.mark.integration
S = LifecycleStage
JST = ZoneInfo("Asia/Tokyo")
WEDNESDAY_EVENING = datetime(2026, 11, 18, 20, 0, tzinfo=JST)
THURSDAY_MORNING = datetime(2026, 11, 19, 9, 5, tzinfo=JST)


@pytest.fixture
async def routing(postgres: PostgresServer) -> AsyncIterator[Routing]:
    async with running_routing(await postgres.create_database()) as service:
        yield service


async def queue_pass(routing: Routing, limit: int = QUEUE_PASS_LIMIT) -> int:
    """Run one pass over every team's queue at the routing clock's time."""
    return await handlers.assign_all_queued(
        routing.context.unit_of_work, routing.clock,
        routing.context.settings.business_calendar(), limit)


async def lead(routing: Routing, lead_id: uuid.UUID) -> dict[str, Any]:
    response = await routing.client.get(f"/v1/leads/{lead_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def queued_overnight(routing: Routing) -> LeadScored:
    """Return a hot lead scored on Wednesday evening, queued with sato gone home, and set the
    clock to Thursday morning, sato's day begun."""
    routing.clock.now = WEDNESDAY_EVENING
    await routing.put_rep("sato")
    hot = lead_scored()
    await routing.handle(hot)
    routing.clock.now = THURSDAY_MORNING
    return hot


async def test_a_lead_queued_at_night_goes_to_a_rep_when_their_day_starts(
        routing: Routing) -> None:
    await routing.put_rep("sato", name="佐藤 花子")
    routing.clock.now = WEDNESDAY_EVENING  # sato works 09:00-18:00
    hot = lead_scored()
    await routing.handle(hot)
    assert (await lead(routing, hot.lead_id))["owner_id"] is None

    routing.clock.now = WEDNESDAY_EVENING.replace(hour=23)
    assert await queue_pass(routing) == 0
    night = await lead(routing, hot.lead_id)
    assert [a["rule"] for a in night["assignments"]] == ["queued"], "no decision logged a pass"
    assert len(await routing.promoted()) == 1

    routing.clock.now = THURSDAY_MORNING
    assert await queue_pass(routing) == 1
    morning = await lead(routing, hot.lead_id)
    assert (morning["stage"], morning["owner_id"]) == ("mql", "sato")
    assert [a["rule"] for a in morning["assignments"]] == ["queued", "round_robin"]
    _, given = await routing.promoted()
    assert (given.from_stage, given.to_stage, given.owner_id, given.owner_name, given.team) == (
        S.MQL, S.MQL, "sato", "佐藤 花子", "sdr")
    assert given.reason.startswith("assigned from the queue: ")
    assert given.occurred_at == THURSDAY_MORNING
    assert (await routing.client.get("/v1/teams/sdr/queue")).json() == []
    assert await queue_pass(routing) == 0, "given once"


async def test_a_queued_sql_goes_to_a_field_rep_who_joins_the_team(routing: Routing) -> None:
    await routing.put_rep("sato")
    hot = lead_scored()
    await routing.handle(hot)
    for action, body in (("accept", {}), ("qualify", {"budget": True, "authority": True,
                                                      "need": True, "timeframe": True})):
        response = await routing.client.post(f"/v1/leads/{hot.lead_id}/{action}",
                                             json={"rep_id": "sato", **body})
        assert response.status_code == 200, response.text
    assert await queue_pass(routing) == 0, "field sales has nobody yet"

    await routing.put_rep("tanaka", team="field_sales", name="田中 一郎")
    assert await queue_pass(routing) == 1
    assert ((await lead(routing, hot.lead_id))["owner_id"]) == "tanaka"
    given = (await routing.promoted())[-1]
    assert (given.from_stage, given.to_stage, given.owner_id, given.owner_name) == (
        S.SQL, S.SQL, "tanaka", "田中 一郎")


async def test_a_queued_lead_another_transaction_holds_waits_for_the_next_pass(
        routing: Routing) -> None:
    hot = await queued_overnight(routing)
    async with routing.engine.connect() as holder, holder.begin():
        # As the consumer holds a lead it is scoring: the pass must neither wait nor take it.
        await holder.execute(select(store.leads.c.lead_id)
                             .where(store.leads.c.lead_id == hot.lead_id).with_for_update())
        assert await queue_pass(routing) == 0
    assert await queue_pass(routing) == 1
    assert (await lead(routing, hot.lead_id))["owner_id"] == "sato"


async def test_the_service_runs_the_pass_by_itself(postgres: PostgresServer) -> None:
    async with running_routing(await postgres.create_database(),
                               routing_queue_interval_seconds=0.05) as routing:
        hot = await queued_overnight(routing)
        stop = asyncio.Event()
        workers = [asyncio.create_task(worker(routing.context, stop))
                   for worker in routing.definition.workers]
        try:
            async def given() -> bool:
                return bool((await lead(routing, hot.lead_id))["owner_id"] == "sato")

            await wait_until(given, 10, "the service's own pass to give the queued lead")
        finally:
            stop.set()
            await asyncio.gather(*workers)


async def test_a_pass_waits_for_a_team_being_assigned_without_holding_its_leads(
        routing: Routing) -> None:
    hot = await queued_overnight(routing)
    async with routing.engine.connect() as consumer, consumer.begin():
        # As the consumer between two runs of a batch: the team held for the first run's
        # assignment, the second run's leads (the queued one among them) still to lock.
        await consumer.execute(select(store.teams.c.team)
                               .where(store.teams.c.team == "sdr").with_for_update())
        passing = asyncio.create_task(queue_pass(routing))

        async def pass_waits() -> bool:
            return passing.done() or await waiting_for_a_lock(routing.engine)

        await wait_until(pass_waits, 10, "the pass to wait for the team")
        await consumer.execute(select(store.leads.c.lead_id)
                               .where(store.leads.c.lead_id == hot.lead_id).with_for_update())
    assert await passing == 1
    assert (await lead(routing, hot.lead_id))["owner_id"] == "sato"


async def test_at_night_an_account_owner_back_from_leave_is_given_their_accounts_lead(
        routing: Routing) -> None:
    await routing.put_rep("sato")
    await routing.put_rep("suzuki")
    await routing.handle(lead_scored())  # sample.co.jp: sato's account from now on
    leave = {"starts_at": "2026-11-18T12:00:00+09:00", "ends_at": "2026-11-19T00:00:00+09:00",
             "note": "半休"}
    await routing.put_rep("sato", out_of_office=[leave])
    routing.clock.now = WEDNESDAY_EVENING  # sato away, suzuki's day over: both queued
    account_lead, other_lead = lead_scored(), lead_scored(domain="other.co.jp")
    await routing.handle(other_lead)
    routing.clock.now = WEDNESDAY_EVENING.replace(minute=1)
    await routing.handle(account_lead)

    routing.clock.now = datetime(2026, 11, 19, 1, 0, tzinfo=JST)  # back; nobody working
    # A pass of one lead: the account's, though the other has waited longer.
    assert await queue_pass(routing, limit=1) == 1
    given = await lead(routing, account_lead.lead_id)
    assert given["owner_id"] == "sato"
    assert given["assignments"][-1]["rule"] == "account_owner"
    assert (await lead(routing, other_lead.lead_id))["owner_id"] is None
