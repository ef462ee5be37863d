"""SLA clocks in real PostgreSQL under a controlled clock: breaches, stops, replicas, deals."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from slack_sdk.models.blocks import Block, HeaderBlock

from baton_runtime.db import create_engine
from baton_runtime.http import create_app
from baton_runtime.service import ServiceContext
from baton_runtime.uow import UnitOfWork, unit_of_work_factory
from schemas.events import (
    Account,
    ContactKind,
    DealPhase,
    DealPhaseChanged,
    DealRecycled,
    LeadProfile,
    LeadPromoted,
    LeadScored,
    LifecycleStage,
    ScoreReason,
    Tier,
    TouchpointType,
)
from services.notifier import api, handlers, store
from services.notifier.config import NotifierConfig
from services.notifier.domain import plan_clock
from services.notifier.timers import TimerSweeper
from tests.integration.test_notifier_delivery import (
    SOURCE,
    NotifierDatabase,
    StrictSlack,
    alert_rows,
    configure,
    delivering,
    handle,
    lead_ids_in,
    notifier_database,
    promoted,
    settled,
)
from tests.support.clock import ManualClock
from tests.support.infrastructure import PostgresServer
from tests.support.kafka import wait_until
from tests.support.locks import waiting_for_a_lock

pytestmark = pytest.mark.integration
TOKYO = ZoneInfo("Asia/Tokyo")
S = LifecycleStage
TEAM_HOOK = "https://hooks.slack.com/services/T/B/sdr"
MANAGER_HOOK = "https://hooks.slack.com/services/T/B/managers"
CONFIG = configure(TEAM_HOOK, manager={"slack_webhook_url": MANAGER_HOOK})


def jst(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """Return a moment in November 2026, Tokyo time."""
    return datetime(2026, 11, day, hour, minute, second, tzinfo=TOKYO)


def destination_of(config: NotifierConfig, url: str) -> str:
    """Return the destination key of a configured webhook URL."""
    [key] = [key for key, d in config.destinations.items() if d.target == url]
    return key

TEAM, MANAGER = destination_of(CONFIG, TEAM_HOOK), destination_of(CONFIG, MANAGER_HOOK)


@pytest.fixture
async def database(postgres: PostgresServer) -> AsyncIterator[NotifierDatabase]:
    async with notifier_database(postgres) as created:
        yield created


async def sweep(database: NotifierDatabase, at: datetime,
                config: NotifierConfig = CONFIG) -> int:
    """Run a timer sweep (as a freshly started replica would) at ``at``."""
    return await TimerSweeper(database.unit_of_work, config.policy, ManualClock(at)).fire_due()


async def kinds(database: NotifierDatabase) -> list[tuple[str, str]]:
    """Return (kind, destination) of every alert recorded, oldest first."""
    return [(row.kind, row.channel) for row in await alert_rows(database)]


async def clocks(database: NotifierDatabase, lead_id: uuid.UUID) -> list[Any]:
    """Return the lead's clocks, oldest first."""
    async with database.engine.connect() as connection:
        rows = await store.list_clocks(connection, lead_id=lead_id, state=None,
                                       now=datetime.now(UTC), limit=50)
    return sorted(rows, key=lambda row: row.id)


async def test_a_clock_breaches_at_the_right_moment_across_a_weekend_and_a_holiday(
        database: NotifierDatabase) -> None:
    team, manager = TEAM, MANAGER
    # Friday 17:30; one business hour later is Tuesday 09:30 (Monday 23rd is a holiday).
    event = promoted(at=jst(20, 17, 30), trigger=TouchpointType.WEBINAR_PRODUCT_DEMO)
    await handle(database, CONFIG, event)
    [clock] = await clocks(database, event.lead_id)
    assert (clock.kind, clock.due_at) == ("mql_acceptance", jst(24, 9, 30))
    assert await kinds(database) == [("hot_lead", team)]

    await sweep(database, jst(20, 17, 59, 59))
    assert len(await kinds(database)) == 1, "nothing before half the hour"
    await sweep(database, jst(20, 18, 0))
    assert (await kinds(database))[1:] == [("sla_reminder", team)]
    await sweep(database, jst(23, 23, 0))  # the holiday passes: no working time elapsed
    await sweep(database, jst(24, 9, 29, 59))
    assert len(await kinds(database)) == 2, "no breach a second before the due time"
    await sweep(database, jst(24, 9, 30))
    assert (await kinds(database))[2:] == [("sla_breach", team), ("sla_breach", manager)]
    await sweep(database, jst(24, 9, 31))
    assert len(await kinds(database)) == 4, "each rung fires once"
    await sweep(database, jst(24, 10, 30))
    assert (await kinds(database))[4:] == [("sla_escalation", manager)], (
        "the team has no lead configured: escalations go to the manager channel")
    [clock] = await clocks(database, event.lead_id)
    assert (clock.status, clock.rungs_fired, clock.next_fire_at) == ("open", 3, None)

    breach = next(row for row in await alert_rows(database)
                  if (row.kind, row.channel) == ("sla_breach", manager))
    header = Block.parse(breach.message["blocks"][0])
    assert isinstance(header, HeaderBlock) and header.text is not None
    assert header.text.text == "🚨 SLA違反: 株式会社サンプル製作所"
    assert "2026-11-24 09:30 JST" in breach.message["text"]


