"""Pipeline against real PostgreSQL and a real broker: deals open from lead.promoted, the
API moves them to won, the zombie sweep recycles them; every event is read back from the
broker."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

import baton.registry
from baton_runtime import migrations
from baton_runtime.consumer import RetryPolicy, dispatch
from baton_runtime.db import create_engine
from baton_runtime.http import create_app
from baton_runtime.kafka import KafkaPublisher, build_consumer, ensure_topics
from baton_runtime.outbox import OutboxRelay
from baton_runtime.service import ServiceContext, ServiceDefinition
from baton_runtime.uow import unit_of_work_factory
from schemas.envelope import decode
from schemas.events import (
    Account,
    ContactKind,
    DealPhase,
    DealPhaseChanged,
    DealRecycled,
    Event,
    LeadProfile,
    LeadPromoted,
    LifecycleStage,
    Tier,
)
from services.pipeline import domain, main, store
from services.pipeline.domain import Deal, Issue, NextAction
from services.pipeline.settings import PipelineSettings
from services.pipeline.sweep import sweep_zombies
from tests.conftest import Infrastructure
from tests.support.clock import ManualClock
from tests.support.kafka import produce, read_all, wait_until
from tests.support.locks import waiting_for_a_lock

pytestmark = pytest.mark.integration
E = TypeVar("E", bound=Event)
START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
P = DealPhase


@dataclass
class Pipeline:
    """The pipeline service's parts, running in this process on the test's infrastructure."""

    infrastructure: Infrastructure
    settings: PipelineSettings
    engine: AsyncEngine
    clock: ManualClock
    definition: ServiceDefinition
    context: ServiceContext
    api: httpx.AsyncClient
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def events(self, event_class: type[E]) -> list[E]:
        """Return every event of the class on its topic now, in each deal's order."""
        records = await read_all(self.infrastructure.bootstrap_servers, event_class.topic)
        ordered = sorted(records, key=lambda r: (r.partition, r.offset))
        decoded = [decode(r.topic, r.key, r.headers, r.value).event for r in ordered]
        return [event for event in decoded if isinstance(event, event_class)]

    async def outbox_empty(self) -> bool:
        """Return True once the relay has published everything."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(select(store.plumbing.outbox.c.id).limit(1))
            return rows.first() is None


def pipeline_settings(infrastructure: Infrastructure, **overrides: Any) -> PipelineSettings:
    """Return pipeline settings pointing at the test's database and broker."""
    return infrastructure.settings(PipelineSettings, **overrides)


