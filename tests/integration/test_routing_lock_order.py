"""Routing's consumer takes a batch's locks in one order before it promotes anyone or
follows a deal: the batch's stored leads by id, then the teams it may assign in by name.
So a batch waiting for one lock holds none that another replica's batch or an API call
may be waiting for."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from schemas.events import DealPhase, DealPhaseChanged, DealRecycled, LifecycleStage, Tier
from services.routing import store
from tests.integration.test_routing_harness import Routing, lead_scored, running_routing
from tests.support.infrastructure import PostgresServer
from tests.support.kafka import wait_until
from tests.support.locks import waiting_for_a_lock

pytestmark = pytest.mark.integration
# Long enough for a lock that is free to be granted on a busy machine; a lock that is never
# granted fails the test instead of hanging it.
GRANTED_WITHIN = 10.0


@pytest.fixture
async def routing(postgres: PostgresServer) -> AsyncIterator[Routing]:
    async with running_routing(await postgres.create_database()) as service:
        yield service


async def stage_of(routing: Routing, lead_id: object) -> str:
    response = await routing.client.get(f"/v1/leads/{lead_id}")
    assert response.status_code == 200, response.text
    stage: str = response.json()["stage"]
    return stage


async def test_a_batch_waiting_for_one_team_holds_no_other(routing: Routing) -> None:
    inbound, outbound = lead_scored(), lead_scored(source="outbound")
    async with routing.engine.connect() as elsewhere, elsewhere.begin():
        # BDR held, as by another replica's batch assigning an outbound lead.
        await store.lock_teams(elsewhere, ["bdr"])
        batch = asyncio.create_task(routing.handle(inbound, outbound))

        async def batch_waits() -> bool:
            return batch.done() or await waiting_for_a_lock(routing.engine)

        await wait_until(batch_waits, 10, "the batch to wait for BDR")
        # A batch that took SDR for its inbound lead while it waited for BDR would block
        # every inbound lead, and deadlock a batch holding BDR that needs SDR next.
        await asyncio.wait_for(routing.handle(lead_scored()), GRANTED_WITHIN)
    await batch
    assert await stage_of(routing, inbound.lead_id) == LifecycleStage.MQL
    assert await stage_of(routing, outbound.lead_id) == LifecycleStage.MQL


@pytest.mark.parametrize("hot_events", [1, 2], ids=["one run", "two runs"])
async def test_a_batch_takes_its_leads_before_any_team(routing: Routing,
                                                       hot_events: int) -> None:
    cooling = lead_scored(tier=Tier.B, score=40)
    await routing.handle(cooling)
    hot = lead_scored()
    async with routing.engine.connect() as api_call, api_call.begin():
        # As a transaction on the cooling lead: the lead held, then its team wanted.
        await store.lock_leads(api_call, [cooling.lead_id])
        # A hot lead that repeats cuts the batch in two runs: [hot], then [hot, cooling].
        batch = asyncio.create_task(routing.handle(*[hot] * hot_events, cooling))

        async def batch_waits() -> bool:
            return batch.done() or await waiting_for_a_lock(routing.engine)

        await wait_until(batch_waits, 10, "the batch to wait for the cooling lead")
        # Holding SDR while it waits for the cooling lead, the batch would deadlock here.
        await asyncio.wait_for(store.lock_teams(api_call, ["sdr"]), GRANTED_WITHIN)
    await batch
    assert await stage_of(routing, hot.lead_id) == LifecycleStage.MQL


async def test_a_hot_lead_already_with_sales_does_not_wait_for_its_team(
        routing: Routing) -> None:
    promoted = lead_scored()
    await routing.handle(promoted)
    assert await stage_of(routing, promoted.lead_id) == LifecycleStage.MQL
    async with routing.engine.connect() as queue_pass, queue_pass.begin():
        await store.lock_teams(queue_pass, ["sdr"])  # a queue pass handing out SDR's leads
        # Scored at tier A again, the MQL is not promoted: the batch needs no team.
        await asyncio.wait_for(routing.handle(lead_scored(lead_id=promoted.lead_id)),
                               GRANTED_WITHIN)


async def test_a_batch_of_deal_events_takes_their_leads_in_id_order(routing: Routing) -> None:
    low, high = sorted((lead_scored(tier=Tier.B, score=40), lead_scored(tier=Tier.B, score=40)),
                       key=lambda event: event.lead_id)
    await routing.handle(low, high)

    def recycled(lead_id: uuid.UUID) -> DealRecycled:
        return DealRecycled(deal_id=uuid.uuid4(), lead_id=lead_id,
                            recycled_at=datetime.now(UTC), last_phase=DealPhase.P3,
                            reason="no answer for 90 days")

    async with routing.engine.connect() as other, other.begin():
        await store.lock_leads(other, [low.lead_id])
        # Keyed by deal, the events come in any order of their leads: here the higher first.
        batch = asyncio.create_task(routing.handle(recycled(high.lead_id),
                                                   recycled(low.lead_id)))

        async def batch_waits() -> bool:
            return batch.done() or await waiting_for_a_lock(routing.engine)

        await wait_until(batch_waits, 10, "the batch to wait for the lower lead")
        # Holding the higher lead while it waits for the lower, the batch would deadlock.
        await asyncio.wait_for(store.lock_leads(other, [high.lead_id]), GRANTED_WITHIN)
    await batch


async def test_a_batch_of_several_topics_takes_all_its_leads_before_any_team(
        routing: Routing) -> None:
    followed = lead_scored(tier=Tier.B, score=40)
    await routing.handle(followed)
    hot = lead_scored()  # new and inbound: promoted in SDR
    phase = DealPhaseChanged(deal_id=uuid.uuid4(), lead_id=followed.lead_id,
                             occurred_at=datetime.now(UTC), to_phase=DealPhase.P2,
                             probability=30, owner_id="tanaka")
    async with routing.engine.connect() as api_call, api_call.begin():
        await store.lock_leads(api_call, [followed.lead_id])  # the followed lead held
        # A lead.scored run, then a deal.phase_changed run: one batch, one transaction.
        batch = asyncio.create_task(routing.handle(hot, phase))

        async def batch_waits() -> bool:
            return batch.done() or await waiting_for_a_lock(routing.engine)

        await wait_until(batch_waits, 10, "the batch to wait for the followed lead")
        # Holding SDR from its first run while its second waits for the followed lead,
        # the batch would deadlock here.
        await asyncio.wait_for(store.lock_teams(api_call, ["sdr"]), GRANTED_WITHIN)
    await batch
    assert await stage_of(routing, hot.lead_id) == LifecycleStage.MQL