async def test_acceptance_within_the_sla_gives_no_breach_alert(
        database: NotifierDatabase) -> None:
    event = promoted(at=jst(20, 17, 30))
    await handle(database, CONFIG, event)
    await sweep(database, jst(20, 18, 0))
    accepted = promoted(event.lead_id, at=jst(24, 9, 20), from_stage=S.MQL, to_stage=S.SAL,
                        owner_id="rep-1")
    await handle(database, CONFIG, accepted)
    await sweep(database, jst(25, 12, 0))
    assert [kind for kind, _ in await kinds(database)] == ["hot_lead", "sla_reminder"]
    acceptance, idle = await clocks(database, event.lead_id)
    assert (acceptance.kind, acceptance.status) == ("mql_acceptance", "met")
    assert acceptance.stopped_at == jst(24, 9, 20)
    assert (idle.kind, idle.status) == ("owner_activity", "open"), "the owner's clock runs now"


async def test_a_late_acceptance_is_reported_as_a_breach_once(
        database: NotifierDatabase) -> None:
    event = promoted(at=jst(24, 10, 0), trigger=TouchpointType.INQUIRY_QUOTE_REQUEST)
    await handle(database, CONFIG, event)
    # Nobody swept (the notifier was down): the stop itself must report the breach.
    late = promoted(event.lead_id, at=jst(24, 10, 7), from_stage=S.MQL, to_stage=S.SAL,
                    owner_id="rep-1")
    await handle(database, CONFIG, late, late)
    await sweep(database, jst(24, 11, 0))
    rows = await alert_rows(database)
    assert [(row.kind, row.channel) for row in rows] == [
        ("hot_lead", TEAM), ("sla_breach", TEAM), ("sla_breach", MANAGER)]
    assert "期限後に完了" in rows[1].message["title"]
    [acceptance, _] = await clocks(database, event.lead_id)
    assert (acceptance.rule, acceptance.status, acceptance.due_at) == (
        "mql_fast_lane", "breached", jst(24, 10, 5))


async def test_a_breach_already_alerted_is_not_reported_again_by_the_late_stop(
        database: NotifierDatabase) -> None:
    event = promoted(at=jst(24, 10, 0), trigger=TouchpointType.INQUIRY_DEMO_REQUEST)
    await handle(database, CONFIG, event)
    await sweep(database, jst(24, 10, 5))
    await handle(database, CONFIG, promoted(event.lead_id, at=jst(24, 10, 9),
                                            from_stage=S.MQL, to_stage=S.SAL, owner_id="r"))
    assert [kind for kind, _ in await kinds(database)] == ["hot_lead", "sla_breach",
                                                           "sla_breach"]


LEAD_HOOK = "https://hooks.slack.com/services/T/B/sdr-lead"
WITH_LEAD = configure(TEAM_HOOK, manager={"slack_webhook_url": MANAGER_HOOK},
                      teams={"sdr": {"lead": {"slack_webhook_url": LEAD_HOOK}}})


@pytest.mark.parametrize(("swept_at", "told"), [
    (jst(24, 10, 5), ["sla_breach", "sla_breach"]),
    (jst(24, 10, 10), ["sla_breach", "sla_breach", "sla_escalation"])],
    ids=["after-the-breach", "after-the-escalation"])
async def test_a_stop_in_time_handled_after_the_breach_alert_is_followed_by_word_it_was_met(
        database: NotifierDatabase, swept_at: datetime, told: list[str]) -> None:
    config, lead_channel = WITH_LEAD, destination_of(WITH_LEAD, LEAD_HOOK)
    event = promoted(at=jst(24, 10, 0), trigger=TouchpointType.INQUIRY_DEMO_REQUEST)
    await handle(database, config, event)  # due 10:05, escalated at 10:10
    await sweep(database, swept_at, config)
    alerted = [row for row in await alert_rows(database) if row.kind != "hot_lead"]
    assert [row.kind for row in alerted] == told
    # The lead was accepted at 10:03, but lead.promoted was behind: its event comes after
    # the sweep alerted the breach, and is delivered twice.
    accepted = promoted(event.lead_id, at=jst(24, 10, 3), from_stage=S.MQL, to_stage=S.SAL,
                        owner_id="rep-1")
    await handle(database, config, accepted, accepted)
    await sweep(database, jst(24, 12, 0), config)
    [acceptance, _] = await clocks(database, event.lead_id)
    assert (acceptance.status, acceptance.stopped_at) == ("met", jst(24, 10, 3))
    cleared = [row for row in await alert_rows(database) if row.kind == "sla_cleared"]
    assert [row.channel for row in cleared] == list(dict.fromkeys(
        row.channel for row in alerted)), "once to everyone who heard of the breach"
    assert {row.channel for row in cleared} == (
        {TEAM, MANAGER, lead_channel} if "sla_escalation" in told else {TEAM, MANAGER})
    assert {row.clock_id for row in cleared} == {acceptance.id}
    message = cleared[0].message
    assert message["title"] == "✅ SLA違反の取り消し(期限内に完了): 株式会社サンプル製作所"
    for said in ("待っていること: MQLの受け入れ(SAL)", "完了: 2026-11-24 10:03 JST (期限内)",
                 "期限: 2026-11-24 10:05 JST",
                 "先ほどのSLA違反の通知は、期限内に完了していたことが分かる前に送られたものです"):
        assert said in message["body"], said


async def test_word_a_breach_was_met_goes_where_the_breach_alert_went_not_to_a_new_owner(
        database: NotifierDatabase) -> None:
    # The unowned MQL's breach went to the team channel; the rep who accepted it (in time,
    # but handled late) has a channel of their own, which never heard of the breach.
    rep_hook = "https://hooks.slack.com/services/T/B/rep-1"
    config = configure(TEAM_HOOK, manager={"slack_webhook_url": MANAGER_HOOK},
                       reps={"rep-1": {"slack_webhook_url": rep_hook}})
    event = promoted(at=jst(24, 10, 0), trigger=TouchpointType.INQUIRY_DEMO_REQUEST)
    await handle(database, config, event)
    await sweep(database, jst(24, 10, 5), config)
    await handle(database, config, promoted(event.lead_id, at=jst(24, 10, 3),
                                            from_stage=S.MQL, to_stage=S.SAL,
                                            owner_id="rep-1"))
    rows = await alert_rows(database)
    breach = [row.channel for row in rows if row.kind == "sla_breach"]
    assert [row.channel for row in rows if row.kind == "sla_cleared"] == breach == [
        TEAM, MANAGER]