@contextlib.asynccontextmanager
async def running(infrastructure: Infrastructure, *, consume: bool = True,
                  **overrides: Any) -> AsyncIterator[Pipeline]:
    """Run pipeline's consumer (if ``consume``), outbox relay and API in this process."""
    settings = pipeline_settings(infrastructure, **overrides)
    await ensure_topics(settings)
    await asyncio.to_thread(migrations.upgrade, baton.registry.migrations_dir("pipeline"),
                            infrastructure.database_url)
    engine = create_engine(infrastructure.database_url)
    clock = ManualClock(START)
    definition = main.definition(settings, clock)
    unit_of_work = unit_of_work_factory(engine, definition.tables, definition.source)
    context = ServiceContext("pipeline", settings, engine, unit_of_work, clock)
    app = create_app(service="pipeline", version="test", routers=definition.routers,
                     readiness={})
    app.state.context = context
    publisher = KafkaPublisher(settings, "pipeline")
    await publisher.start()
    relay = OutboxRelay(definition.tables, publisher,
                        database_url=infrastructure.database_url, batch_size=500,
                        poll_interval=0.2)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(relay.run(stop))]
    if consume:
        consumer = definition.consumer_loop(
            build_consumer(settings, definition.consumer_group, "pipeline"), unit_of_work,
            retry=RetryPolicy(2, 0.01), batch_size=100)
        tasks.append(asyncio.create_task(consumer.run(stop)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pipeline") as client:
        pipeline = Pipeline(infrastructure, settings, engine, clock, definition, context,
                            client, stop)
        try:
            yield pipeline
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await publisher.stop()
            await engine.dispose()


def promoted(lead_id: uuid.UUID, to_stage: LifecycleStage = LifecycleStage.SQL,
             owner_id: str = "field-sato") -> LeadPromoted:
    """Return routing's lead.promoted for a lead handed to a field rep."""
    return LeadPromoted(
        lead_id=lead_id, occurred_at=START, from_stage=LifecycleStage.SAL, to_stage=to_stage,
        reason="BANT rank A", owner_id=owner_id, team="field-east",
        profile=LeadProfile(email="taro@example.co.jp", name="山田 太郎",
                            company="株式会社サンプル製作所"),
        account=Account(account_key="example.co.jp"), score=85, tier=Tier.A)


async def deals_of(pipeline: Pipeline, lead_id: uuid.UUID) -> list[dict[str, Any]]:
    """Return the lead's deals as the API shows them."""
    response = await pipeline.api.get(f"/v1/leads/{lead_id}/deals")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def phase_changes(events: Sequence[DealPhaseChanged], deal_id: str) -> list[DealPhaseChanged]:
    """Return the deal's deal.phase_changed events, in order."""
    return [e for e in events if str(e.deal_id) == deal_id]


# --- lead.promoted opens a deal -----------------------------------------------------------


async def test_an_sql_from_the_broker_opens_one_deal_in_p1_for_its_field_rep(
    infrastructure: Infrastructure,
) -> None:
    sql_lead, mql_lead = uuid.uuid4(), uuid.uuid4()
    async with running(infrastructure) as pipeline:
        # Routing may announce the same SQL twice (two event ids): still one deal.
        await produce(infrastructure.bootstrap_servers, [
            promoted(sql_lead), promoted(sql_lead),
            promoted(mql_lead, to_stage=LifecycleStage.MQL)])

        async def opened() -> bool:
            return len(await deals_of(pipeline, sql_lead)) == 1

        await wait_until(opened, 30, "the SQL's deal")
        await wait_until(pipeline.outbox_empty, 30, "the relay to publish")
        [deal] = await deals_of(pipeline, sql_lead)
        assert (deal["phase"], deal["probability"], deal["owner_id"], deal["team"]) == (
            "P1", 10, "field-sato", "field-east")
        assert deal["company"] == "株式会社サンプル製作所"
        assert await deals_of(pipeline, mql_lead) == [], "only an SQL opens a deal"
        events = await pipeline.events(DealPhaseChanged)

    assert events == [DealPhaseChanged(
        deal_id=uuid.UUID(deal["deal_id"]), lead_id=sql_lead, occurred_at=START,
        from_phase=None, to_phase=P.P1, probability=10, owner_id="field-sato",
        reason="opened from SQL")]


async def handle(pipeline: Pipeline, *events: LeadPromoted) -> None:
    """Run pipeline's lead.promoted handler on each event, each in a unit of work."""
    for event in events:
        async with pipeline.context.unit_of_work() as uow:
            await dispatch(pipeline.definition.handlers[event.topic], [event], uow)
            await uow.commit()


async def test_an_sql_handed_off_while_the_sweep_recycles_its_old_deal_gets_a_new_deal(
    infrastructure: Infrastructure,
) -> None:
    # The sweep has claimed (locked) the lead's old deal when the new SQL arrives: the
    # hand-off meets that open deal, then finds it recycled once the sweep commits.
    lead_id = uuid.uuid4()
    async with running(infrastructure, consume=False) as pipeline:
        await handle(pipeline, promoted(lead_id))
        [old] = await deals_of(pipeline, lead_id)
        pipeline.clock.advance(days=91)
        now, rules = pipeline.clock(), pipeline.settings.rules()
        async with pipeline.context.unit_of_work() as sweep:
            [claimed] = await store.claim_zombies(sweep.connection, rules.cutoffs(now),
                                                  [uuid.UUID(old["deal_id"])])
            handing_off = asyncio.create_task(handle(pipeline, promoted(lead_id).model_copy(
                update={"occurred_at": now})))
            await wait_until(lambda: waiting_for_a_lock(pipeline.engine), 10,
                             "the hand-off to wait for the sweep's lock")
            recycled = domain.recycle(claimed, now, "no phase change for 90 days")
            await store.save_recycled(sweep.connection, [recycled], at=now)
            await sweep.commit()
        await handing_off
        deals = await deals_of(pipeline, lead_id)
    assert sorted((d["deal_id"] == old["deal_id"], d["is_open"], d["outcome"])
                  for d in deals) == [(False, True, None), (True, False, "recycled")]


async def test_a_lead_qualified_again_keeps_its_open_deal_which_goes_to_its_new_owner(
    infrastructure: Infrastructure,
) -> None:
    # Field sales rejected the SQL while its P1 deal was on the way, or a deal was opened
    # by hand: the lead keeps that one open deal, announced again so that routing makes the
    # SQL an opportunity (no deal opening for it, it stayed an SQL for good). Announced as
    # an opening is (no from-phase), the notifier takes it for no rep's activity.
    lead_id = uuid.uuid4()
    async with running(infrastructure, consume=False) as pipeline:
        first = promoted(lead_id)
        await handle(pipeline, first, first.model_copy(update={"reason": "announced again"}))
        pipeline.clock.advance(days=10)
        again = first.model_copy(update={"occurred_at": pipeline.clock(),
                                          "owner_id": "field-suzuki"})
        await handle(pipeline, again, again)
        [deal] = await deals_of(pipeline, lead_id)
        await wait_until(pipeline.outbox_empty, 30, "the relay to publish")
        events = await pipeline.events(DealPhaseChanged)

    assert (deal["phase"], deal["owner_id"]) == ("P1", "field-suzuki")
    assert [(e.from_phase, e.to_phase, e.owner_id, e.reason) for e in events] == [
        (None, P.P1, "field-sato", "opened from SQL"),
        (None, P.P1, "field-suzuki",
         "kept for the lead qualified again; owner field-sato -> field-suzuki")]


async def test_a_queued_sqls_deal_goes_to_the_rep_who_takes_the_lead(
    infrastructure: Infrastructure,
) -> None:
    lead_id = uuid.uuid4()
    async with running(infrastructure, consume=False) as pipeline:
        queued = promoted(lead_id).model_copy(update={"owner_id": None})
        taken = promoted(lead_id, to_stage=LifecycleStage.OPPORTUNITY).model_copy(update={
            "from_stage": LifecycleStage.OPPORTUNITY, "contact": ContactKind.CALL})
        await handle(pipeline, queued, taken, taken)
        [deal] = await deals_of(pipeline, lead_id)
        await wait_until(pipeline.outbox_empty, 30, "the relay to publish")
        events = await pipeline.events(DealPhaseChanged)

    assert (deal["owner_id"], deal["team"]) == ("field-sato", "field-east")
    assert [(e.to_phase, e.owner_id, e.reason) for e in events] == [
        (P.P1, None, "opened from SQL"), (P.P1, "field-sato", "owner none -> field-sato")]


# --- the API takes a deal to won ----------------------------------------------------------


async def test_the_api_takes_a_deal_from_p1_to_won_and_announces_every_change(
    infrastructure: Infrastructure,
) -> None:
    lead_id = uuid.uuid4()
    async with running(infrastructure, consume=False) as pipeline:
        api, clock = pipeline.api, pipeline.clock
        created = await api.post("/v1/deals", json={
            "rep_id": "field-sato", "lead_id": str(lead_id), "owner_id": "field-sato",
            "team": "field-east",
            "company": "株式会社サンプル", "amount": 12_000_000})
        assert created.status_code == 201, created.text
        deal_id = created.json()["deal_id"]
        again = await api.post("/v1/deals", json={"rep_id": "field-sato",
                                                  "lead_id": str(lead_id), "owner_id": "x"})
        assert again.status_code == 409 and deal_id in again.json()["detail"]

        clock.advance(days=1)
        refused = await api.post(f"/v1/deals/{deal_id}/advance", json={"rep_id": "field-sato"})
        assert refused.status_code == 409
        assert refused.json()["detail"] == [{
            "loc": ["deal", "criteria", "problem_agreed"],
            "msg": "record problem agreed with the customer to leave P1 (towards P2)",
            "type": "exit_criterion_missing"}]

        steps: list[tuple[str, str, dict[str, Any]]] = [
            ("PATCH", "", {"criteria": {"problem_agreed": True},
                           "next_action": {"due": "2026-11-27", "text": "課題ヒアリング"}}),
            ("POST", "/advance", {}),
            ("PATCH", "", {"criteria": {
                "business_issue": "在庫の属人化", "problem": "棚卸に3日", "solution": "在庫SaaS",
                "benefit": "半日に短縮", "proposal_sent": True}}),
            ("POST", "/advance", {"to_phase": "P3"}),
            ("POST", "/move-back", {"to_phase": "P2", "reason": "決裁者が交代"}),
            ("PATCH", "", {"criteria": {"quote_presented": True, "approval_route": "部長→役員会",
                                        "legal_checked": True, "final_terms_agreed": True},
                           "expected_close_date": "2027-01-29"}),
            ("POST", "/advance", {"to_phase": "P5"}),
            ("PATCH", "", {"criteria": {"approval_requested": True}, "amount": 15_000_000}),
            ("POST", "/win", {"note": "稟議承認"}),
        ]
        for method, path, body in steps:
            clock.advance(days=1)
            response = await api.request(method, f"/v1/deals/{deal_id}{path}",
                                         json={"rep_id": "field-sato", **body})
            assert response.status_code == 200, (path, response.text)
        won = response.json()
        assert (won["phase"], won["probability"], won["outcome"], won["is_open"]) == (
            "won", 100, "won", False)
        assert won["criteria"]["business_issue"] == "在庫の属人化", "Japanese round-trips"
        closed = await api.patch(f"/v1/deals/{deal_id}", json={"rep_id": "field-sato",
                                                               "amount": 1})
        assert closed.status_code == 409 and "closed" in closed.json()["detail"]

        history = (await api.get(f"/v1/deals/{deal_id}/history")).json()
        await wait_until(pipeline.outbox_empty, 30, "the relay to publish")
        events = phase_changes(await pipeline.events(DealPhaseChanged), deal_id)

    moves = [(e.from_phase, e.to_phase) for e in events]
    assert moves == [(None, P.P1), (P.P1, P.P1), (P.P1, P.P2), (P.P2, P.P2), (P.P2, P.P3),
                     (P.P3, P.P2), (P.P2, P.P2), (P.P2, P.P5), (P.P5, P.P5), (P.P5, P.WON)]
    assert [(h["from_phase"], h["to_phase"]) for h in history] == [
        (f.value if f else None, t.value) for f, t in moves], "history and events agree"
    assert [h["action"] for h in history] == [
        "opened", "updated", "advanced", "updated", "advanced", "moved_back", "updated",
        "advanced", "updated", "won"]
    assert [e.probability for e in events] == [10, 10, 30, 30, 60, 30, 30, 90, 90, 100]
    assert all(e.lead_id == lead_id and e.owner_id == "field-sato" for e in events)
    assert events[5].reason == "決裁者が交代"
    assert events[1].reason == "next action 2026-11-27 課題ヒアリング; criteria problem_agreed"
    assert (events[-1].amount, events[-1].reason, events[-1].occurred_at) == (
        15_000_000, "稟議承認", START + timedelta(days=10))


async def test_refused_changes_answer_4xx_with_field_detail_and_announce_nothing(
    infrastructure: Infrastructure,
) -> None:
    async with running(infrastructure, consume=False) as pipeline:
        api = pipeline.api
        sato = {"rep_id": "sato"}
        deal_id = (await api.post("/v1/deals", json={
            **sato, "lead_id": str(uuid.uuid4()), "owner_id": "sato"})).json()["deal_id"]
        lost = await api.post(f"/v1/deals/{deal_id}/lose", json={**sato, "reason": "bad vibes"})
        assert lost.status_code == 422
        [error] = lost.json()["detail"]
        assert error["loc"] == ["body", "reason"] and "no_budget" in error["msg"]
        past = await api.put(f"/v1/deals/{deal_id}/hold",
                             json={**sato, "until": "2026-11-19", "reason": "予算凍結"})
        assert past.status_code == 422 and past.json()["detail"][0]["loc"] == ["body", "until"]
        negative = await api.patch(f"/v1/deals/{deal_id}", json={**sato, "amount": -1})
        assert negative.status_code == 422
        assert negative.json()["detail"][0]["loc"] == ["body", "amount"]
        unknown = await api.post(f"/v1/deals/{deal_id}/advance",
                                 json={**sato, "to_phase": "P9"})
        assert unknown.status_code == 422
        # A retried advance, its first sending having moved the deal from P1 to P2 as seen.
        moved_since = await api.post(f"/v1/deals/{deal_id}/advance",
                                     json={**sato, "from_phase": "P2"})
        assert moved_since.status_code == 409
        assert "the deal is in P1, not P2" in moved_since.json()["detail"]
        # A blank next action would restart the zombie rule's clock with nothing entered.
        blank = await api.patch(f"/v1/deals/{deal_id}", json={
            **sato, "next_action": {"due": "2026-11-27", "text": "\u3000"}})
        assert blank.status_code == 422
        assert blank.json()["detail"][0]["loc"] == ["body", "next_action", "text"]
        blank_note = await api.post(f"/v1/deals/{deal_id}/win", json={**sato, "note": "  "})
        assert blank_note.status_code == 422
        missing = await api.post(f"/v1/deals/{uuid.uuid4()}/win", json=sato)
        assert missing.status_code == 404
        no_hold = await api.delete(f"/v1/deals/{deal_id}/hold", params=sato)
        assert no_hold.status_code == 409 and "not on hold" in no_hold.json()["detail"]
        same = await api.patch(f"/v1/deals/{deal_id}", json=sato)
        assert same.status_code == 200
        history = (await api.get(f"/v1/deals/{deal_id}/history")).json()
        assert [h["action"] for h in history] == ["opened"], "nothing else was recorded"
        lost = await api.post(f"/v1/deals/{deal_id}/lose",
                              json={**sato, "reason": "no_budget", "note": "来期予算で再検討"})
        assert lost.status_code == 200 and lost.json()["close_reason"] == "no_budget"
        await wait_until(pipeline.outbox_empty, 30, "the relay to publish")
        events = phase_changes(await pipeline.events(DealPhaseChanged), deal_id)
    assert [(e.to_phase, e.reason) for e in events] == [
        (P.P1, "opened by hand"), (P.LOST, "no_budget: 来期予算で再検討")]


# --- the zombie sweep ---------------------------------------------------------------------


async def test_the_sweep_recycles_zombies_but_not_held_deals_and_announces_their_leads(
    infrastructure: Infrastructure,
) -> None:
    stale, held, busy = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with running(infrastructure, zombie_sweep_interval_seconds=0.1) as pipeline:
        api, clock = pipeline.api, pipeline.clock
        await produce(infrastructure.bootstrap_servers,
                      [promoted(stale), promoted(held), promoted(busy)])

        async def all_opened() -> bool:
            return all([await deals_of(pipeline, lead) for lead in (stale, held, busy)])

        await wait_until(all_opened, 30, "three deals")
        [held_deal] = await deals_of(pipeline, held)
        [busy_deal] = await deals_of(pipeline, busy)
        clock.advance(days=59)
        response = await api.put(f"/v1/deals/{held_deal['deal_id']}/hold", json={
            "rep_id": "field-sato", "until": "2027-03-31", "reason": "先方の決算待ち"})
        assert response.status_code == 200, response.text
        response = await api.patch(f"/v1/deals/{busy_deal['deal_id']}", json={
            "rep_id": "field-sato", "next_action": {"due": "2027-01-20", "text": "デモ日程調整"}})
        assert response.status_code == 200, response.text
        clock.advance(days=1)  # 60 days without a next action on the first deal

        async def recycled(lead_id: uuid.UUID) -> bool:
            deals = await deals_of(pipeline, lead_id)
            return bool(deals) and deals[0]["outcome"] == "recycled"

        # The worker main.py wires in, on its interval.
        [sweeper] = pipeline.definition.workers
        stop_sweeping = asyncio.Event()
        sweeping = asyncio.create_task(sweeper(pipeline.context, stop_sweeping))
        await wait_until(lambda: recycled(stale), 30, "the worker to recycle the zombie")
        stop_sweeping.set()
        await sweeping
        assert not await recycled(held) and not await recycled(busy)

        # Then single sweeps at chosen instants.
        rules = pipeline.settings.rules()

        async def sweep() -> int:
            return await sweep_zombies(pipeline.context.unit_of_work, rules, clock,
                                       batch_size=10)

        clock.now = START + timedelta(days=90) - timedelta(seconds=1)
        assert await sweep() == 0
        clock.advance(seconds=1)
        assert await sweep() == 1 and await recycled(busy)
        clock.now = datetime(2027, 3, 31, 14, 59, tzinfo=UTC)  # 23:59 in Tokyo: still held
        assert await sweep() == 0
        clock.advance(minutes=1)
        assert await sweep() == 1 and await recycled(held), "the hold has ended"

        # The recycled lead earns SQL again later: it gets a new deal.
        await produce(infrastructure.bootstrap_servers, [promoted(stale)])

        async def reopened() -> bool:
            return len(await deals_of(pipeline, stale)) == 2

        await wait_until(reopened, 30, "a new deal for the recycled lead")
        await wait_until(pipeline.outbox_empty, 30, "the relay to publish")
        events = sorted(await pipeline.events(DealRecycled), key=lambda e: e.recycled_at)

    assert [e.lead_id for e in events] == [stale, busy, held]
    assert all(e.last_phase is P.P1 for e in events)
    assert [e.reason for e in events] == [
        "no next action entered for 60 days", "no phase change for 90 days",
        "no phase change for 90 days; no next action entered for 60 days"]
    assert [e.recycled_at for e in events] == [
        START + timedelta(days=60), START + timedelta(days=90),
        datetime(2027, 3, 31, 15, 0, tzinfo=UTC)]
    assert str(events[2].deal_id) == held_deal["deal_id"]


async def test_a_kept_deal_counts_its_idle_days_from_the_new_hand_off_keeping_its_dates(
    infrastructure: Infrastructure,
) -> None:
    # Opened for an SQL, then left idle 59 days until the lead was qualified again: the
    # sweep leaves it to the new rep for 60 days from that hand-off, while the deal still
    # shows when its phase really changed (its opening) and that no next action was entered.
    lead_id = uuid.uuid4()
    async with running(infrastructure, consume=False) as pipeline:
        api, clock = pipeline.api, pipeline.clock
        rules = pipeline.settings.rules()

        async def sweep() -> int:
            return await sweep_zombies(pipeline.context.unit_of_work, rules, clock,
                                       batch_size=10)

        await handle(pipeline, promoted(lead_id))
        clock.advance(days=59)
        handed_off = clock()
        await handle(pipeline, promoted(lead_id, owner_id="field-suzuki").model_copy(
            update={"occurred_at": handed_off}))
        clock.advance(days=1)
        assert await sweep() == 0, "not a zombie the day after the hand-off"
        [deal] = await deals_of(pipeline, lead_id)
        assert (deal["owner_id"], deal["is_open"], deal["next_action"]) == (
            "field-suzuki", True, None)
        assert datetime.fromisoformat(deal["opened_at"]) == START
        assert datetime.fromisoformat(deal["phase_changed_at"]) == START, "no made-up change"
        assert datetime.fromisoformat(deal["handed_off_at"]) == handed_off

        clock.now = handed_off + timedelta(days=30)
        health = (await api.get("/v1/pipeline/health")).json()
        [stuck] = [d for d in health["stuck"]["deals"] if d["deal_id"] == deal["deal_id"]]
        assert stuck["detail"] == "in P1 for 89 days, 30 since the hand-off"
        assert datetime.fromisoformat(stuck["phase_changed_at"]) == START
        assert datetime.fromisoformat(stuck["handed_off_at"]) == handed_off
        assert deal["deal_id"] not in {d["deal_id"] for d in health["zombies"]["deals"]}

        clock.now = handed_off + timedelta(days=60) - timedelta(seconds=1)
        assert await sweep() == 0
        clock.advance(seconds=1)
        assert await sweep() == 1, "60 days after the hand-off without a next action"
        [recycled] = await deals_of(pipeline, lead_id)
        history = (await api.get(f"/v1/deals/{deal['deal_id']}/history")).json()
        await wait_until(pipeline.outbox_empty, 30, "the relay to publish")
        events = [e for e in await pipeline.events(DealRecycled) if e.lead_id == lead_id]

    assert (recycled["outcome"], recycled["close_reason"]) == (
        "recycled", "no next action entered for 60 days")
    assert datetime.fromisoformat(recycled["phase_changed_at"]) == START
    assert [(h["action"], h["reason"]) for h in history] == [
        ("opened", "opened from SQL"),
        ("updated", "kept for the lead qualified again; owner field-sato -> field-suzuki"),
        ("recycled", "no next action entered for 60 days")]
    assert [e.recycled_at for e in events] == [handed_off + timedelta(days=60)]


async def test_two_sweepers_at_once_recycle_each_zombie_exactly_once(
    infrastructure: Infrastructure,
) -> None:
    async with running(infrastructure, consume=False) as pipeline:
        async with pipeline.context.unit_of_work() as uow:
            for _ in range(300):
                opened = domain.open_deal(deal_id=uuid.uuid4(), lead_id=uuid.uuid4(),
                                          owner_id="sato", team=None, company=None,
                                          now=START, reason="seed")
                assert await store.insert_deal(uow.connection, opened)
            await uow.commit()
        pipeline.clock.advance(days=90)
        rules = pipeline.settings.rules()
        counts = await asyncio.gather(*(
            sweep_zombies(pipeline.context.unit_of_work, rules, pipeline.clock, batch_size=7)
            for _ in range(2)))
        await wait_until(pipeline.outbox_empty, 30, "the relay to publish")
        events = await pipeline.events(DealRecycled)
    assert sum(counts) == 300 and all(counts), f"both replicas swept: {counts}"
    assert len(events) == 300
    assert len({e.deal_id for e in events}) == 300, "no deal recycled twice"


# --- health and forecast on the real database ---------------------------------------------


def random_deal(rng: random.Random, now: datetime) -> Deal:
    """Return an open deal with random ages, dates, next action and hold around ``now``."""
    today = now.date()
    opened_at = now - timedelta(days=rng.randint(0, 200), hours=rng.randint(0, 23))
    entered = rng.choice([None, opened_at + (now - opened_at) * rng.random()])
    return Deal(
        deal_id=uuid.uuid4(), lead_id=uuid.uuid4(), phase=rng.choice(domain.OPEN_PHASES),
        owner_id=rng.choice(["sato", "suzuki", None]), team=rng.choice(["east", None]),
        company=None, opened_at=opened_at,
        phase_changed_at=opened_at + (now - opened_at) * rng.random(),
        amount=rng.choice([None, rng.randint(0, 10**8)]),
        expected_close_date=rng.choice([None, today + timedelta(days=rng.randint(-40, 200))]),
        next_action=None if entered is None else NextAction(
            today + timedelta(days=rng.randint(-10, 30)), "次回訪問"),
        next_action_entered_at=entered,
        hold=rng.choice([None, domain.Hold(today + timedelta(days=rng.randint(-5, 5)), "x",
                                           opened_at)]),
        # Kept for a lead qualified again: the idle clocks restart then, if later.
        handed_off_at=rng.choice([None, opened_at + (now - opened_at) * rng.random()]))


@pytest.mark.slow
async def test_health_lists_exactly_the_deals_the_rules_flag(
    infrastructure: Infrastructure,
) -> None:
    rng = random.Random(6)
    async with running(infrastructure, consume=False) as pipeline:
        now = pipeline.clock()
        population = [random_deal(rng, now) for _ in range(300)]
        async with pipeline.context.unit_of_work() as uow:
            for deal in population:
                opened = domain.Changed(deal, domain.Change(domain.Action.OPENED, None, P.P1,
                                                            "seed"))
                assert await store.insert_deal(uow.connection, opened)
            await uow.commit()
        health = (await pipeline.api.get("/v1/pipeline/health",
                                         params={"limit": 1000})).json()
        sato = (await pipeline.api.get("/v1/pipeline/health",
                                       params={"owner_id": "sato", "limit": 1000})).json()
        both = await pipeline.api.get("/v1/pipeline/health",
                                      params={"owner_id": "sato", "team": "east"})

    rules = pipeline.settings.rules()
    flagged = {deal.deal_id: domain.issues(deal, now, rules) for deal in population}
    sections = {Issue.ZOMBIE: "zombies", Issue.PAST_DUE_CLOSE: "past_due_close",
                Issue.NO_NEXT_ACTION: "no_next_action", Issue.STUCK: "stuck",
                Issue.NO_EXPECTED_CLOSE: "no_expected_close"}
    for issue, section in sections.items():
        expected = {str(i) for i, found in flagged.items() if issue in found}
        listed = {d["deal_id"]: d["detail"] for d in health[section]["deals"]}
        assert set(listed) == expected, issue
        assert health[section]["total"] == len(expected)
        assert all(listed[str(i)] == flagged[i][issue] for i in flagged if str(i) in listed)
        assert expected, f"the population exercises {issue}"
        assert {d["owner_id"] for d in sato[section]["deals"]} <= {"sato"}
    assert any(d["detail"].endswith("since the hand-off") for d in health["stuck"]["deals"])
    assert both.status_code == 422


async def test_the_forecast_endpoint_sums_the_stored_deals_and_targets(
    infrastructure: Infrastructure,
) -> None:
    async with running(infrastructure, consume=False) as pipeline:
        api, clock = pipeline.api, pipeline.clock
        for owner, amount, close, phase in [("sato", 10_000_000, "2026-12-15", "P4"),
                                            ("sato", 4_000_000, "2027-02-01", "P2"),
                                            ("suzuki", 6_000_000, "2026-12-01", "P1"),
                                            ("suzuki", 3_000_000, None, "P2")]:
            deal_id = (await api.post("/v1/deals", json={
                "rep_id": owner, "lead_id": str(uuid.uuid4()), "owner_id": owner,
                "team": "east", "amount": amount,
                "expected_close_date": close})).json()["deal_id"]
            if phase != "P1":
                ticks = ("problem_agreed", "demo_done", "quote_presented", "legal_checked")
                texts = ("business_issue", "problem", "solution", "benefit", "approval_route")
                criteria: dict[str, bool | str] = {name: True for name in ticks}
                criteria |= {name: "記入済み" for name in texts}
                await api.patch(f"/v1/deals/{deal_id}",
                                json={"rep_id": owner, "criteria": criteria})
                moved = await api.post(f"/v1/deals/{deal_id}/advance",
                                       json={"rep_id": owner, "to_phase": phase})
                assert moved.status_code == 200, moved.text
        lost_id = (await api.post("/v1/deals", json={
            "rep_id": "sato", "lead_id": str(uuid.uuid4()), "owner_id": "sato", "team": "east",
            "amount": 2_000_000})).json()["deal_id"]
        await api.post(f"/v1/deals/{lost_id}/lose", json={"rep_id": "sato", "reason": "price"})
        target = await api.put("/v1/targets", json={"period": "FY2026-Q3", "owner_id": "sato",
                                                     "amount": 20_000_000})
        assert target.status_code == 200, target.text
        bad = await api.put("/v1/targets", json={"period": "2026-Q3", "amount": 1})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "period"]
        clock.advance(days=1)
        response = await api.get("/v1/forecast")
        targets = (await api.get("/v1/targets", params={"fiscal_year": 2026})).json()

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["fiscal_year"], body["starts"], body["fiscal_year_start_month"]) == (
        2026, "2026-04-01", 4)
    groups = {(g["scope"], g["name"]): g for g in body["groups"]}
    q3 = {p["period"]: p for p in groups[("all", None)]["periods"]}["FY2026-Q3"]
    assert (q3["deals"], q3["pipeline"], q3["weighted"], q3["commit"]) == (
        2, 16_000_000, 8_600_000, 10_000_000)
    sato = {p["period"]: p for p in groups[("owner", "sato")]["periods"]}
    assert groups[("owner", "sato")]["win_rate"] == 0.0
    assert (sato["FY2026-Q3"]["target"], sato["FY2026-Q3"]["coverage"]) == (20_000_000, 0.5)
    assert sato["FY2026-Q3"]["needed_pipeline"] is None, "a 0% win rate cannot close a gap"
    assert sato["2027-02"]["weighted"] == 1_200_000
    # Only Q3 has a target: the year's is not Q3's, and says which quarters have none.
    assert (sato["FY2026"]["target"], sato["FY2026"]["coverage"]) == (None, None)
    assert (sato["FY2026"]["partial_target"], sato["FY2026"]["periods_without_target"]) == (
        20_000_000, ["FY2026-Q1", "FY2026-Q2", "FY2026-Q4"])
    # Suzuki's deal without an expected close date is in no period, but not left out.
    assert groups[("all", None)]["unscheduled"] == groups[("owner", "suzuki")]["unscheduled"] \
        == {"deals": 1, "pipeline": 3_000_000, "weighted": 900_000, "commit": 0}
    assert groups[("owner", "sato")]["unscheduled"]["deals"] == 0, "the lost one is closed"
    assert targets == [{"period": "FY2026-Q3", "scope": "owner", "name": "sato",
                        "amount": 20_000_000}]
