"""Scoring as a running service: real PostgreSQL, a real broker, and a clock the test turns."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from sqlalchemy import func, select, text

from baton import registry
from baton_runtime.consumer import RetryPolicy
from baton_runtime.db import create_engine
from baton_runtime.http import create_app
from baton_runtime.kafka import KafkaPublisher, build_consumer, ensure_topics
from baton_runtime.migrations import upgrade
from baton_runtime.outbox import OutboxRelay
from baton_runtime.service import ServiceContext, ServiceDefinition
from baton_runtime.settings import RuntimeSettings
from baton_runtime.uow import unit_of_work_factory
from schemas.envelope import decode
from schemas.events import (
    Account,
    DealPhase,
    DealPhaseChanged,
    DealRecycled,
    LeadCaptured,
    LeadProfile,
    LeadScored,
    PartnerNotes,
    Tier,
    Touchpoint,
    TouchpointType,
)
from services.ingest.main import definition as ingest_definition
from services.ingest.settings import IngestSettings
from services.scoring import handlers, store
from services.scoring.domain import (
    Colleague,
    DealOutcome,
    contacts_to_read,
    counted_contacts,
    score_lead,
)
from services.scoring.main import definition as scoring_definition
from services.scoring.model import (
    DEFAULT_MODEL_FILE,
    ActiveModel,
    ModelError,
    ModelOrigin,
    load_model,
)
from services.scoring.settings import ScoringSettings
from tests.conftest import Infrastructure
from tests.support.clock import ManualClock
from tests.support.kafka import produce, read_all, wait_until

pytestmark = pytest.mark.integration
T = TouchpointType
API_KEY = "scoring-test-key-0123456789"
TOKYO = ZoneInfo("Asia/Tokyo")
PACKAGED_VERSION = load_model(DEFAULT_MODEL_FILE).version


@dataclass
class Running:
    """A service running in this process: its context and a client for its API."""

    context: ServiceContext
    api: httpx.AsyncClient


@contextlib.asynccontextmanager
async def in_process(definition: ServiceDefinition, settings: RuntimeSettings
                     ) -> AsyncIterator[Running]:
    """Run a service's start-up hooks, consumer loop and outbox relay, as ``serve`` wires them.

    Workers are left out: the tests call the sweep themselves, at the moments they choose.
    """
    engine = create_engine(settings.database_url, pool_size=4, application_name=definition.name)
    unit_of_work = unit_of_work_factory(engine, definition.tables, definition.source)
    context = ServiceContext(definition.name, settings, engine, unit_of_work, definition.clock)
    publisher = KafkaPublisher(settings, client_id=definition.name)
    await publisher.start()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        for hook in definition.startup:
            await hook(context)
        relay = OutboxRelay(definition.tables, publisher,
                            database_url=settings.database_url, batch_size=100,
                            poll_interval=0.5)
        tasks.append(asyncio.create_task(relay.run(stop)))
        if definition.handlers:
            loop = definition.consumer_loop(
                build_consumer(settings, definition.consumer_group, definition.name),
                unit_of_work, retry=RetryPolicy(2, 0.01), batch_size=100)
            tasks.append(asyncio.create_task(loop.run(stop)))
        app = create_app(service=definition.name, version="test", routers=definition.routers,
                         readiness={}, middleware=definition.middleware)
        app.state.context = context
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=f"http://{definition.name}") as api:
            yield Running(context, api)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await publisher.stop()
        await engine.dispose()


def environment(infrastructure: Infrastructure, **extra: str) -> dict[str, Any]:
    """Return settings values (field names) for a service on the test's infrastructure."""
    return {**infrastructure.settings_values(), **extra}