@pytest.mark.parametrize(("accepted_at", "swept_first"), [
    (jst(24, 10, 3), False), (jst(24, 10, 7), True), (jst(24, 10, 7), False)],
    ids=["in-time-before-the-due-time", "late-after-the-breach-alert", "late-unswept"])
async def test_a_stop_that_leaves_no_false_breach_alert_sends_no_word_of_one(
        database: NotifierDatabase, accepted_at: datetime, swept_first: bool) -> None:
    event = promoted(at=jst(24, 10, 0), trigger=TouchpointType.INQUIRY_DEMO_REQUEST)
    await handle(database, CONFIG, event)
    if swept_first:
        await sweep(database, jst(24, 10, 5))
    await handle(database, CONFIG, promoted(event.lead_id, at=accepted_at, from_stage=S.MQL,
                                            to_stage=S.SAL, owner_id="rep-1"))
    await sweep(database, jst(24, 12, 0))
    late = accepted_at > jst(24, 10, 5)
    assert [kind for kind, _ in await kinds(database)] == (
        ["hot_lead", "sla_breach", "sla_breach"] if late else ["hot_lead"])


async def test_timers_survive_restarts_and_fire_once_with_several_replicas(
        database: NotifierDatabase) -> None:
    events = [promoted(at=jst(24, 10, 0), trigger=TouchpointType.INQUIRY_DEMO_REQUEST)
              for _ in range(30)]
    await handle(database, CONFIG, *events)
    replicas = [create_engine(database.url) for _ in range(3)]
    try:
        sweepers = [TimerSweeper(unit_of_work_factory(engine, store.plumbing, SOURCE),
                                 CONFIG.policy, ManualClock(jst(24, 10, 20)))
                    for engine in replicas]
        advanced = await asyncio.gather(*(sweeper.fire_due() for sweeper in sweepers))
    finally:
        for engine in replicas:
            await engine.dispose()
    assert sum(advanced) == len(events), f"each clock advanced by one replica: {advanced}"
    breaches = [row for row in await alert_rows(database) if row.kind != "hot_lead"]
    assert len(breaches) == len(events) * 3  # breach to team and manager, escalation


async def test_a_rung_waiting_with_the_hot_lead_alert_goes_out_in_one_digest(
        database: NotifierDatabase) -> None:
    # Both alerts carry the lead's buttons; Slack refuses a message repeating a block_id.
    async with StrictSlack().running() as slack:
        config = configure(slack.webhook_url)
        hot_leads = [promoted(at=jst(24, 10, 0), trigger=TouchpointType.INQUIRY_DEMO_REQUEST)
                     for _ in range(2)]
        await handle(database, config, *hot_leads)
        await sweep(database, jst(24, 10, 3), config)
        async with delivering(database, config, slack_interval=timedelta(0)):
            await wait_until(lambda: settled(database), 20, "the alerts to be delivered")
    [message] = slack.messages
    first, *alerts = message.body["text"].splitlines()[:5]
    assert first == "📬 通知まとめ: 4件"
    assert [alert.split(":")[0] for alert in alerts] == ["🔥 ホットリード"] * 2 + [
        "⏰ SLAリマインド"] * 2
    assert lead_ids_in(message) == [str(event.lead_id) for event in hot_leads]
    assert [row.digest_size for row in await alert_rows(database)] == [4] * 4


def scored(lead_id: uuid.UUID, at: datetime, *, tier: Tier = Tier.B,
           previous: Tier | None = Tier.C, surge: bool = False) -> LeadScored:
    return LeadScored(
        lead_id=lead_id, scored_at=at, score=62, tier=tier, previous_tier=previous, surge=surge,
        reasons=[ScoreReason(code="page_view.pricing", label="料金ページ閲覧", points=10)],
        model_version="v1", source="web-form",
        profile=LeadProfile(email="hanako@example.co.jp", name="佐藤 花子"),
        account=Account(account_key="example.co.jp", company_name="例示商事株式会社"))


async def handle_scored(database: NotifierDatabase, *events: LeadScored) -> None:
    """Run the lead.scored handler on ``events`` as one batch, in one unit of work."""
    async with database.unit_of_work() as uow:
        await handlers.on_leads_scored(events, uow, policy=CONFIG.policy)
        await uow.commit()


async def test_a_tier_b_lead_waits_three_business_days_for_its_first_touch(
        database: NotifierDatabase) -> None:
    lead_id = uuid.uuid4()
    await handle_scored(database, scored(lead_id, jst(20, 15, 0)))
    [clock] = await clocks(database, lead_id)
    assert (clock.kind, clock.due_at) == ("first_touch", jst(26, 15, 0))
    await handle(database, CONFIG, promoted(lead_id, at=jst(25, 9, 0), to_stage=S.LEAD,
                                            owner_id="rep-9"))
    [clock, _] = await clocks(database, lead_id)
    assert (clock.status, clock.stopped_at) == ("met", jst(25, 9, 0))


