"""First-touch clocks of scores handled after the lifecycle event that touched the lead.

lead.scored and lead.promoted are consumed independently: a score may be handled after a
lifecycle event that happened later. Its clock is judged by the events' times: a late
first touch is a breach, reported once; one in time is met; a score made after the lead
was handled starts nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from schemas.events import LeadPromoted, LeadScored, LifecycleStage, Tier
from services.notifier import handlers
from services.notifier.config import NotifierConfig
from tests.integration.test_notifier_delivery import (
    NotifierDatabase,
    alert_rows,
    configure,
    delivering,
    handle,
    notifier_database,
    promoted,
    settled,
)
from tests.integration.test_notifier_sla import (
    CONFIG,
    MANAGER,
    TEAM,
    clocks,
    jst,
    scored,
    sweep,
)
from tests.support.fake_slack import FakeSlack
from tests.support.infrastructure import PostgresServer
from tests.support.kafka import wait_until

pytestmark = pytest.mark.integration
S = LifecycleStage


@pytest.fixture
async def database(postgres: PostgresServer) -> AsyncIterator[NotifierDatabase]:
    async with notifier_database(postgres) as created:
        yield created


def tier_b(lead_id: uuid.UUID) -> LeadScored:
    """Return the lead's rise to tier B on Monday 16th 10:00: first touch due Thursday 10:00."""
    return scored(lead_id, jst(16, 10))


def surge(lead_id: uuid.UUID) -> LeadScored:
    """Return the lead's surge on Tuesday 17th 10:00: first touch due Wednesday 10:00."""
    return scored(lead_id, jst(17, 10), previous=Tier.B, surge=True)


def touch(lead_id: uuid.UUID, at: datetime, *, from_stage: LifecycleStage = S.LEAD,
          to_stage: LifecycleStage = S.LEAD) -> LeadPromoted:
    """Return rep-9's lifecycle event on the lead at ``at``, by default a logged contact."""
    return promoted(lead_id, at=at, from_stage=from_stage, to_stage=to_stage, owner_id="rep-9")


async def handle_scores(database: NotifierDatabase, *events: LeadScored,
                        config: NotifierConfig = CONFIG) -> None:
    """Run the lead.scored handler on ``events`` as one batch, in one unit of work."""
    async with database.unit_of_work() as uow:
        await handlers.on_leads_scored(events, uow, policy=config.policy)
        await uow.commit()


async def first_touch(database: NotifierDatabase, lead_id: uuid.UUID
                      ) -> list[tuple[str, str, datetime | None]]:
    """Return (rule, status, stopped_at) of each of the lead's first-touch clocks, oldest
    first."""
    return [(clock.rule, clock.status, clock.stopped_at)
            for clock in await clocks(database, lead_id) if clock.kind == "first_touch"]


async def sla_alerts(database: NotifierDatabase) -> list[Any]:
    """Return every SLA alert recorded, oldest first."""
    return [row for row in await alert_rows(database) if row.kind.startswith("sla")]


@pytest.mark.parametrize(("score", "rule"), [(tier_b, "first_touch"),
                                             (surge, "first_touch_surge")],
                         ids=["tier-b", "surge"])
async def test_a_late_first_touch_handled_before_its_score_is_reported_as_a_breach_once(
        database: NotifierDatabase, score: Callable[[uuid.UUID], LeadScored],
        rule: str) -> None:
    # The rep's first contact is on Friday 20th, after the due time. The notifier, behind on
    # lead.scored, handles it first, then the score, twice (delivered again).
    lead_id = uuid.uuid4()
    async with FakeSlack().running() as slack:
        config = configure(slack.webhook_url)
        await handle(database, config, touch(lead_id, jst(20, 11)))
        await handle_scores(database, score(lead_id), config=config)
        await handle_scores(database, score(lead_id), config=config)
        await handle(database, config, touch(lead_id, jst(20, 11)))  # and the contact too
        await sweep(database, jst(20, 12), config)
        async with delivering(database, config, slack_interval=timedelta(0)):
            await wait_until(lambda: settled(database), 20, "the alerts to be delivered")
    assert await first_touch(database, lead_id) == [(rule, "breached", jst(20, 11))]
    assert [(row.kind, row.status) for row in await alert_rows(database)] == [
        ("sla_breach", "delivered")]
    [message] = slack.messages
    assert message.body["text"].startswith("🚨 SLA違反(期限後に完了): 初回対応")