@dataclass
class Scoring:
    """The scoring service under test, with its clock and the broker's address."""

    running: Running
    settings: ScoringSettings
    clock: ManualClock
    bootstrap: str

    @property
    def api(self) -> httpx.AsyncClient:
        return self.running.api

    def active_model(self) -> ActiveModel:
        """Return the configured model in the configured reason locale, as the service
        starts with."""
        return ActiveModel(self.settings.scoring_model(), self.settings.scoring_reason_locale)

    async def sweep(self) -> int:
        """Run one decay sweep now with the latest stored model, as the workers do."""
        unit_of_work = self.running.context.unit_of_work
        active = self.active_model()
        await handlers.reload_model(unit_of_work, active)
        return await handlers.sweep(unit_of_work, active, self.clock, batch_size=100)

    async def score(self, lead_id: uuid.UUID) -> dict[str, Any]:
        """Return the lead's score explanation from the API."""
        response = await self.api.get(f"/v1/leads/{lead_id}/score")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def scored(self, lead_id: uuid.UUID, count: int) -> list[LeadScored]:
        """Wait until the lead has ``count`` lead.scored events; return them, oldest first."""
        found: list[LeadScored] = []

        async def enough() -> bool:
            nonlocal found
            records = await read_all(self.bootstrap, LeadScored.topic)
            events = [decode(r.topic, r.key, r.headers, r.value).event for r in records]
            found = [e for e in events if isinstance(e, LeadScored) and e.lead_id == lead_id]
            return len(found) >= count

        try:
            await wait_until(enough, 30, f"{count} lead.scored events of {lead_id}")
        except AssertionError as timeout:  # say whether the relay or the broker kept them
            async with self.running.context.engine.connect() as connection:
                waiting = (await connection.execute(
                    select(func.count()).select_from(store.plumbing.outbox))).scalar()
            raise AssertionError(f"{timeout}; {waiting} outbox rows not yet published") from None
        assert len(found) == count, [(e.score, e.tier) for e in found]
        return found

    async def deal_outcome(self, deal_id: uuid.UUID) -> str | None:
        """Return the outcome scoring recorded for the deal, None if it has not seen it."""
        async with self.running.context.engine.connect() as connection:
            return (await connection.execute(select(store.deals.c.outcome)
                                             .where(store.deals.c.deal_id == deal_id))).scalar()

    async def capture(self, lead_id: uuid.UUID, touchpoint: TouchpointType, *,
                      profile: LeadProfile | None = None, account: Account | None = None,
                      asset_id: str | None = None, occurred_at: datetime | None = None) -> None:
        """Publish a lead.captured for the lead, happening at ``occurred_at`` (by default now
        on the service's clock)."""
        await produce(self.bootstrap, [LeadCaptured(
            lead_id=lead_id, source="web-form", profile=profile or MANAGER,
            account=account or SAMPLE_CO,
            touchpoint=Touchpoint(type=touchpoint, occurred_at=occurred_at or self.clock.now,
                                  asset_id=asset_id),
        )])


MANAGER = LeadProfile(email="taro.yamada@sample.co.jp", name="山田 太郎",
                      company="株式会社サンプル製作所", title="製造部 部長", industry="製造業",
                      employee_band="500-999")
EXECUTIVE = MANAGER.model_copy(update={"email": "hanako.sato@sample.co.jp",
                                       "name": "佐藤 花子", "title": "代表取締役"})
SAMPLE_CO = Account(account_key="domain:sample.co.jp", domain="sample.co.jp",
                    company_name="株式会社サンプル製作所")


async def migrate(service: str, database_url: str) -> None:
    """Apply the service's migrations to the test database."""
    await asyncio.to_thread(upgrade, registry.migrations_dir(service), database_url)


@contextlib.asynccontextmanager
async def scoring_service(infrastructure: Infrastructure, clock: ManualClock,
                          **extra: str) -> AsyncIterator[Scoring]:
    """Run scoring on the test's infrastructure with ``clock``."""
    settings = ScoringSettings(**environment(infrastructure, **extra))
    await ensure_topics(settings)
    await migrate("scoring", settings.database_url)
    async with in_process(scoring_definition(settings, clock=clock), settings) as running:
        yield Scoring(running, settings, clock, infrastructure.bootstrap_servers)


@pytest.fixture
async def scoring(infrastructure: Infrastructure) -> AsyncIterator[Scoring]:
    async with scoring_service(infrastructure, ManualClock(datetime.now(UTC))) as service:
        yield service