async def test_a_score_seen_after_a_newer_lifecycle_event_is_recorded_met_by_it(
        database: NotifierDatabase) -> None:
    # The surge of 11:00 waited for a first touch; the rep's move of 12:00, handled first,
    # was it, in time: the clock is born met, and nothing is open or alerted for it.
    lead_id = uuid.uuid4()
    await handle(database, CONFIG, promoted(lead_id, at=jst(24, 12, 0), to_stage=S.LEAD,
                                            owner_id="rep-9"))
    await handle_scored(database, scored(lead_id, jst(24, 11, 0), surge=True))
    assert [(clock.kind, clock.status, clock.stopped_at)
            for clock in await clocks(database, lead_id)] == [
        ("owner_activity", "open", None), ("first_touch", "met", jst(24, 12, 0))]
    assert await kinds(database) == []


async def test_a_score_seen_after_the_automatic_mql_is_recorded_superseded_by_it(
        database: NotifierDatabase) -> None:
    # The surge of 11:00 waited for a first touch; the score that made the lead an MQL at
    # 12:00, handled first, touched nobody: the MQL clock took over, and the first-touch
    # clock is born superseded, not met.
    lead_id = uuid.uuid4()
    await handle(database, CONFIG, promoted(lead_id, at=jst(24, 12, 0)))
    await handle_scored(database, scored(lead_id, jst(24, 11, 0), surge=True))
    assert [(clock.kind, clock.status, clock.stopped_at)
            for clock in await clocks(database, lead_id)] == [
        ("mql_acceptance", "open", None), ("first_touch", "superseded", jst(24, 12, 0))]
    assert [kind for kind, _ in await kinds(database)] == ["hot_lead"]


async def test_a_score_seen_after_a_late_automatic_mql_reports_a_breach_nobody_completed(
        database: NotifierDatabase) -> None:
    # Tier B on Friday 20th 15:00 waited for a first touch until Thursday 26th 15:00; the
    # MQL of 16:00, handled first, took the clock over an hour late.
    lead_id = uuid.uuid4()
    await handle(database, CONFIG, promoted(lead_id, at=jst(26, 16, 0)))
    await handle_scored(database, scored(lead_id, jst(20, 15, 0)))
    first_touch = [c for c in await clocks(database, lead_id) if c.kind == "first_touch"]
    assert [(c.status, c.stopped_at) for c in first_touch] == [("breached", jst(26, 16, 0))]
    breaches = [row for row in await alert_rows(database) if row.kind == "sla_breach"]
    assert len(breaches) == 2, "to the team and the manager"
    assert all(row.message["title"].startswith("🚨 SLA違反:") for row in breaches), \
        "taken over by the MQL clock, the first touch was never completed"


@pytest.mark.parametrize("swept_first", [False, True], ids=["in-time", "handled-after-the-alert"])
async def test_the_automatic_mql_supersedes_an_open_first_touch_clock_but_not_a_late_one(
        database: NotifierDatabase, swept_first: bool) -> None:
    on_time, late = uuid.uuid4(), uuid.uuid4()
    await handle_scored(database, scored(on_time, jst(20, 15, 0)), scored(late, jst(20, 15, 0)))
    if swept_first:  # lead.promoted was behind: the sweep reported both breaches first
        await sweep(database, jst(26, 15, 0))
    await handle(database, CONFIG, promoted(on_time, at=jst(24, 12, 0)),
                 promoted(late, at=jst(26, 16, 0)))  # due at 15:00 on the 26th
    first_touch = {lead_id: next((c.status, c.stopped_at) for c in await clocks(database, lead_id)
                                 if c.kind == "first_touch") for lead_id in (on_time, late)}
    # A breach alert is not taken back: the clock it was about counts breached.
    assert first_touch == {on_time: ("breached" if swept_first else "superseded", jst(24, 12, 0)),
                           late: ("breached", jst(26, 16, 0))}
    breaches = [row.lead_id for row in await alert_rows(database) if row.kind == "sla_breach"]
    reported = [late, on_time] if swept_first else [late]
    assert sorted(breaches) == sorted(reported * 2), \
        "a late stop is still a breach, reported once to the team and the manager"
    assert "sla_cleared" not in [kind for kind, _ in await kinds(database)], \
        "a clock taken over after its breach alert stays breached"
    assert all("期限後に完了" not in row.message["title"] for row in await alert_rows(database)), \
        "taken over by the MQL clock, the first touch was never completed"


async def test_a_surge_during_the_tier_b_wait_brings_the_first_touch_due_forward(
        database: NotifierDatabase) -> None:
    # Monday 16th 10:00 tier B (due Thursday 10:00), 11:00 a surge (due Tuesday 11:00):
    # the two are one kind of clock, and the earlier due time is the one that counts.
    lead_id = uuid.uuid4()
    surge = scored(lead_id, jst(16, 11), previous=Tier.B, surge=True)
    await handle_scored(database, scored(lead_id, jst(16, 10)))
    await handle_scored(database, surge)
    await handle_scored(database, surge)  # delivered twice: nothing more changes
    tier_b, surged = await clocks(database, lead_id)
    assert (tier_b.rule, tier_b.status, tier_b.stopped_at) == (
        "first_touch", "superseded", jst(16, 11))
    assert (surged.rule, surged.status, surged.started_at, surged.due_at) == (
        "first_touch_surge", "open", jst(16, 11), jst(17, 11))
    await sweep(database, jst(19, 10, 30))  # past both due times
    assert [(row.kind, row.clock_id) for row in await alert_rows(database)] == [
        ("sla_breach", surged.id), ("sla_breach", surged.id), ("sla_escalation", surged.id)]
    assert [clock.rungs_fired for clock in await clocks(database, lead_id)] == [0, 3]


