"""Routing on the real broker: consumed events move leads, lead.promoted is published."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest

from baton_runtime.consumer import RetryPolicy
from baton_runtime.kafka import KafkaPublisher, build_consumer, ensure_topics
from baton_runtime.outbox import OutboxRelay
from schemas.envelope import decode
from schemas.events import (
    DealPhase,
    DealPhaseChanged,
    DealRecycled,
    LeadPromoted,
    LifecycleStage,
    TouchpointType,
)
from tests.conftest import Infrastructure
from tests.integration.test_routing_harness import (
    WEDNESDAY_10_JST,
    Routing,
    lead_scored,
    running_routing,
)
from tests.support.kafka import produce, read_topic, wait_until

pytestmark = pytest.mark.integration
S = LifecycleStage


@asynccontextmanager
async def consuming(infrastructure: Infrastructure) -> AsyncIterator[Routing]:
    """Yield routing with its consumer loop and outbox relay running against the broker."""
    overrides = infrastructure.settings_values()
    del overrides["database_url"]
    async with running_routing(infrastructure.database_url, **overrides) as routing:
        settings = routing.context.settings
        definition = routing.definition
        await ensure_topics(settings)
        loop = definition.consumer_loop(
            build_consumer(settings, definition.consumer_group, definition.name),
            routing.context.unit_of_work, retry=RetryPolicy(3, 0.01), batch_size=100)
        publisher = KafkaPublisher(settings, definition.name)
        await publisher.start()
        relay = OutboxRelay(definition.tables, publisher,
                            database_url=infrastructure.database_url, batch_size=100,
                            poll_interval=0.2)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(loop.run(stop)), asyncio.create_task(relay.run(stop))]
        try:
            yield routing
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await publisher.stop()


async def published(infrastructure: Infrastructure, count: int) -> list[LeadPromoted]:
    """Return the first ``count`` lead.promoted events on the topic, in order per lead."""
    records = await read_topic(infrastructure.bootstrap_servers, LeadPromoted.topic, count)
    events = [decode(r.topic, r.key, r.headers, r.value).event for r in records]
    return [event for event in events if isinstance(event, LeadPromoted)]


async def stage_is(routing: Routing, lead_id: uuid.UUID, stage: LifecycleStage) -> bool:
    response = await routing.client.get(f"/v1/leads/{lead_id}")
    return response.status_code == 200 and response.json()["stage"] == stage.value


async def test_a_tier_a_lead_from_the_broker_becomes_an_mql_and_is_assigned(
        infrastructure: Infrastructure) -> None:
    async with consuming(infrastructure) as routing:
        await routing.put_rep("sato", slack_user_id="U0SATO1")
        event = lead_scored(touchpoint=TouchpointType.INQUIRY_QUOTE_REQUEST)
        await produce(infrastructure.bootstrap_servers, [event])
        [mql] = await published(infrastructure, 1)

    assert (mql.lead_id, mql.from_stage, mql.to_stage) == (event.lead_id, S.LEAD, S.MQL)
    assert (mql.owner_id, mql.team) == ("sato", "sdr")
    assert mql.sla_due_at == WEDNESDAY_10_JST + timedelta(minutes=5), "quote request: 5 min"
    assert mql.trigger is TouchpointType.INQUIRY_QUOTE_REQUEST
    assert mql.profile.company == "株式会社サンプル製作所", "Japanese text round-trips"
    assert [r.label for r in mql.top_reasons] == ["デモ依頼", "役職: 部長"]


async def test_a_recycled_deal_sends_its_lead_back_to_nurture(
        infrastructure: Infrastructure) -> None:
    async with consuming(infrastructure) as routing:
        await routing.put_rep("sato")
        await routing.put_rep("tanaka", team="field_sales")
        scored = lead_scored()
        lead_id = scored.lead_id
        await produce(infrastructure.bootstrap_servers, [scored])
        await wait_until(lambda: stage_is(routing, lead_id, S.MQL), 30, "the MQL")
        client = routing.client
        accepted = await client.post(f"/v1/leads/{lead_id}/accept", json={"rep_id": "sato"})
        assert accepted.status_code == 200, accepted.text
        qualified = await client.post(f"/v1/leads/{lead_id}/qualify", json={
            "rep_id": "sato", "budget": True, "authority": True, "need": True,
            "timeframe": False})
        assert qualified.status_code == 200, qualified.text

        deal_id = uuid.uuid4()
        await produce(infrastructure.bootstrap_servers, [
            DealPhaseChanged(deal_id=deal_id, lead_id=lead_id, occurred_at=WEDNESDAY_10_JST,
                             to_phase=DealPhase.P1, probability=10, owner_id="tanaka")])
        await wait_until(lambda: stage_is(routing, lead_id, S.OPPORTUNITY), 30,
                         "the opportunity")
        await produce(infrastructure.bootstrap_servers, [
            DealRecycled(deal_id=deal_id, lead_id=lead_id, recycled_at=WEDNESDAY_10_JST,
                         last_phase=DealPhase.P2, reason="90日間フェーズ変更なし")])
        events = await published(infrastructure, 5)

    assert [(e.from_stage, e.to_stage) for e in events] == [
        (S.LEAD, S.MQL), (S.MQL, S.SAL), (S.SAL, S.SQL), (S.SQL, S.OPPORTUNITY),
        (S.OPPORTUNITY, S.NURTURE)]
    nurture = events[-1]
    assert nurture.reason == "deal recycled: 90日間フェーズ変更なし"
    assert (nurture.owner_id, nurture.team, nurture.sla_due_at) == (None, None, None)
    assert events[3].owner_id == "tanaka"