@pytest.mark.slow
async def test_a_lead_posted_through_ingest_gets_the_documented_score_and_reasons(
    infrastructure: Infrastructure, scoring: Scoring
) -> None:
    settings = IngestSettings(**environment(infrastructure,
                                            ingest_api_keys=f"website={API_KEY}"))
    await migrate("ingest", settings.database_url)
    async with in_process(ingest_definition(settings), settings) as ingest:
        response = await ingest.api.post("/v1/leads", headers={"X-API-Key": API_KEY}, json={
            "email": "Taro.Yamada@Example.co.jp", "name": "山田 太郎",
            "company": "株式会社サンプル製作所", "title": "製造部 部長", "industry": "製造業",
            "employee_band": "500-999", "touchpoint": {"type": "inquiry.demo_request"}})
        assert response.status_code == 202, response.text
        lead_id = uuid.UUID(response.json()["lead_id"])
        [scored] = await scoring.scored(lead_id, 1)

    # DESIGN.md section 3: manager +10, ICP industry +10 and band +10, demo request +50.
    assert (scored.score, scored.tier, scored.previous_tier) == (80, Tier.A, None)
    assert scored.high_intent_signals == ["inquiry.demo_request"]
    assert scored.surge, "from nothing to 80 within the week"
    assert {r.code: r.points for r in scored.reasons} == {
        "fit.title.manager": 10, "fit.icp.industry": 10, "fit.icp.employee_band": 10,
        "inquiry.demo_request": 50}
    assert scored.profile.company == "株式会社サンプル製作所"
    assert scored.last_touchpoint is TouchpointType.INQUIRY_DEMO_REQUEST
    explanation = await scoring.score(lead_id)
    assert (explanation["score"], explanation["tier"]) == (80, "A")
    assert explanation["model_version"] == scored.model_version == PACKAGED_VERSION
    assert explanation["reasons"][0]["label"] == "役職: 製造部 部長"  # reasons in ja by default


async def test_tier_a_needs_a_high_intent_signal(scoring: Scoring) -> None:
    lead_id = uuid.uuid4()
    await scoring.capture(lead_id, T.APPOINTMENT_SET, profile=EXECUTIVE)
    await scoring.scored(lead_id, 1)
    await scoring.capture(lead_id, T.WEBINAR_PRODUCT_DEMO, profile=EXECUTIVE)
    first, hot_but_b = await scoring.scored(lead_id, 2)
    assert (first.score, first.tier) == (65, Tier.B)  # 15 + 10 + 10 + 30
    assert (hot_but_b.score, hot_but_b.tier, hot_but_b.high_intent_signals) == (85, Tier.B, [])

    await scoring.capture(lead_id, T.INQUIRY_GENERAL, profile=EXECUTIVE)
    *_, hot = await scoring.scored(lead_id, 3)
    assert (hot.score, hot.tier, hot.previous_tier) == (100, Tier.A, Tier.B)
    assert hot.high_intent_signals == ["inquiry.general"]


async def test_the_decay_sweep_moves_a_lead_from_a_to_b_at_the_right_moment(
    scoring: Scoring
) -> None:
    lead_id = uuid.uuid4()
    captured_at = scoring.clock.now
    await scoring.capture(lead_id, T.INQUIRY_DEMO_REQUEST)
    [hot] = await scoring.scored(lead_id, 1)
    assert (hot.score, hot.tier) == (80, Tier.A)
    # 30 fit points stay; the demo request's 50 must decay below 49.5: log2(50/49.5) half-lives.
    crossing = captured_at + timedelta(days=30) * 0.014499569695115089
    review = datetime.fromisoformat((await scoring.score(lead_id))["next_review_at"])
    assert abs(review - crossing) < timedelta(milliseconds=1)

    scoring.clock.now = crossing - timedelta(seconds=1)
    assert await scoring.sweep() == 0, "not due yet"
    assert (await scoring.score(lead_id))["tier"] == "A"

    scoring.clock.now = crossing + timedelta(seconds=1)
    assert await scoring.sweep() == 1
    _, cooled = await scoring.scored(lead_id, 2)
    assert (cooled.score, cooled.tier, cooled.previous_tier) == (79, Tier.B, Tier.A)
    assert cooled.last_touchpoint is None, "time, not a touchpoint, moved it"
    assert (await scoring.score(lead_id))["tier"] == "B"

    scoring.clock.now = captured_at + timedelta(days=90)
    assert await scoring.sweep() >= 1
    _, _, dormant = await scoring.scored(lead_id, 3)
    assert (dormant.dormancy, dormant.tier, dormant.surge) == ("dormant", Tier.C, False)