async def test_a_surge_handled_after_the_tier_b_breach_alert_leaves_that_breach_standing(
        database: NotifierDatabase) -> None:
    # The same surge as above, its lead.scored handled late: after the sweep alerted the
    # tier-B clock's breach on Thursday.
    lead_id = uuid.uuid4()
    await handle_scored(database, scored(lead_id, jst(16, 10)))
    await sweep(database, jst(19, 10, 30))
    await handle_scored(database, scored(lead_id, jst(16, 11), previous=Tier.B, surge=True))
    await sweep(database, jst(19, 11))
    [tier_b] = await clocks(database, lead_id)
    assert (tier_b.rule, tier_b.status, tier_b.rungs_fired) == ("first_touch", "open", 2)
    assert [(row.kind, row.clock_id) for row in await alert_rows(database)] == [
        ("sla_breach", tier_b.id), ("sla_breach", tier_b.id)], \
        "the wait was alerted once: no second breach, no escalation of a surge clock"


async def test_a_later_due_time_never_loosens_an_open_clock(
        database: NotifierDatabase) -> None:
    # A surge on Monday (due Tuesday); on Wednesday the lead falls to C and comes back to B.
    lead_id = uuid.uuid4()
    await handle_scored(database, scored(lead_id, jst(16, 11), previous=Tier.B, surge=True))
    await handle_scored(database, scored(lead_id, jst(18, 10)))
    [clock] = await clocks(database, lead_id)
    assert (clock.rule, clock.status, clock.due_at) == ("first_touch_surge", "open",
                                                        jst(17, 11))


@pytest.mark.parametrize("first_rule", ["first_touch", "first_touch_surge"])
async def test_two_replicas_starting_first_touch_clocks_at_once_keep_the_earlier_due(
        database: NotifierDatabase, first_rule: str) -> None:
    # One replica opens a clock and has not committed; the other starts the lead's other
    # clock meanwhile: the clock it meets was not there when its statement began.
    lead_id, rules = uuid.uuid4(), CONFIG.policy.rules.by_name()
    other_rule = {"first_touch": "first_touch_surge"}.get(first_rule, "first_touch")
    starts = {"first_touch": jst(16, 10), "first_touch_surge": jst(16, 11)}

    async def start(uow: UnitOfWork, name: str) -> None:
        rule = rules[name]
        await store.start_clocks(uow.connection, [
            (lead_id, rule, plan_clock(rule, starts[name], CONFIG.policy.calendar))])

    async def start_other() -> None:
        async with database.unit_of_work() as uow:
            await start(uow, other_rule)
            await uow.commit()

    async with database.unit_of_work() as first:
        await start(first, first_rule)
        other = asyncio.create_task(start_other())
        await wait_until(lambda: waiting_for_a_lock(database.engine), 10,
                         "the other replica to wait for the first")
        await first.commit()
    await other
    found = [(clock.rule, clock.status) for clock in await clocks(database, lead_id)]
    assert [rule for rule, status in found if status == "open"] == ["first_touch_surge"]
    assert len(found) == (2 if first_rule == "first_touch" else 1)


async def test_a_batch_of_scores_starts_the_clocks_handling_them_one_by_one_would(
        database: NotifierDatabase) -> None:
    def scenario(tier_b: uuid.UUID, hot: uuid.UUID, handled: uuid.UUID, twice: uuid.UUID,
                 surged: uuid.UUID) -> list[LeadScored]:
        return [scored(tier_b, jst(24, 11)), scored(hot, jst(24, 11), tier=Tier.A),
                scored(handled, jst(24, 11), surge=True),
                scored(twice, jst(24, 11), surge=True), scored(twice, jst(24, 12)),
                scored(surged, jst(24, 11)), scored(surged, jst(24, 12), surge=True)]

    def leads() -> list[uuid.UUID]:
        return [uuid.uuid4() for _ in range(5)]

    async def outcome(lead_ids: list[uuid.UUID]) -> list[list[tuple[str, str, datetime, str]]]:
        return [[(clock.kind, clock.rule, clock.due_at, clock.status)
                 for clock in await clocks(database, lead)] for lead in lead_ids]

    one_by_one, batched = leads(), leads()
    for lead_ids, run in ((one_by_one, False), (batched, True)):
        await handle(database, CONFIG, promoted(lead_ids[2], at=jst(24, 12)))
        events = scenario(*lead_ids)
        if run:
            await handle_scored(database, *events)
        else:
            for event in events:
                await handle_scored(database, event)
    assert await outcome(batched) == await outcome(one_by_one)
    assert await outcome(batched) == [
        [("first_touch", "first_touch", jst(27, 11), "open")], [],
        [("mql_acceptance", "mql_acceptance", jst(24, 13), "open"),
         ("first_touch", "first_touch_surge", jst(25, 11), "superseded")],  # by the MQL clock
        [("first_touch", "first_touch_surge", jst(25, 11), "open")],
        [("first_touch", "first_touch", jst(27, 11), "superseded"),
         ("first_touch", "first_touch_surge", jst(25, 12), "open")]]