@pytest.mark.parametrize("score", [tier_b, surge], ids=["tier-b", "surge"])
async def test_a_first_touch_in_time_handled_before_its_score_is_met_without_alerts(
        database: NotifierDatabase, score: Callable[[uuid.UUID], LeadScored]) -> None:
    lead_id = uuid.uuid4()
    await handle(database, CONFIG, touch(lead_id, jst(17, 15)))  # after both scores, in time
    await handle_scores(database, score(lead_id))
    await sweep(database, jst(20, 12))
    [(_, status, stopped_at)] = await first_touch(database, lead_id)
    assert (status, stopped_at) == ("met", jst(17, 15))
    assert await sla_alerts(database) == []


@pytest.mark.parametrize(("earlier", "later"), [
    ((S.LEAD, S.SAL), (S.SAL, S.SQL)),  # accepted before the score, qualified after it
    ((S.LEAD, S.SAL), (S.SAL, S.SAL)),  # a contact logged after it
    ((S.SAL, S.NURTURE), None),  # rejected to nurture before it: the score starts a clock
], ids=["with-sales", "contacted-again", "in-nurture"])
async def test_the_stage_a_score_finds_is_the_one_at_its_time_not_at_its_handling(
        database: NotifierDatabase, earlier: tuple[LifecycleStage, LifecycleStage],
        later: tuple[LifecycleStage, LifecycleStage] | None) -> None:
    # A lifecycle event on Monday 9th, before the score of the 16th; the first touch due on
    # the 19th comes on Friday 20th (late), handled before the score too.
    lead_id = uuid.uuid4()
    from_stage, to_stage = earlier
    await handle(database, CONFIG, touch(lead_id, jst(9, 10), from_stage=from_stage,
                                         to_stage=to_stage))
    after = later or (S.NURTURE, S.SAL)
    await handle(database, CONFIG, touch(lead_id, jst(20, 11), from_stage=after[0],
                                         to_stage=after[1]))
    await handle_scores(database, tier_b(lead_id))
    if later is not None:  # the lead was with sales when scored: no first touch was owed
        assert await first_touch(database, lead_id) == []
        assert await sla_alerts(database) == []
    else:
        assert await first_touch(database, lead_id) == [
            ("first_touch", "breached", jst(20, 11))]
        assert [(row.kind, row.channel) for row in await sla_alerts(database)] == [
            ("sla_breach", TEAM), ("sla_breach", MANAGER)]


async def test_a_score_made_after_the_lead_was_accepted_starts_nothing(
        database: NotifierDatabase) -> None:
    lead_id = uuid.uuid4()
    await handle(database, CONFIG, touch(lead_id, jst(16, 9), to_stage=S.SAL))
    await handle_scores(database, tier_b(lead_id), surge(lead_id))
    assert await first_touch(database, lead_id) == []


@pytest.mark.parametrize("order", ["tier-b-first", "surge-first", "one-batch",
                                   "tier-b-in-time"])
@pytest.mark.parametrize("touched", [jst(19, 9), jst(20, 11)], ids=["thursday", "friday"])
async def test_a_rise_and_a_surge_before_one_late_touch_give_one_breach_in_any_order(
        database: NotifierDatabase, order: str, touched: datetime) -> None:
    # Handled in time: the surge (due Wednesday) replaces the tier-B clock (due Thursday),
    # and the touch, late for the surge, is one breach. "tier-b-in-time": the tier-B clock
    # was open when the touch came; the surge is handled after both.
    lead_id = uuid.uuid4()
    if order == "tier-b-in-time":
        await handle_scores(database, tier_b(lead_id))
    await handle(database, CONFIG, touch(lead_id, touched))
    if order == "one-batch":
        await handle_scores(database, tier_b(lead_id), surge(lead_id))
    else:
        first, second = (surge, tier_b) if order == "surge-first" else (tier_b, surge)
        for score in (first, second):
            await handle_scores(database, score(lead_id))
    found = {rule: (status, stopped_at)
             for rule, status, stopped_at in await first_touch(database, lead_id)}
    assert found["first_touch_surge"] == ("breached", touched)
    assert found.get("first_touch", ("superseded", jst(17, 10))) == ("superseded", jst(17, 10))
    assert [(row.kind, row.channel) for row in await sla_alerts(database)] == [
        ("sla_breach", TEAM), ("sla_breach", MANAGER)]