async def test_only_one_replica_sweeps_at_a_time(scoring: Scoring) -> None:
    lead_id = uuid.uuid4()
    await scoring.capture(lead_id, T.INQUIRY_DEMO_REQUEST)
    await scoring.scored(lead_id, 1)
    scoring.clock.now += timedelta(days=1)
    async with scoring.running.context.engine.connect() as other_replica:
        await other_replica.begin()
        assert (await other_replica.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtext(:name))"),
            {"name": handlers.SWEEP_LOCK})).scalar_one()
        assert await scoring.sweep() == 0, "another replica is sweeping"
        await other_replica.rollback()
    assert await scoring.sweep() == 1


async def test_an_inquiry_at_a_capped_score_is_announced_for_sales_to_hear(
        scoring: Scoring) -> None:
    # A lead sent back to nurture at 100 earns MQL again by asking: routing must see it.
    lead_id = uuid.uuid4()
    for count, touchpoint in enumerate((T.INQUIRY_QUOTE_REQUEST, T.WEBINAR_PRODUCT_DEMO), 1):
        await scoring.capture(lead_id, touchpoint)
        await scoring.scored(lead_id, count)
        scoring.clock.now += timedelta(minutes=1)
    await scoring.capture(lead_id, T.EMAIL_OPEN)  # at 100 already: nothing to announce
    scoring.clock.now += timedelta(minutes=1)
    await scoring.capture(lead_id, T.INQUIRY_DEMO_REQUEST)
    *_, capped, asked = await scoring.scored(lead_id, 3)
    assert (capped.score, asked.score, asked.previous_score, asked.tier) == (
        100, 100, 100, Tier.A)
    # Ordered on the lead's partition: had the e-mail open been announced, it would be third.
    assert asked.last_touchpoint is T.INQUIRY_DEMO_REQUEST


async def test_a_partner_s_meeting_is_announced_with_its_time_even_at_a_capped_score(
        scoring: Scoring) -> None:
    # The first meeting starts the notifier's SLA clock: it must hear of it at any score.
    lead_id, meeting_at = uuid.uuid4(), datetime(2026, 12, 1, 14, tzinfo=TOKYO)
    for count, touchpoint in enumerate((T.INQUIRY_QUOTE_REQUEST, T.WEBINAR_PRODUCT_DEMO), 1):
        await scoring.capture(lead_id, touchpoint)
        await scoring.scored(lead_id, count)
        scoring.clock.now += timedelta(minutes=1)
    for meeting in (None, meeting_at):  # at 100 already: only the meeting time is news
        await produce(scoring.bootstrap, [LeadCaptured(
            lead_id=lead_id, source="appointer", profile=MANAGER, account=SAMPLE_CO,
            touchpoint=Touchpoint(type=T.APPOINTMENT_SET, occurred_at=scoring.clock.now),
            partner_notes=PartnerNotes(partner="アポ代行パートナーズ", need="受発注の電子化",
                                       meeting_at=meeting))])
        scoring.clock.now += timedelta(minutes=1)
    *_, capped, met = await scoring.scored(lead_id, 3)
    # Ordered on the lead's partition: had the appointment without a time been announced,
    # it would be third.
    assert met.meeting_at == meeting_at and capped.meeting_at is None
    assert (met.score, met.previous_score, met.tier, met.surge) == (
        100, 100, Tier.A, capped.surge)
    assert met.last_touchpoint is T.APPOINTMENT_SET