async def test_a_batch_of_promotions_moves_clocks_and_alerts_as_one_by_one_would(
        database: NotifierDatabase) -> None:
    """A hot lead; an MQL accepted after its due time (a late stop); a lead moved twice."""
    def scenario(hot: uuid.UUID, late: uuid.UUID, twice: uuid.UUID) -> list[LeadPromoted]:
        return [promoted(hot, at=jst(24, 10)),
                promoted(late, at=jst(24, 10), from_stage=S.MQL, to_stage=S.SAL,
                         owner_id="rep-9"),
                promoted(twice, at=jst(24, 10)),
                promoted(twice, at=jst(24, 10, 30), from_stage=S.MQL, to_stage=S.SAL,
                         owner_id="rep-9")]

    async def outcome(lead_ids: list[uuid.UUID]) -> list[Any]:
        alerted = await alert_rows(database)
        return [([(c.kind, c.status, c.due_at, c.stopped_at) for c in await clocks(database, lead)],
                 [(row.kind, row.channel) for row in alerted if row.lead_id == lead])
                for lead in lead_ids]

    one_by_one, batched = [uuid.uuid4() for _ in range(3)], [uuid.uuid4() for _ in range(3)]
    for lead_ids, together in ((one_by_one, False), (batched, True)):
        await handle(database, CONFIG, promoted(lead_ids[1], at=jst(20, 10)))
        events = scenario(*lead_ids)
        if together:
            async with database.unit_of_work() as uow:
                await handlers.on_leads_promoted(events, uow, policy=CONFIG.policy)
                await uow.commit()
        else:
            await handle(database, CONFIG, *events)
    assert await outcome(batched) == await outcome(one_by_one)
    hot, late, twice = await outcome(batched)
    assert [(kind, status) for kind, status, *_ in hot[0]] == [("mql_acceptance", "open")]
    assert [kind for kind, _ in hot[1]] == ["hot_lead"]
    assert [(kind, status) for kind, status, *_ in late[0]] == [
        ("mql_acceptance", "breached"), ("owner_activity", "open")]
    assert [kind for kind, _ in late[1]] == ["hot_lead", "sla_breach", "sla_breach"]
    assert [(kind, status) for kind, status, *_ in twice[0]] == [
        ("mql_acceptance", "met"), ("owner_activity", "open")]


async def test_deals_won_and_recycled_are_alerted_to_owner_and_team_and_move_clocks(
        database: NotifierDatabase) -> None:
    lead_id, deal_id = uuid.uuid4(), uuid.uuid4()
    rep_hook = "https://hooks.slack.com/services/T/B/fs-1"
    config = configure(TEAM_HOOK, reps={"fs-1": {"slack_webhook_url": rep_hook}})
    rep = destination_of(config, rep_hook)
    team = destination_of(config, TEAM_HOOK)
    await handle(database, config, promoted(lead_id, at=jst(24, 10), from_stage=S.SAL,
                                            to_stage=S.SQL, owner_id="fs-1",
                                            team="field_sales"))

    async def deal(from_phase: DealPhase | None, to_phase: DealPhase, at: datetime) -> None:
        async with database.unit_of_work() as uow:
            await handlers.on_deal_phase_changed(DealPhaseChanged(
                deal_id=deal_id, lead_id=lead_id, occurred_at=at, from_phase=from_phase,
                to_phase=to_phase, probability=50, owner_id="fs-1", amount=3_600_000), uow,
                policy=config.policy)
            await uow.commit()

    await deal(None, DealPhase.P1, jst(24, 10, 1))
    states = {(c.kind, c.status) for c in await clocks(database, lead_id)}
    assert ("first_contact", "open") in states, "pipeline opening the deal is not a contact"
    await deal(DealPhase.P1, DealPhase.P2, jst(24, 15))
    first_contact = next(c for c in await clocks(database, lead_id) if c.kind == "first_contact")
    assert first_contact.status == "open", "an advance is activity, not a contact logged"
    await deal(DealPhase.P4, DealPhase.WON, jst(24, 16))
    first_contact = next(c for c in await clocks(database, lead_id) if c.kind == "first_contact")
    assert (first_contact.status, first_contact.stopped_at) == ("met", jst(24, 16))
    async with database.unit_of_work() as uow:
        await handlers.on_deal_recycled(DealRecycled(
            deal_id=deal_id, lead_id=lead_id, recycled_at=jst(26, 9), last_phase=DealPhase.P3,
            reason="90日間フェーズ変更なし"), uow, policy=config.policy)
        await uow.commit()
    rows = [row for row in await alert_rows(database) if row.kind.startswith("deal")]
    assert [(row.kind, row.channel) for row in rows] == [
        ("deal_won", rep), ("deal_won", team), ("deal_recycled", rep), ("deal_recycled", team)]
    assert "¥3,600,000" in rows[0].message["body"]
    assert "90日間フェーズ変更なし" in rows[2].message["body"]
    assert all(c.status != "open" for c in await clocks(database, lead_id))


async def test_a_reps_name_is_the_one_given_last_whatever_order_it_arrives_in(
        database: NotifierDatabase) -> None:
    async def record(name: str, at: datetime) -> None:
        async with database.unit_of_work() as uow:
            await store.record_rep_names(uow.connection, {"sato": (name, at)})
            await uow.commit()

    async def name() -> str | None:
        async with database.engine.connect() as connection:
            return await store.rep_name(connection, "sato")

    # Named A, renamed B, renamed back to A; the event naming B arrives last.
    for given, at in (("佐藤 花子", jst(24, 9)), ("佐藤 花子", jst(24, 11)),
                      ("鈴木 花子", jst(24, 10))):
        await record(given, at)
    assert await name() == "佐藤 花子"

    # Two lanes name a rep the notifier never heard of; the older commits first.
    async with database.unit_of_work() as older:
        await store.record_rep_names(older.connection, {"tanaka": ("田中 一郎", jst(24, 9))})
        async with database.unit_of_work() as newer:
            naming = asyncio.create_task(store.record_rep_names(
                newer.connection, {"tanaka": ("田中 一朗", jst(24, 10))}))
            await wait_until(lambda: waiting_or_done(database, naming), 10,
                             "the newer name to wait for the older one's insert")
            await older.commit()
            await naming
            await newer.commit()
    async with database.engine.connect() as connection:
        assert await store.rep_name(connection, "tanaka") == "田中 一朗"


async def waiting_or_done(database: NotifierDatabase, task: asyncio.Task[None]) -> bool:
    """Return True once ``task`` finished or a session of the database waits for a lock."""
    return task.done() or await waiting_for_a_lock(database.engine)