async def test_a_contact_who_moves_to_another_account_leaves_its_colleagues_points_behind(
        scoring: Scoring) -> None:
    # Ingest moves a free-mail lead to another account when it names another company.
    old = Account(account_key="name:sample", company_name="Sample", free_mail=True)
    new = Account(account_key="name:other", company_name="Other", free_mail=True)
    staff = LeadProfile(email="jiro@gmail.com", company="Sample", title="部長",
                        industry="製造業")
    boss = LeadProfile(email="boss@gmail.com", company="Sample", title="代表取締役")
    colleague, executive = uuid.uuid4(), uuid.uuid4()
    await scoring.capture(colleague, T.INQUIRY_QUOTE_REQUEST, profile=staff, account=old)
    await scoring.scored(colleague, 1)
    scoring.clock.now += timedelta(minutes=1)
    await scoring.capture(executive, T.EMAIL_CLICK, profile=boss, account=old)
    await scoring.scored(executive, 1)
    scoring.clock.now += timedelta(minutes=1)
    while await scoring.sweep():
        pass
    fed = await scoring.score(colleague)
    assert {r["code"] for r in fed["reasons"]} >= {"engagement.contacts",
                                                    "engagement.decision_maker"}

    scoring.clock.now += timedelta(minutes=1)
    await scoring.capture(executive, T.EMAIL_CLICK,
                          profile=boss.model_copy(update={"company": "Other"}), account=new)
    await scoring.scored(executive, 2)  # it left its only colleague: 5 points fewer
    scoring.clock.now += timedelta(minutes=1)
    while await scoring.sweep():
        pass
    left = await scoring.score(colleague)
    assert not [r for r in left["reasons"] if r["code"].startswith("engagement")], left
    assert "decision_maker_engaged" not in left["high_intent_signals"]


async def test_a_recycled_deal_resets_the_behaviour_baseline_whichever_event_comes_first(
        scoring: Scoring) -> None:
    # The lead's capture and its deal's recycling come on different topics: the recycling
    # may be handled before scoring has stored the lead (a backlog on one topic, a replay).
    # One lead's events are handled in the order they happened, the other's recycling
    # first; both must end with the same baseline, score and tier.
    in_order, recycled_first = uuid.uuid4(), uuid.uuid4()
    deals = {in_order: uuid.uuid4(), recycled_first: uuid.uuid4()}
    # At accounts of their own: neither earns engagement points from the other.
    accounts = {lead_id: SAMPLE_CO.model_copy(update={"account_key": f"domain:{lead_id}"})
                for lead_id in deals}
    captured_at = scoring.clock.now
    recycled_at = captured_at + timedelta(days=1)
    await scoring.capture(in_order, T.INQUIRY_DEMO_REQUEST, account=accounts[in_order])
    [hot] = await scoring.scored(in_order, 1)
    assert (hot.score, hot.tier) == (80, Tier.A)

    scoring.clock.now = recycled_at
    await produce(scoring.bootstrap, [event for lead_id, deal_id in deals.items() for event in (
        DealPhaseChanged(deal_id=deal_id, lead_id=lead_id, occurred_at=captured_at
                         + timedelta(hours=1), to_phase=DealPhase.P1, probability=10),
        DealRecycled(deal_id=deal_id, lead_id=lead_id, recycled_at=recycled_at,
                     last_phase=DealPhase.P1, reason="no phase change for 90 days"))])
    _, reset = await scoring.scored(in_order, 2)
    assert reset.previous_tier is Tier.A

    async def recycled() -> bool:
        return await scoring.deal_outcome(deals[recycled_first]) == DealOutcome.RECYCLED

    await wait_until(recycled, 30, "the recycling of a deal whose lead scoring has not seen")
    await scoring.capture(recycled_first, T.INQUIRY_DEMO_REQUEST, account=accounts[recycled_first],
                          occurred_at=captured_at)
    [late] = await scoring.scored(recycled_first, 1)

    for result in (reset, late):
        assert (result.score, result.tier) == (30, Tier.C)
        assert {r.code for r in result.reasons} == {"fit.title.manager", "fit.icp.industry",
                                                    "fit.icp.employee_band"}
    explained = {lead_id: await scoring.score(lead_id) for lead_id in deals}
    for explanation in explained.values():
        assert datetime.fromisoformat(explanation["behaviour_counted_since"]) == recycled_at
    assert ({**explained[in_order], "lead_id": None}
            == {**explained[recycled_first], "lead_id": None})

    scoring.clock.now += timedelta(minutes=1)
    for lead_id, count in ((in_order, 3), (recycled_first, 2)):
        await scoring.capture(lead_id, T.INQUIRY_DEMO_REQUEST, account=accounts[lead_id])
        *_, again = await scoring.scored(lead_id, count)
        assert (again.score, again.tier) == (80, Tier.A), "it earns tier A again, from scratch"


async def test_the_buying_committee_feeds_every_contact_at_the_account(
    scoring: Scoring
) -> None:
    manager, executive = uuid.uuid4(), uuid.uuid4()
    await scoring.capture(manager, T.PAGE_VIEW_BLOG)
    [first] = await scoring.scored(manager, 1)
    assert first.score == 33

    await scoring.capture(executive, T.EMAIL_CLICK, profile=EXECUTIVE)
    [colleague] = await scoring.scored(executive, 1)
    assert ("engagement.contacts", 5) in {(r.code, r.points) for r in colleague.reasons}
    # The manager's score changes too: the sweep re-scores the account's other contacts.
    assert await scoring.sweep() == 1
    _, fed = await scoring.scored(manager, 2)
    assert {r.code: r.points for r in fed.reasons if r.code.startswith("engagement")} == {
        "engagement.contacts": 5, "engagement.decision_maker": 10}
    assert fed.score == 48 and "decision_maker_engaged" in fed.high_intent_signals


async def test_a_batch_announces_each_lead_once_and_reviews_colleagues_it_read_too_early(
    scoring: Scoring
) -> None:
    manager, executive = uuid.uuid4(), uuid.uuid4()
    at = scoring.clock.now

    def captured(lead_id: uuid.UUID, touchpoint: TouchpointType,
                 profile: LeadProfile) -> LeadCaptured:
        return LeadCaptured(lead_id=lead_id, source="web-form", profile=profile,
                            account=SAMPLE_CO, touchpoint=Touchpoint(type=touchpoint,
                                                                     occurred_at=at))

    # What the consumer loop hands the batched handler when the events share a fetch.
    async with scoring.running.context.unit_of_work() as uow:
        await handlers.on_leads_captured(
            [captured(manager, T.PAGE_VIEW_BLOG, MANAGER),
             captured(executive, T.EMAIL_CLICK, EXECUTIVE),
             captured(manager, T.INQUIRY_GENERAL, MANAGER)],
            uow, active=scoring.active_model(), clock=scoring.clock)
        await uow.commit()

    [once] = await scoring.scored(manager, 1)
    assert once.last_touchpoint is T.INQUIRY_GENERAL, "announced with the batch's last touch"
    assert {r.code for r in once.reasons} >= {"page_view.blog", "inquiry.general"}
    assert once.score == (await scoring.score(manager))["score"]
    assert not any(r.code.startswith("engagement") for r in once.reasons), (
        "the executive's engagement was not yet stored when the manager's colleagues were read")
    # So the manager is due for review at once, and the sweep adds the executive's points.
    review = datetime.fromisoformat((await scoring.score(manager))["next_review_at"])
    assert review == at
    assert await scoring.sweep() >= 1
    _, fed = await scoring.scored(manager, 2)
    assert {r.code for r in fed.reasons} >= {"engagement.contacts", "engagement.decision_maker"}


async def test_a_colleague_another_transaction_holds_is_still_reviewed(
    scoring: Scoring
) -> None:
    # The sweep re-scoring a colleague, or another lane scoring it, read the account before
    # a decision maker engaged: it saves the colleague without those points, so the review
    # the decision maker asks for must outlive that transaction.
    staff = MANAGER.model_copy(update={"email": "jiro@sample.co.jp", "title": "担当"})
    colleague, executive = uuid.uuid4(), uuid.uuid4()

    async def engage(lead_id: uuid.UUID, profile: LeadProfile) -> None:
        async with scoring.running.context.unit_of_work() as uow:
            await handlers.on_leads_captured([LeadCaptured(
                lead_id=lead_id, source="web-form", profile=profile, account=SAMPLE_CO,
                touchpoint=Touchpoint(type=T.EMAIL_CLICK, occurred_at=scoring.clock.now))],
                uow, active=scoring.active_model(), clock=scoring.clock)
            await uow.commit()

    await engage(colleague, staff)
    scoring.clock.now += timedelta(minutes=1)
    async with scoring.running.context.engine.connect() as holder, holder.begin():
        await holder.execute(select(store.leads.c.lead_id)
                             .where(store.leads.c.lead_id == colleague).with_for_update())
        await engage(executive, EXECUTIVE)
        # Nor does the sweep wait for a lead another transaction holds (a consumer locks
        # leads in an order of its own): it leaves that lead's request for later.
        assert await asyncio.wait_for(scoring.sweep(), 10) == 0
    assert await scoring.sweep() == 1
    explanation = await scoring.score(colleague)
    assert {r["code"] for r in explanation["reasons"]} >= {
        "engagement.contacts", "engagement.decision_maker"}