async def test_alerts_show_reps_by_the_names_routing_gave_them(
        database: NotifierDatabase) -> None:
    hot_id, sql_id, unnamed_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await handle(database, CONFIG,
                 promoted(hot_id, at=jst(24, 10), owner_id="sato", owner_name="佐藤 花子"),
                 promoted(sql_id, at=jst(24, 10), from_stage=S.SAL, to_stage=S.SQL,
                          owner_id="fs-1", owner_name="田中 一郎", team="field_sales"),
                 promoted(unnamed_id, at=jst(24, 10), owner_id="rep-9"))
    await sweep(database, jst(24, 11, 1))  # the hot lead's hour to be accepted is over
    # Renamed in routing's directory: the next event about any of the rep's leads says so.
    await handle(database, CONFIG, promoted(sql_id, at=jst(24, 12), from_stage=S.SQL,
                                            to_stage=S.SQL, owner_id="fs-1",
                                            owner_name="田中 一朗", team="field_sales"))
    # An event from before the rename, delivered late (its partition's lane was behind).
    await handle(database, CONFIG, promoted(uuid.uuid4(), at=jst(24, 11), from_stage=S.SAL,
                                            to_stage=S.SQL, owner_id="fs-1",
                                            owner_name="田中 一郎", team="field_sales"))
    for deal_id, owner_id in ((uuid.uuid4(), "fs-1"), (uuid.uuid4(), "sato")):
        async with database.unit_of_work() as uow:
            await handlers.on_deal_phase_changed(DealPhaseChanged(
                deal_id=deal_id, lead_id=sql_id, occurred_at=jst(24, 16),
                from_phase=DealPhase.P5, to_phase=DealPhase.WON, probability=100,
                owner_id=owner_id, amount=1_000_000), uow, policy=CONFIG.policy)
            await uow.commit()

    def owners(kind: str) -> list[str]:
        return [line.removeprefix("担当: ") for row in rows if row.kind == kind
                for line in row.message["body"].splitlines() if line.startswith("担当: ")]

    rows = [row for row in await alert_rows(database) if row.channel == TEAM]
    assert owners("hot_lead") == ["佐藤 花子 (sato)", "rep-9"], "an owner never named: the id"
    assert owners("sla_breach") == ["佐藤 花子 (sato)", "rep-9"]
    # A deal's owner other than its lead's (sato) is named as last heard, too.
    assert owners("deal_won") == ["田中 一朗 (fs-1)", "佐藤 花子 (sato)"]
    hot = next(row for row in rows if row.kind == "hot_lead")
    assert "佐藤 花子 (sato)" in str(hot.message["blocks"]), "Slack shows the name as e-mail does"


async def test_a_hot_lead_given_from_the_queue_is_alerted_to_its_owner_on_the_same_clock(
        database: NotifierDatabase) -> None:
    lead_id = uuid.uuid4()
    sato_hook = "https://hooks.slack.com/services/T/B/sato"
    config = configure(TEAM_HOOK, reps={"sato": {"slack_webhook_url": sato_hook}})
    sato, team = destination_of(config, sato_hook), destination_of(config, TEAM_HOOK)
    # Scored at night, nobody working: queued for the team; routing gives it at 09:05.
    await handle(database, config, promoted(lead_id, at=jst(18, 20)))
    await handle(database, config, promoted(lead_id, at=jst(19, 9, 5), from_stage=S.MQL,
                                            to_stage=S.MQL, owner_id="sato",
                                            owner_name="佐藤 花子"))

    rows = await alert_rows(database)
    assert [(row.kind, row.channel) for row in rows] == [
        ("hot_lead", team), ("hot_lead", sato), ("hot_lead", team)]
    given = rows[1].message["body"]
    assert "佐藤 花子 (sato)" in given
    # One business hour from 09:00, when the clock started: the hand-out restarts nothing.
    assert "2026-11-19 10:00 JST" in given
    [acceptance] = [c for c in await clocks(database, lead_id) if c.kind == "mql_acceptance"]
    assert (acceptance.status, acceptance.due_at) == ("open", jst(19, 10))
    await sweep(database, jst(19, 10, 1), config)
    breaches = [row.channel for row in await alert_rows(database) if row.kind == "sla_breach"]
    assert sato in breaches, "the breach goes to the rep who was given the lead"


async def test_a_deal_edit_is_activity_but_only_a_logged_contact_meets_the_first_contact(
        database: NotifierDatabase) -> None:
    lead_id, deal_id = uuid.uuid4(), uuid.uuid4()
    await handle(database, CONFIG, promoted(lead_id, at=jst(24, 10), from_stage=S.SAL,
                                            to_stage=S.SQL, owner_id="fs-1",
                                            team="field_sales"))
    for from_phase, at in ((None, jst(24, 10, 1)), (DealPhase.P1, jst(24, 11))):
        # pipeline opens the deal; then the rep edits its amount (P1 -> P1)
        async with database.unit_of_work() as uow:
            await handlers.on_deal_phase_changed(DealPhaseChanged(
                deal_id=deal_id, lead_id=lead_id, occurred_at=at, from_phase=from_phase,
                to_phase=DealPhase.P1, probability=10, owner_id="fs-1", amount=1_200_000),
                uow, policy=CONFIG.policy)
            await uow.commit()
    states = {c.kind: (c.status, c.started_at) for c in await clocks(database, lead_id)
              if c.status == "open"}
    assert states["first_contact"] == ("open", jst(24, 10))
    assert states["owner_activity"] == ("open", jst(24, 11)), "the edit is the rep's activity"
    contact = promoted(lead_id, at=jst(24, 14), from_stage=S.SQL, to_stage=S.SQL,
                       owner_id="fs-1", team="field_sales").model_copy(
                           update={"contact": ContactKind.CALL})
    await handle(database, CONFIG, contact)
    first_contact = next(c for c in await clocks(database, lead_id) if c.kind == "first_contact")
    assert (first_contact.status, first_contact.stopped_at) == ("met", jst(24, 14))


def stale_change(lead_id: uuid.UUID, deal_id: uuid.UUID) -> DealPhaseChanged:
    """Return a change of the lead's deal made a minute before it was recycled."""
    return DealPhaseChanged(deal_id=deal_id, lead_id=lead_id, occurred_at=jst(26, 8, 59),
                            from_phase=DealPhase.P2, to_phase=DealPhase.P2, probability=30,
                            owner_id="fs-1")


async def recycle(uow: UnitOfWork, lead_id: uuid.UUID, deal_id: uuid.UUID) -> None:
    """Handle the recycling of the lead's deal at 9:00 on the 26th in ``uow``."""
    await handlers.on_deal_recycled(DealRecycled(
        deal_id=deal_id, lead_id=lead_id, recycled_at=jst(26, 9), last_phase=DealPhase.P2,
        reason="90日間フェーズ変更なし"), uow, policy=CONFIG.policy)


async def field_sales_lead(database: NotifierDatabase) -> uuid.UUID:
    """Return an SQL handed to fs-1 on the 24th."""
    lead_id = uuid.uuid4()
    await handle(database, CONFIG, promoted(lead_id, at=jst(24, 10), from_stage=S.SAL,
                                            to_stage=S.SQL, owner_id="fs-1",
                                            team="field_sales"))
    return lead_id


async def nurture(database: NotifierDatabase, lead_id: uuid.UUID) -> None:
    """Handle the lead's return to nurture, just after its deal's recycling."""
    await handle(database, CONFIG, promoted(lead_id, at=jst(26, 9, 1),
                                            from_stage=S.OPPORTUNITY, to_stage=S.NURTURE,
                                            team=None))


async def test_a_deal_change_delivered_after_its_recycling_starts_no_clock(
        database: NotifierDatabase) -> None:
    # deal.phase_changed and deal.recycled are different topics: a change made before the
    # recycling may arrive after it, and after the lead's return to nurture.
    lead_id, deal_id = await field_sales_lead(database), uuid.uuid4()
    async with database.unit_of_work() as uow:
        await recycle(uow, lead_id, deal_id)
        await uow.commit()
    await nurture(database, lead_id)
    async with database.unit_of_work() as uow:
        await handlers.on_deal_phase_changed(stale_change(lead_id, deal_id), uow,
                                             policy=CONFIG.policy)
        await uow.commit()
    assert [c.kind for c in await clocks(database, lead_id) if c.status == "open"] == []


async def test_a_deal_change_handled_beside_its_recycling_cannot_undo_it(
        database: NotifierDatabase) -> None:
    # Two replicas, after the lead went back to nurture: the change is handled while the
    # recycling is not yet committed.
    lead_id, deal_id = await field_sales_lead(database), uuid.uuid4()
    await nurture(database, lead_id)

    async def handle_change() -> None:
        async with database.unit_of_work() as uow:
            await handlers.on_deal_phase_changed(stale_change(lead_id, deal_id), uow,
                                                 policy=CONFIG.policy)
            await uow.commit()

    async with database.unit_of_work() as recycling:
        await recycle(recycling, lead_id, deal_id)
        changing = asyncio.create_task(handle_change())
        await wait_until(lambda: waiting_for_a_lock(database.engine), 10,
                         "the change to wait for the recycling")
        await recycling.commit()
    await changing
    assert [c.kind for c in await clocks(database, lead_id) if c.status == "open"] == []


async def test_a_deal_won_for_more_than_a_bigint_holds_is_alerted(
        database: NotifierDatabase) -> None:
    # The contract allows any non-negative amount; the notifier once stored it in a bigint,
    # which refused this one, so the event failed every attempt.
    lead_id, amount = uuid.uuid4(), 2**63
    async with database.unit_of_work() as uow:
        await handlers.on_deal_phase_changed(DealPhaseChanged(
            deal_id=uuid.uuid4(), lead_id=lead_id, occurred_at=jst(25, 15),
            from_phase=DealPhase.P5, to_phase=DealPhase.WON, probability=100,
            owner_id="fs-1", amount=amount), uow, policy=CONFIG.policy)
        await uow.commit()
    [won, *_] = [row for row in await alert_rows(database) if row.lead_id == lead_id]
    assert won.kind == "deal_won" and f"¥{amount:,}" in won.message["body"]


async def test_the_clock_list_filters_by_the_state_it_shows_overdue_included(
        database: NotifierDatabase) -> None:
    late = promoted(at=jst(20, 17, 30))  # due Tuesday 24th 09:30
    fresh = promoted(at=jst(24, 10, 0))  # due 11:00 the same day
    await handle(database, CONFIG, late, fresh)
    app = create_app(service="notifier", version="test", routers=[api.router], readiness={})
    app.state.context = ServiceContext("notifier", None, database.engine, database.unit_of_work,
                                       ManualClock(jst(24, 10, 30)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://notifier") as client:
        listed = {state: (await client.get("/v1/sla/clocks", params={"status": state})).json()
                  for state in ("overdue", "open")}
        every = (await client.get("/v1/sla/clocks")).json()
    assert [(c["lead_id"], c["state"]) for c in listed["overdue"]] == [
        (str(late.lead_id), "overdue")]
    assert [(c["lead_id"], c["state"]) for c in listed["open"]] == [(str(fresh.lead_id), "open")]
    assert sorted(c["state"] for c in every) == ["open", "overdue"]