async def test_in_a_large_account_one_more_engaged_contact_re_scores_nobody_else(
    scoring: Scoring
) -> None:
    large = Account(account_key="domain:large.co.jp", domain="large.co.jp",
                    company_name="株式会社ラージ")
    model = scoring.settings.scoring_model()

    async def engage(*people: tuple[uuid.UUID, str]) -> None:
        async with scoring.running.context.unit_of_work() as uow:
            await handlers.on_leads_captured([LeadCaptured(
                lead_id=lead_id, source="web-form", account=large,
                profile=MANAGER.model_copy(update={"email": f"{lead_id.hex}@large.co.jp",
                                                   "title": title}),
                touchpoint=Touchpoint(type=T.EMAIL_CLICK, occurred_at=scoring.clock.now))
                for lead_id, title in people],
                uow, active=ActiveModel(model, "en"), clock=scoring.clock)
            await uow.commit()

    staff = [(uuid.uuid4(), "担当") for _ in range(counted_contacts(model) + 3)]
    executives = [(uuid.uuid4(), "代表取締役") for _ in range(2)]
    for person in [*staff, *executives]:
        scoring.clock.now += timedelta(minutes=1)
        await engage(person)
    while await scoring.sweep():  # the colleagues' reviews the first contacts asked for
        pass

    scoring.clock.now += timedelta(minutes=1)
    newcomer = uuid.uuid4()
    await engage((newcomer, "担当"))
    assert await scoring.sweep() == 0, "past the cap, with two decision makers, nobody changes"
    explanation = await scoring.score(newcomer)
    assert {r["code"]: r["label"] for r in explanation["reasons"]
            if r["code"].startswith("engagement")} == {
        "engagement.contacts": f"{counted_contacts(model)} or more other engaged contacts "
                               "at the account",
        "engagement.decision_maker": "a decision maker is engaged"}

    # What the sweep reads of the account scores each lead as all its colleagues would.
    async with scoring.running.context.unit_of_work() as uow:
        rows = (await uow.connection.execute(
            select(store.leads).where(store.leads.c.account_key == large.account_key))).all()
        read = await handlers.load(uow, rows, model, scoring.clock.now)
    everyone = {lead.lead_id: lead for lead in read}
    assert len(everyone) == len(staff) + len(executives) + 1
    for lead in read:
        assert len(lead.colleagues) <= sum(contacts_to_read(model))
        all_others = [Colleague(other.last_engaged_at, other.decision_maker) for other in rows
                      if other.lead_id != lead.lead_id]
        facts = handlers.facts_of(lead.profile, lead.account)
        assert (score_lead(facts, lead.ledger, scoring.clock.now, model,
                           colleagues=lead.colleagues)
                == score_lead(facts, lead.ledger, scoring.clock.now, model,
                              colleagues=all_others))


async def test_calibration_reports_conversion_by_band_and_tier_against_outcomes(
    scoring: Scoring
) -> None:
    hot, warm, cold = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await scoring.capture(hot, T.INQUIRY_DEMO_REQUEST)
    await scoring.capture(warm, T.APPOINTMENT_SET, profile=MANAGER.model_copy(
        update={"email": "warm@sample.co.jp"}))
    cold_profile = LeadProfile(email="cold@example.com", title="担当")
    cold_account = Account(account_key="domain:example.com", domain="example.com")
    await scoring.capture(cold, T.PAGE_VIEW_BLOG, profile=cold_profile, account=cold_account)
    for lead_id in (hot, warm, cold):
        await scoring.scored(lead_id, 1)
    outcomes = {hot: DealPhase.WON, warm: DealPhase.LOST, cold: DealPhase.LOST}
    deals = {lead_id: uuid.uuid4() for lead_id in outcomes}
    await produce(scoring.bootstrap, [
        event for lead_id, outcome in outcomes.items() for event in (
            DealPhaseChanged(deal_id=deals[lead_id], lead_id=lead_id, to_phase=DealPhase.P1,
                             occurred_at=scoring.clock.now, probability=10),
            DealPhaseChanged(deal_id=deals[lead_id], lead_id=lead_id, to_phase=outcome,
                             from_phase=DealPhase.P1, occurred_at=scoring.clock.now,
                             probability=100 if outcome is DealPhase.WON else 0))])

    report: dict[str, Any] = {}

    async def all_closed() -> bool:
        nonlocal report
        report = (await scoring.api.get("/v1/calibration")).json()
        return bool(report["overall"]["won"] + report["overall"]["lost"] == 3)

    await wait_until(all_closed, 30, "three closed deals in the calibration")
    tiers = {bucket["label"]: bucket for bucket in report["by_tier"]}
    assert (tiers["A"]["won"], tiers["A"]["win_rate"]) == (1, 1.0)
    assert (tiers["B"]["lost"], tiers["C"]["lost"]) == (1, 1)
    # Three closed deals are too few to rank on (the figures' arithmetic is unit-tested).
    assert report["score_auc"] is None and report["tier_auc"] is None
    assert report["sample"] == {"won": 1, "lost": 2, "tier_a_closed": 1, "min_closed": 10}
    bands = {bucket["label"]: bucket["deals"] for bucket in report["by_band"]}
    assert bands == {"0-19": 1, "20-39": 0, "40-59": 0, "60-79": 1, "80-100": 1}
    assert (await scoring.api.get("/v1/calibration", params={"band_width": 2})
            ).status_code == 422


async def test_the_model_is_shown_replaced_as_a_new_version_and_old_scores_keep_theirs(
    infrastructure: Infrastructure, scoring: Scoring, tmp_path: Path
) -> None:
    before = uuid.uuid4()
    await scoring.capture(before, T.INQUIRY_DEMO_REQUEST)
    await scoring.scored(before, 1)
    current = (await scoring.api.get("/v1/model")).json()
    assert (current["version"], current["origin"]) == (PACKAGED_VERSION, "packaged")

    stricter = current["model"] | {"version": "acme-strict-1"}
    stricter["tiers"] = stricter["tiers"] | {"a": 90}
    assert (await scoring.api.put("/v1/model", json=stricter)).status_code == 201
    assert (await scoring.api.put("/v1/model", json=stricter)).status_code == 200, "a retry"
    conflicting = stricter | {"description": "other rules, same version"}
    assert (await scoring.api.put("/v1/model", json=conflicting)).status_code == 409
    invalid = await scoring.api.put("/v1/model", json=stricter | {"version": "acme-strict-2",
                                                                  "surge": {"points": -1}})
    assert invalid.status_code == 422
    assert {tuple(error["loc"]) for error in invalid.json()["detail"]} == {
        ("body", "surge", "points"), ("body", "surge", "window_days")}
    shown = (await scoring.api.get("/v1/model")).json()
    assert (shown["version"], shown["origin"]) == ("acme-strict-1", "api")

    after = uuid.uuid4()
    await scoring.capture(after, T.INQUIRY_DEMO_REQUEST, profile=MANAGER.model_copy(
        update={"email": "after@sample.co.jp"}))
    [scored] = await scoring.scored(after, 1)
    assert scored.score >= 80, "80, and 5 for the engaged colleague"
    assert (scored.tier, scored.model_version) == (Tier.B, "acme-strict-1")
    assert (await scoring.score(before))["model_version"] == PACKAGED_VERSION, \
        "old scores keep theirs"

    # A restart with the packaged model keeps the newer version; changed rules under a
    # stored version stop the start-up.
    unit_of_work = scoring.running.context.unit_of_work
    restarted = scoring.active_model()
    await handlers.install_model(unit_of_work, restarted, ModelOrigin.PACKAGED)
    assert restarted.model.version == "acme-strict-1"
    changed = tmp_path / "model.yaml"
    changed.write_text(yaml.safe_dump(conflicting, allow_unicode=True), encoding="utf-8")
    settings = ScoringSettings(**environment(infrastructure, scoring_model_file=str(changed)))
    with pytest.raises(ModelError, match="acme-strict-1 is already stored with different rules"):
        await handlers.install_model(unit_of_work, ActiveModel(settings.scoring_model(), "ja"),
                                     ModelOrigin.FILE)
