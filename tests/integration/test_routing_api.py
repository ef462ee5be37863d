"""Routing's API and Slack actions over real PostgreSQL: assignment, sales actions, funnel."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schemas.events import (
    ContactKind,
    DealPhase,
    DealPhaseChanged,
    DealRecycled,
    LeadPromoted,
    LifecycleStage,
    Tier,
    TouchpointType,
)
from tests.integration.test_routing_harness import (
    WEDNESDAY_10_JST,
    Routing,
    button_click,
    lead_scored,
    running_routing,
    slack_form,
    slack_headers,
)
from tests.support.fake_slack import FakeSlack
from tests.support.infrastructure import PostgresServer

pytestmark = pytest.mark.integration
S = LifecycleStage
JST = ZoneInfo("Asia/Tokyo")


@pytest.fixture
async def routing(postgres: PostgresServer) -> AsyncIterator[Routing]:
    async with running_routing(await postgres.create_database()) as service:
        yield service


async def state(routing: Routing, lead_id: uuid.UUID) -> dict[str, Any]:
    response = await routing.client.get(f"/v1/leads/{lead_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def new_mql(routing: Routing, **changes: Any) -> uuid.UUID:
    """Score a hot lead (it becomes an MQL) and return its id."""
    event = lead_scored(**changes)
    await routing.handle(event)
    return event.lead_id


async def act(routing: Routing, lead_id: uuid.UUID, action: str, **body: Any) -> Any:
    return await routing.client.post(f"/v1/leads/{lead_id}/{action}", json=body)


def field_errors(response: Any) -> set[tuple[str, ...]]:
    """Return the locations named in a 422 response."""
    assert response.status_code == 422, response.text
    return {tuple(str(part) for part in item["loc"]) for item in response.json()["detail"]}


def comparable(event: LeadPromoted) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude={"lead_id"})


async def test_a_rep_whose_weight_changes_takes_turns_at_the_new_weight_at_once(
        routing: Routing) -> None:
    # A new hire ramping at weight 0.1 took a lead, which moved them 10 turns back; at
    # weight 1 they take one in five of the next five, not one after 40 more.
    for rep_id in ("a", "b", "c", "d"):
        await routing.put_rep(rep_id)
    await routing.put_rep("new", weight=0.1)
    owners = [(await state(routing, await new_mql(routing, domain=f"c{i}.co.jp")))["owner_id"]
              for i in range(5)]
    assert owners.count("new") == 1, owners
    await routing.put_rep("new", weight=1)
    owners = [(await state(routing, await new_mql(routing, domain=f"d{i}.co.jp")))["owner_id"]
              for i in range(5)]
    assert owners.count("new") == 1, owners


async def test_a_rep_joining_a_team_of_inactive_reps_starts_level_with_them(
        routing: Routing) -> None:
    # a and b took 20 leads, then were both set inactive; c joined; a and b came back.
    await routing.put_rep("a")
    await routing.put_rep("b")
    for i in range(20):
        await new_mql(routing, domain=f"e{i}.co.jp")
    await routing.put_rep("a", active=False)
    await routing.put_rep("b", active=False)
    await routing.put_rep("c")
    await routing.put_rep("a")
    await routing.put_rep("b")
    owners = [(await state(routing, await new_mql(routing, domain=f"f{i}.co.jp")))["owner_id"]
              for i in range(6)]
    assert sorted(owners) == ["a", "a", "b", "b", "c", "c"], "c at 0 would take all six"


async def test_a_hot_lead_becomes_an_mql_for_the_next_rep_and_the_reason_is_logged(
        routing: Routing) -> None:
    await routing.put_rep("sato", slack_user_id="U0SATO1", weight=2)
    await routing.put_rep("suzuki")
    first, second, third = [await new_mql(routing, domain=f"company{i}.co.jp")
                            for i in range(3)]
    owners = [(await state(routing, lead))["owner_id"] for lead in (first, second, third)]
    assert owners == ["sato", "suzuki", "sato"], "weight 2 takes twice the turns"
    lead = await state(routing, first)
    assert (lead["stage"], lead["team"]) == ("mql", "sdr")
    [decision] = lead["assignments"]
    assert decision["rule"] == "round_robin"
    assert decision["reason"] == "weighted round robin (team sdr) among sato, suzuki"
    assert decision["considered"] == [{"rep_id": "sato", "blocked_because": None},
                                      {"rep_id": "suzuki", "blocked_because": None}]
    mql = (await routing.promoted())[0]
    assert (mql.from_stage, mql.to_stage, mql.owner_id, mql.team) == (S.LEAD, S.MQL, "sato",
                                                                      "sdr")
    assert mql.reason == "tier A at score 85; assigned to sato (round_robin)"
    assert mql.sla_due_at == WEDNESDAY_10_JST + timedelta(hours=1), "one business hour"
    logged = (await routing.client.get("/v1/assignments", params={"rep_id": "sato"})).json()
    assert [d["lead_id"] for d in logged] == [str(third), str(first)]


async def test_the_account_owner_gets_the_accounts_next_lead_but_free_mail_is_no_account(
        routing: Routing) -> None:
    await routing.put_rep("sato")
    await routing.put_rep("suzuki")
    await new_mql(routing, domain="sample.co.jp")  # sato, by round robin
    await new_mql(routing, domain="other.co.jp")  # suzuki
    again = await new_mql(routing, domain="sample.co.jp")
    decision = (await state(routing, again))["assignments"][0]
    assert (decision["rep_id"], decision["rule"]) == ("sato", "account_owner")
    assert decision["reason"] == "sato owns account sample.co.jp"


async def test_an_account_stays_with_its_owner_while_they_are_on_leave(
        routing: Routing) -> None:
    # Rule (1) passes over an owner on leave for that lead only: they are back on Friday,
    # and the account's leads are theirs again.
    await routing.put_rep("sato")
    await routing.put_rep("suzuki")
    await new_mql(routing, domain="sample.co.jp")  # sato, by round robin
    leave = {"starts_at": "2026-11-17T00:00:00+09:00", "ends_at": "2026-11-20T00:00:00+09:00",
             "note": "有給休暇"}
    await routing.put_rep("sato", out_of_office=[leave])
    away = await new_mql(routing, domain="sample.co.jp")
    decision = (await state(routing, away))["assignments"][0]
    assert (decision["rep_id"], decision["rule"]) == ("suzuki", "round_robin")
    routing.clock.now = datetime(2026, 11, 20, 10, 0, tzinfo=JST)
    back = await new_mql(routing, domain="sample.co.jp")
    decision = (await state(routing, back))["assignments"][0]
    assert (decision["rep_id"], decision["rule"]) == ("sato", "account_owner")


async def sato_s_first_mql(routing: Routing) -> uuid.UUID:
    """Return the day's first MQL of team sdr, assigned to sato, whose capacity is one lead a
    day; suzuki is away (so never assigned), but may act on sato's leads."""
    leave = {"starts_at": "2026-11-17T00:00:00+09:00", "ends_at": "2026-11-20T00:00:00+09:00",
             "note": "出張"}
    await routing.put_rep("sato", daily_capacity=1)
    await routing.put_rep("suzuki", out_of_office=[leave])
    first = await new_mql(routing, domain="first.co.jp")
    assert (await state(routing, first))["owner_id"] == "sato"
    return first


async def test_a_lead_a_colleague_took_no_longer_counts_against_the_first_assignee(
        routing: Routing) -> None:
    # suzuki accepts sato's MQL: sato holds nothing and takes the next lead.
    first = await sato_s_first_mql(routing)
    assert (await act(routing, first, "accept", rep_id="suzuki")).status_code == 200
    second = await new_mql(routing, domain="second.co.jp")
    decision = (await state(routing, second))["assignments"][0]
    assert (decision["rep_id"], decision["rule"]) == ("sato", "round_robin"), decision


async def test_a_lead_the_rep_worked_still_counts_when_a_colleague_takes_it_later(
        routing: Routing) -> None:
    # sato rejected her MQL; a demo request made it an MQL again (hers again, as its
    # account's owner), and suzuki took that one: sato still handled one lead today.
    first = await sato_s_first_mql(routing)
    assert (await act(routing, first, "reject", rep_id="sato", reason="時期尚早")
            ).status_code == 200
    await routing.handle(lead_scored(lead_id=first, domain="first.co.jp",
                                     touchpoint=TouchpointType.INQUIRY_DEMO_REQUEST))
    assert (await act(routing, first, "accept", rep_id="suzuki")).status_code == 200
    second = await new_mql(routing, domain="second.co.jp")
    decision = (await state(routing, second))["assignments"][0]
    assert (decision["rep_id"], decision["rule"]) == (None, "queued"), decision


async def test_a_lead_nobody_can_take_waits_in_the_team_queue_and_says_so(
        routing: Routing) -> None:
    leave = {"starts_at": "2026-11-17T00:00:00+09:00", "ends_at": "2026-11-20T00:00:00+09:00",
             "note": "有給休暇"}
    await routing.put_rep("sato", out_of_office=[leave])
    lead_id = await new_mql(routing)
    lead = await state(routing, lead_id)
    assert (lead["stage"], lead["owner_id"], lead["team"]) == ("mql", None, "sdr")
    [decision] = lead["assignments"]
    assert decision["rule"] == "queued"
    assert "sato: out of office until 2026-11-20 00:00 JST" in decision["reason"]
    [event] = await routing.promoted()
    assert event.owner_id is None
    assert event.reason.endswith("queued for team sdr: no rep can take it now")
    queue = (await routing.client.get("/v1/teams/sdr/queue")).json()
    assert [(q["lead_id"], q["company"], q["waiting_since"]) for q in queue] == [
        (str(lead_id), "株式会社サンプル製作所", "2026-11-18T01:00:00Z")]

    accepted = await act(routing, lead_id, "accept", rep_id="sato")  # back early, takes it
    assert accepted.status_code == 200, accepted.text
    assert (await routing.client.get("/v1/teams/sdr/queue")).json() == []
    taken = accepted.json()["assignments"][-1]
    assert (taken["rule"], taken["reason"]) == ("taken", "accepted by sato (from the queue)")


async def test_a_batch_of_scores_ends_as_handling_them_one_by_one_would(
        routing: Routing) -> None:
    await routing.put_rep("sato")
    await routing.put_rep("suzuki")
    hot, warm = uuid.uuid4(), uuid.uuid4()
    await routing.handle(lead_scored(lead_id=hot, score=85, domain="first.co.jp"),
                         lead_scored(lead_id=warm, tier=Tier.B, score=55, domain="second.co.jp"),
                         lead_scored(lead_id=hot, score=92, domain="first.co.jp"),
                         lead_scored(lead_id=warm, score=80, domain="second.co.jp"))
    hot_lead, warm_lead = await state(routing, hot), await state(routing, warm)
    assert (hot_lead["stage"], hot_lead["score"], hot_lead["owner_id"]) == ("mql", 92, "sato")
    assert (warm_lead["stage"], warm_lead["score"], warm_lead["owner_id"]) == ("mql", 80,
                                                                               "suzuki")
    promoted = await routing.promoted()
    assert [(event.lead_id, event.score) for event in promoted] == [(hot, 85), (warm, 80)]


async def test_concurrent_assignments_in_a_team_are_decided_one_at_a_time(
        routing: Routing) -> None:
    await routing.put_rep("sato")
    await routing.put_rep("suzuki")
    events = [lead_scored(domain=f"company-{n}.co.jp") for n in range(8)]
    await asyncio.gather(*(routing.handle(event) for event in events))
    owners = [(await state(routing, event.lead_id))["owner_id"] for event in events]
    assert sorted(owners) == ["sato"] * 4 + ["suzuki"] * 4, "each saw the positions before"


async def test_assignment_sees_a_rep_changed_since_the_last_assignment(
        routing: Routing) -> None:
    await routing.put_rep("sato")
    await new_mql(routing, domain="first.co.jp")  # sato, the only rep, parsed for assignment
    leave = {"starts_at": "2026-11-17T00:00:00+09:00", "ends_at": "2026-11-20T00:00:00+09:00",
             "note": "出張"}
    await routing.put_rep("sato", out_of_office=[leave])
    await routing.put_rep("suzuki")
    lead_id = await new_mql(routing, domain="second.co.jp")
    [decision] = (await state(routing, lead_id))["assignments"]
    assert decision["rep_id"] == "suzuki"
    assert decision["considered"] == [
        {"rep_id": "sato", "blocked_because": "out of office until 2026-11-20 00:00 JST"},
        {"rep_id": "suzuki", "blocked_because": None}]


async def test_sales_actions_are_idempotent_and_each_emits_lead_promoted(
        routing: Routing) -> None:
    await routing.put_rep("sato")
    await routing.put_rep("suzuki")
    await routing.put_rep("tanaka", team="field_sales")
    lead_id = await new_mql(routing)
    for _ in range(2):
        accepted = await act(routing, lead_id, "accept", rep_id="sato")
        assert accepted.status_code == 200 and accepted.json()["stage"] == "sal"
    taken = await act(routing, lead_id, "accept", rep_id="suzuki")
    assert taken.status_code == 409 and "already accepted by sato" in taken.text

    weak = {"rep_id": "sato", "budget": True, "authority": False, "need": True,
            "timeframe": False}
    refused = await act(routing, lead_id, "qualify", **weak)
    assert refused.status_code == 409 and "BANT rank C" in refused.text
    qualified = {**weak, "authority": True}
    for _ in range(2):
        response = await act(routing, lead_id, "qualify", **qualified)
        assert response.status_code == 200, response.text
    lead = response.json()
    assert (lead["stage"], lead["owner_id"], lead["team"]) == ("sql", "tanaka", "field_sales")
    assert lead["bant"]["rank"] == "B"

    routing.clock.advance(timedelta(minutes=30))
    call = {"rep_id": "tanaka", "kind": "call",
            "occurred_at": (routing.clock.now - timedelta(minutes=5)).isoformat(),
            "note": "決裁者と日程調整"}
    for _ in range(2):
        assert (await act(routing, lead_id, "contacts", **call)).status_code == 200
    wrong_team = await act(routing, lead_id, "contacts", **{**call, "rep_id": "sato"})
    assert wrong_team.status_code == 409 and "team sdr" in wrong_team.text

    for _ in range(2):
        gone = await act(routing, lead_id, "disqualify", rep_id="tanaka", reason="競合に決定済み")
        assert gone.status_code == 200 and gone.json()["stage"] == "disqualified"
    late = await act(routing, lead_id, "reject", rep_id="tanaka", reason="予算なし")
    assert late.status_code == 409 and "disqualified" in late.text

    events = await routing.promoted()
    assert [(e.from_stage, e.to_stage) for e in events] == [
        (S.LEAD, S.MQL), (S.MQL, S.SAL), (S.SAL, S.SQL), (S.SQL, S.SQL),
        (S.SQL, S.DISQUALIFIED)], "one event per action, none for repeats"
    _, sal, sql, contact, disqualified = events
    # Business days of 09:00-18:00 from Wednesday 18th 10:00, Monday 23rd a public holiday:
    # ten for any activity on an owned lead, one for an SQL's first contact.
    assert (sal.owner_id, sal.team, sal.sla_due_at) == (
        "sato", "sdr", datetime(2026, 12, 3, 10, 0, tzinfo=JST))
    assert (sql.owner_id, sql.team, sql.sla_due_at) == (
        "tanaka", "field_sales", datetime(2026, 11, 19, 10, 0, tzinfo=JST))
    assert sql.reason == "qualified by sato (BANT rank B); assigned to tanaka (round_robin)"
    assert (contact.contact, contact.owner_id, contact.sla_due_at) == (
        ContactKind.CALL, "tanaka", datetime(2026, 12, 3, 10, 30, tzinfo=JST))
    assert disqualified.reason == "disqualified by tanaka: 競合に決定済み"
    assert disqualified.owner_id is None


async def test_a_friday_evening_hand_off_is_due_when_the_notifiers_clocks_are(
        routing: Routing) -> None:
    # The notifier counts these SLAs in business days of the calendar (DESIGN section 3):
    # an SQL handed off on Friday at 17:00 is due on Monday, not on Saturday.
    await routing.put_rep("sato")
    await routing.put_rep("tanaka", team="field_sales")
    lead_id = await new_mql(routing)
    routing.clock.now = datetime(2026, 11, 27, 17, 0, tzinfo=JST)  # a Friday
    assert (await act(routing, lead_id, "accept", rep_id="sato")).status_code == 200
    qualified = await act(routing, lead_id, "qualify", rep_id="sato", budget=True,
                          authority=True, need=True, timeframe=True)
    assert qualified.status_code == 200, qualified.text
    await routing.handle(deal_event(lead_id, uuid.uuid4(), DealPhase.P1))
    routing.clock.now = datetime(2026, 11, 30, 10, 0, tzinfo=JST)  # the Monday after
    called = await act(routing, lead_id, "contacts", rep_id="tanaka", kind="call",
                       occurred_at=routing.clock.now.isoformat())
    assert called.status_code == 200, called.text

    _, sal, sql, opportunity, contact = await routing.promoted()
    assert [(e.to_stage, e.sla_due_at) for e in (sal, sql, opportunity, contact)] == [
        (S.SAL, datetime(2026, 12, 11, 17, 0, tzinfo=JST)),  # ten business days
        (S.SQL, datetime(2026, 11, 30, 17, 0, tzinfo=JST)),  # one business day
        (S.OPPORTUNITY, datetime(2026, 12, 11, 17, 0, tzinfo=JST)),
        (S.OPPORTUNITY, datetime(2026, 12, 14, 10, 0, tzinfo=JST))]


async def test_every_lead_promoted_names_its_owner_as_the_directory_does(
        routing: Routing) -> None:
    # Alerts show reps by name: routing keeps the directory, so its events carry the name.
    await routing.put_rep("sato")
    await routing.put_rep("tanaka", team="field_sales", name="田中 一郎")
    lead_id = await new_mql(routing)
    assert (await act(routing, lead_id, "accept", rep_id="sato")).status_code == 200
    qualified = await act(routing, lead_id, "qualify", rep_id="sato", budget=True,
                          authority=True, need=True, timeframe=True)
    assert qualified.status_code == 200, qualified.text
    called = await act(routing, lead_id, "contacts", rep_id="tanaka", kind="call",
                       occurred_at=routing.clock.now.isoformat())
    assert called.status_code == 200, called.text
    rejected_id = await new_mql(routing)
    rejected = await act(routing, rejected_id, "reject", rep_id="sato", reason="not_a_fit")
    assert rejected.status_code == 200, rejected.text

    assert [(e.to_stage, e.owner_id, e.owner_name) for e in await routing.promoted()] == [
        (S.MQL, "sato", "佐藤 花子"), (S.SAL, "sato", "佐藤 花子"),
        (S.SQL, "tanaka", "田中 一郎"), (S.SQL, "tanaka", "田中 一郎"),  # the contact
        (S.MQL, "sato", "佐藤 花子"), (S.NURTURE, None, None)]


async def new_sql(routing: Routing) -> uuid.UUID:
    """Return a lead that sato accepted and qualified, handed to tanaka of field sales."""
    await routing.put_rep("sato")
    await routing.put_rep("tanaka", team="field_sales")
    lead_id = await new_mql(routing)
    assert (await act(routing, lead_id, "accept", rep_id="sato")).status_code == 200
    qualified = await act(routing, lead_id, "qualify", rep_id="sato", budget=True,
                          authority=True, need=True, timeframe=True)
    assert qualified.json()["stage"] == "sql", qualified.text
    return lead_id


def deal_event(lead_id: uuid.UUID, deal_id: uuid.UUID, phase: DealPhase) -> DealPhaseChanged:
    """Return pipeline's announcement that the lead's deal is in ``phase``."""
    return DealPhaseChanged(deal_id=deal_id, lead_id=lead_id, occurred_at=WEDNESDAY_10_JST,
                            to_phase=phase, probability=50, owner_id="tanaka")


async def test_an_sql_whose_older_deal_is_announced_again_becomes_an_opportunity(
        routing: Routing) -> None:
    # Pipeline keeps a lead's open deal when it is qualified again, and announces it in
    # the phase it is in: not only a new deal in P1 makes an SQL an opportunity.
    lead_id = await new_sql(routing)
    await routing.handle(deal_event(lead_id, uuid.uuid4(), DealPhase.P3))
    lead = await state(routing, lead_id)
    assert (lead["stage"], lead["owner_id"]) == ("opportunity", "tanaka")


async def test_a_lost_deal_nurtures_its_lead_which_a_hot_score_makes_an_mql_again(
        routing: Routing) -> None:
    lead_id, deal_id = await new_sql(routing), uuid.uuid4()
    for phase in (DealPhase.P1, DealPhase.LOST):
        await routing.handle(deal_event(lead_id, deal_id, phase))
    assert (await state(routing, lead_id))["stage"] == "nurture"
    routing.clock.advance(timedelta(days=120))
    await routing.handle(lead_scored(lead_id=lead_id, score=95))
    *_, opportunity, lost, nurtured, mql = await routing.promoted()
    assert [(e.from_stage, e.to_stage) for e in (opportunity, lost, nurtured, mql)] == [
        (S.SQL, S.OPPORTUNITY), (S.OPPORTUNITY, S.LOST), (S.LOST, S.NURTURE),
        (S.NURTURE, S.MQL)]
    assert (lost.owner_id, nurtured.owner_id, nurtured.team) == ("tanaka", None, None)


async def test_a_recycled_deal_leaves_a_won_or_disqualified_lead_where_it_is(
        routing: Routing) -> None:
    # A won customer's upsell deal, or a deal opened for a lead later disqualified, may
    # be recycled: the lead cannot go back to nurturing, and the event is no failure.
    won, disqualified = await new_sql(routing), await new_sql(routing)
    for phase in (DealPhase.P1, DealPhase.WON):
        await routing.handle(deal_event(won, uuid.uuid4(), phase))
    gone = await act(routing, disqualified, "disqualify", rep_id="tanaka", reason="予算凍結")
    assert gone.status_code == 200, gone.text
    before = await routing.promoted()
    for lead_id in (won, disqualified):
        await routing.handle(DealRecycled(deal_id=uuid.uuid4(), lead_id=lead_id,
                                          recycled_at=WEDNESDAY_10_JST,
                                          last_phase=DealPhase.P2, reason="90日間フェーズ変更なし"))
    assert [(await state(routing, lead_id))["stage"] for lead_id in (won, disqualified)] == [
        "won", "disqualified"]
    assert await routing.promoted() == before, "nothing announced"


async def test_a_rejected_hot_lead_is_not_an_mql_again_until_it_shows_new_heat(
        routing: Routing) -> None:
    await routing.put_rep("sato")
    lead_id = await new_mql(routing)
    assert (await act(routing, lead_id, "reject", rep_id="sato",
                      reason="予算なし")).status_code == 200
    still_hot = {"previous_tier": Tier.A, "previous_score": 85}
    opened = lead_scored(lead_id=lead_id, score=86, touchpoint=TouchpointType.EMAIL_OPEN)
    await routing.handle(opened.model_copy(update=still_hot))
    assert (await state(routing, lead_id))["stage"] == "nurture", "an e-mail open is no news"
    asked = lead_scored(lead_id=lead_id, score=96,
                        touchpoint=TouchpointType.INQUIRY_DEMO_REQUEST)
    await routing.handle(asked.model_copy(update=still_hot))
    *_, rejected, again = await routing.promoted()
    assert [(e.from_stage, e.to_stage) for e in (rejected, again)] == [
        (S.MQL, S.NURTURE), (S.NURTURE, S.MQL)]
    assert again.owner_id == "sato" and again.trigger is TouchpointType.INQUIRY_DEMO_REQUEST


async def accepted_again_with_an_old_deal(routing: Routing) -> tuple[uuid.UUID, uuid.UUID]:
    """Return (lead, deal): field sales rejected the SQL before its P1 deal was announced,
    so the deal stays open; 30 days later the lead turned hot again and sato accepted it."""
    lead_id, deal_id = await new_sql(routing), uuid.uuid4()
    assert (await act(routing, lead_id, "reject", rep_id="tanaka",
                      reason="時期尚早")).status_code == 200
    await routing.handle(deal_event(lead_id, deal_id, DealPhase.P1))
    assert (await state(routing, lead_id))["stage"] == "nurture"
    routing.clock.advance(timedelta(days=30))
    await routing.handle(lead_scored(lead_id=lead_id, score=95))
    assert (await act(routing, lead_id, "accept", rep_id="sato")).status_code == 200
    return lead_id, deal_id


async def test_an_old_deal_recycled_leaves_a_lead_qualified_afresh_with_its_rep(
        routing: Routing) -> None:
    # When the sweep recycles the old deal, the SAL stays the SDR's.
    lead_id, deal_id = await accepted_again_with_an_old_deal(routing)
    before = await routing.promoted()
    routing.clock.advance(timedelta(days=30))
    await routing.handle(DealRecycled(deal_id=deal_id, lead_id=lead_id,
                                      recycled_at=routing.clock.now, last_phase=DealPhase.P1,
                                      reason="no next action entered for 60 days"))
    lead = await state(routing, lead_id)
    assert (lead["stage"], lead["owner_id"]) == ("sal", "sato")
    assert await routing.promoted() == before, "nothing announced"


@pytest.mark.parametrize("recycled_before_the_hand_off", [True, False])
async def test_an_old_deals_recycling_leaves_a_new_sql_alone_and_its_new_deal_takes_it(
        routing: Routing, recycled_before_the_hand_off: bool) -> None:
    # The old deal is recycled around the time the lead is qualified again, and its
    # recycling reaches routing before the new deal does: the new SQL is the new deal's.
    lead_id, deal_id = await accepted_again_with_an_old_deal(routing)
    recycled_at = routing.clock.now + timedelta(minutes=-1 if recycled_before_the_hand_off
                                                else 1)
    qualified = await act(routing, lead_id, "qualify", rep_id="sato", budget=True,
                          authority=True, need=True, timeframe=True)
    assert qualified.json()["stage"] == "sql", qualified.text
    routing.clock.advance(timedelta(minutes=2))
    await routing.handle(DealRecycled(deal_id=deal_id, lead_id=lead_id, recycled_at=recycled_at,
                                      last_phase=DealPhase.P1,
                                      reason="no phase change for 90 days"))
    lead = await state(routing, lead_id)
    assert (lead["stage"], lead["owner_id"]) == ("sql", "tanaka")
    new_deal = uuid.uuid4()
    await routing.handle(deal_event(lead_id, new_deal, DealPhase.P1))
    assert (await state(routing, lead_id))["stage"] == "opportunity"
    # Its own deal's recycling, later, does send it back.
    await routing.handle(DealRecycled(deal_id=new_deal, lead_id=lead_id,
                                      recycled_at=routing.clock.now, last_phase=DealPhase.P1,
                                      reason="no phase change for 90 days"))
    assert (await state(routing, lead_id))["stage"] == "nurture"


async def test_a_demo_request_is_due_in_five_minutes_and_qualifies_on_a_weak_bant(
        routing: Routing) -> None:
    await routing.put_rep("sato")
    lead_id = await new_mql(routing, touchpoint=TouchpointType.INQUIRY_DEMO_REQUEST)
    [mql] = await routing.promoted()
    assert mql.sla_due_at == WEDNESDAY_10_JST + timedelta(minutes=5)
    assert (await act(routing, lead_id, "accept", rep_id="sato")).status_code == 200
    qualified = await act(routing, lead_id, "qualify", rep_id="sato", budget=False,
                          authority=False, need=True, timeframe=False)
    assert qualified.status_code == 200, qualified.text
    sql = (await routing.promoted())[-1]
    assert (sql.to_stage, sql.owner_id, sql.team) == (S.SQL, None, "field_sales")
    assert "BANT rank C, demo or quote requested" in sql.reason
    assert sql.reason.endswith("queued for team field_sales: no rep can take it now")


async def test_a_queued_sql_whose_deal_opens_waits_in_the_queue_until_a_rep_takes_it(
        routing: Routing) -> None:
    # Pipeline opens a deal for every SQL, owned or not, and the deal makes the lead an
    # opportunity: still nobody's, so it must stay where field sales looks for work.
    await routing.put_rep("sato")
    lead_id = await new_mql(routing)
    assert (await act(routing, lead_id, "accept", rep_id="sato")).status_code == 200
    qualified = await act(routing, lead_id, "qualify", rep_id="sato", budget=True,
                          authority=True, need=True, timeframe=True)
    assert (qualified.json()["stage"], qualified.json()["owner_id"]) == ("sql", None)
    handed_off = (await routing.promoted())[-1].occurred_at
    routing.clock.advance(timedelta(hours=1))
    await routing.handle(deal_event(lead_id, uuid.uuid4(), DealPhase.P1))

    queue = (await routing.client.get("/v1/teams/field_sales/queue")).json()
    assert [(q["lead_id"], q["stage"]) for q in queue] == [(str(lead_id), "opportunity")]
    assert datetime.fromisoformat(queue[0]["waiting_since"]) == handed_off, (
        "waiting since the hand-off to field sales, not since the deal opened")
    await routing.put_rep("tanaka", team="field_sales")
    taken = await act(routing, lead_id, "contacts", rep_id="tanaka", kind="call",
                      occurred_at=routing.clock.now.isoformat())
    assert (taken.json()["stage"], taken.json()["owner_id"]) == ("opportunity", "tanaka")
    assert (await routing.client.get("/v1/teams/field_sales/queue")).json() == []


async def test_a_touch_of_a_lead_marketing_holds_is_announced_and_leaves_it_unowned(
        routing: Routing) -> None:
    # A tier-B or surging lead's SLA is a first touch by sales, which the notifier stops on
    # the lead's next lifecycle event: logging the touch must announce one.
    await routing.put_rep("sato")
    warm = lead_scored(tier=Tier.B, score=62)
    await routing.handle(warm)
    call = {"rep_id": "sato", "kind": "call", "occurred_at": routing.clock.now.isoformat(),
            "note": "資料送付のお礼"}
    for _ in range(2):
        touched = await act(routing, warm.lead_id, "contacts", **call)
        assert touched.status_code == 200, touched.text
    assert (touched.json()["stage"], touched.json()["owner_id"]) == ("lead", None)
    [touch] = await routing.promoted()
    assert (touch.from_stage, touch.to_stage, touch.contact, touch.owner_id, touch.team,
            touch.sla_due_at) == (S.LEAD, S.LEAD, ContactKind.CALL, None, None, None)
    assert touch.reason == "call contact logged by sato"


async def test_bad_actions_get_clear_errors_and_change_nothing(routing: Routing) -> None:
    await routing.put_rep("sato")
    lead_id = await new_mql(routing)
    assert field_errors(await act(routing, lead_id, "accept", rep_id="nobody")) == {
        ("body", "rep_id")}
    assert field_errors(await act(routing, lead_id, "reject", rep_id="sato")) == {
        ("body", "reason")}
    for blank in ("   ", "\u3000\u3000", "\n"):  # a rejection needs a reason (DESIGN)
        for action in ("reject", "disqualify"):
            assert field_errors(await act(routing, lead_id, action, rep_id="sato",
                                          reason=blank)) == {("body", "reason")}
    assert field_errors(await act(routing, lead_id, "accept", rep_id="sato", extra=1)) == {
        ("body", "extra")}
    future = (routing.clock.now + timedelta(hours=1)).isoformat()
    assert field_errors(await act(routing, lead_id, "contacts", rep_id="sato", kind="call",
                                  occurred_at=future)) == {("body", "occurred_at")}
    early = await act(routing, lead_id, "contacts", rep_id="sato", kind="call",
                      occurred_at=routing.clock.now.isoformat())
    assert early.status_code == 409 and "accepted leads" in early.text
    illegal = await act(routing, lead_id, "qualify", rep_id="sato", budget=True,
                        authority=True, need=True, timeframe=True)
    assert illegal.status_code == 409
    assert "accept it first" in illegal.json()["detail"]
    missing = await act(routing, uuid.uuid4(), "accept", rep_id="sato")
    assert missing.status_code == 404
    assert (await state(routing, lead_id))["stage"] == "mql"
    assert len(await routing.promoted()) == 1


async def test_accepting_through_the_api_and_through_slack_gives_the_same_result(
        routing: Routing) -> None:
    await routing.put_rep("sato", slack_user_id="U0SATO1")
    by_api, by_slack = await new_mql(routing), await new_mql(routing)
    assert (await act(routing, by_api, "accept", rep_id="sato")).status_code == 200

    async with FakeSlack().running() as slack:
        response_url = f"http://127.0.0.1:{slack.port}/actions/T0/1/abc"
        body = slack_form(button_click("lead.accept", by_slack, "U0SATO1", response_url))
        started = time.perf_counter()
        answer = await routing.client.post("/slack/actions", content=body,
                                           headers=slack_headers(body, routing.clock.now))
        assert answer.status_code == 200, answer.text
        assert time.perf_counter() - started < 3.0, "Slack wants an answer within 3 s"
        [update] = await slack.wait_for(1, timeout=5)

    api_state, slack_state = await state(routing, by_api), await state(routing, by_slack)
    for key in ("stage", "owner_id", "team"):
        assert api_state[key] == slack_state[key]
    assert slack_state["stage"] == "sal"
    api_move, slack_move = api_state["history"][-1], slack_state["history"][-1]
    assert {**api_move, "actor": None} == {**slack_move, "actor": None}
    assert (api_move["actor"], slack_move["actor"]) == ("sato", "sato via Slack")
    api_event, slack_event = (await routing.promoted())[-2:]
    assert {api_event.lead_id, slack_event.lead_id} == {by_api, by_slack}
    assert comparable(api_event) == comparable(slack_event)

    assert update.path == "/actions/T0/1/abc"
    assert update.body["replace_original"] is True
    assert "<@U0SATO1> さんが受け入れました" in update.body["text"]
    assert [block["block_id"] for block in update.body["blocks"][:-1]] == ["head"], (
        "the buttons are gone, the alert is kept")


async def test_forged_stale_and_replayed_slack_requests_are_refused(routing: Routing) -> None:
    await routing.put_rep("sato", slack_user_id="U0SATO1")
    lead_id = await new_mql(routing)
    body = slack_form(button_click("lead.accept", lead_id, "U0SATO1",
                                   "https://hooks.slack.com/actions/T0/1/abc"))
    now = routing.clock.now

    async def post(content: bytes, headers: dict[str, str]) -> Any:
        return await routing.client.post("/slack/actions", content=content, headers=headers)

    forged = await post(body, slack_headers(body, now, secret="not-the-signing-secret"))
    assert forged.status_code == 401 and "signature does not match" in forged.text
    other_body = slack_form(button_click("lead.accept", lead_id, "U0SOMEONE",
                                         "https://hooks.slack.com/actions/T0/1/abc"))
    tampered = await post(other_body, slack_headers(body, now))
    assert tampered.status_code == 401
    stale = await post(body, slack_headers(body, now - timedelta(minutes=6)))
    assert stale.status_code == 401 and "5-minute window" in stale.text
    unsigned = await post(body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert unsigned.status_code == 401
    assert (await state(routing, lead_id))["stage"] == "mql", "nothing changed"

    headers = slack_headers(body, now)
    assert (await post(body, headers)).status_code == 200
    routing.clock.advance(timedelta(minutes=1))
    replayed = await post(body, headers)
    assert replayed.status_code == 401 and "replay" in replayed.text
    assert [e.to_stage for e in await routing.promoted()] == [S.MQL, S.SAL]


async def test_slack_actions_are_off_without_a_signing_secret(postgres: PostgresServer) -> None:
    async with running_routing(await postgres.create_database(),
                               slack_signing_secret=None) as routing:
        body = slack_form(button_click("lead.accept", uuid.uuid4(), "U0SATO1",
                                       "https://hooks.slack.com/actions/T0/1/abc"))
        answer = await routing.client.post("/slack/actions", content=body,
                                           headers=slack_headers(body, routing.clock.now))
    assert answer.status_code == 503 and "BATON_SLACK_SIGNING_SECRET" in answer.text


async def test_slack_clicks_that_cannot_apply_get_a_private_note_and_reject_nurtures(
        routing: Routing) -> None:
    await routing.put_rep("sato", slack_user_id="U0SATO1")
    await routing.put_rep("suzuki", slack_user_id="U0SUZUKI")
    taken, declined = await new_mql(routing), await new_mql(routing)
    assert (await act(routing, taken, "accept", rep_id="sato")).status_code == 200

    async with FakeSlack().running() as slack:
        url = f"http://127.0.0.1:{slack.port}/actions/T0/1/abc"

        async def click(action: str, lead_id: uuid.UUID, user: str, to: str = url) -> None:
            body = slack_form(button_click(action, lead_id, user, to))
            answer = await routing.client.post("/slack/actions", content=body,
                                               headers=slack_headers(body, routing.clock.now))
            assert answer.status_code == 200, answer.text
            routing.clock.advance(timedelta(seconds=1))

        await click("lead.accept", taken, "U0SUZUKI")
        await click("lead.accept", taken, "U0NOBODY")
        await click("lead.reject", declined, "U0SATO1")
        await click("lead.reject", declined, "U0SATO1", "https://evil.example/actions")
        notes = await slack.wait_for(3, timeout=5)
    assert [m.body.get("response_type") for m in notes] == ["ephemeral", "ephemeral", None]
    assert "already accepted by sato" in notes[0].body["text"]
    assert "紐付いていません" in notes[1].body["text"]
    assert "見送りました" in notes[2].body["text"]
    assert len(slack.messages) == 3, "nothing was posted to the host that is not allowed"
    lead = await state(routing, declined)
    assert lead["stage"] == "nurture"
    assert lead["history"][-1]["reason"] == "rejected by sato: Slack のアラートから見送り"


async def test_reps_and_teams_are_managed_through_the_api_with_field_level_errors(
        routing: Routing) -> None:
    client = routing.client
    created = await routing.put_rep(
        "sato", slack_user_id="U0SATO1", weight=1.5, daily_capacity=12,
        working_hours={"timezone": "Asia/Tokyo", "starts": "10:00", "ends": "19:00",
                       "workdays": [5, 1, 2], "holidays": "JP"},
        territory={"regions": ["関東"], "industries": [], "employee_bands": []})
    assert created["name"] == "佐藤 花子"
    assert created["working_hours"]["workdays"] == [1, 2, 5]
    assert (await client.get("/v1/reps/sato")).json() == created
    assert [r["rep_id"] for r in (await client.get("/v1/reps?team=sdr")).json()] == ["sato"]
    assert (await client.get("/v1/reps?team=bdr")).json() == []
    assert (await client.get("/v1/reps/nobody")).status_code == 404

    def put(rep_id: str, **body: Any) -> Any:
        return client.put(f"/v1/reps/{rep_id}", json={"name": "鈴木", "team": "sdr", **body})

    cases: list[tuple[dict[str, Any], tuple[str, ...]]] = [
        ({"working_hours": {"timezone": "Mars/Olympus"}}, ("body", "working_hours",
                                                             "timezone")),
        ({"working_hours": {"starts": "18:00", "ends": "09:00"}}, ("body", "working_hours")),
        ({"working_hours": {"ends": "18:00:00+09:00"}}, ("body", "working_hours", "ends")),
        ({"working_hours": {"workdays": [1, 8]}}, ("body", "working_hours", "workdays", "1")),
        ({"working_hours": {"holidays": "XX"}}, ("body", "working_hours", "holidays")),
        ({"out_of_office": [{"starts_at": "2026-12-02T00:00:00+09:00",
                             "ends_at": "2026-12-01T00:00:00+09:00"}]},
         ("body", "out_of_office", "0")),
        ({"weight": 0}, ("body", "weight")),
        ({"weight": 1e-320}, ("body", "weight")),  # its stride would be infinite
        ({"team": "marketing"}, ("body", "team")),
        ({"territory": {}}, ("body", "territory")),
    ]
    for body, location in cases:
        assert location in field_errors(await put("suzuki", **body)), body
    assert field_errors(await put("鈴木")) == {("path", "rep_id")}
    taken = await put("suzuki", slack_user_id="U0SATO1")
    assert taken.status_code == 409 and "linked to rep sato" in taken.text
    assert (await client.get("/v1/reps/suzuki")).status_code == 404, "nothing was stored"

    team = await client.put("/v1/teams/sdr", json={"name": "インサイドセールス",
                                                    "manager_channel": "#sdr-managers"})
    assert team.json() == {"team": "sdr", "name": "インサイドセールス",
                           "manager_channel": "#sdr-managers"}
    assert [t["team"] for t in (await client.get("/v1/teams")).json()] == [
        "bdr", "field_sales", "sdr"]
    assert field_errors(await client.put("/v1/teams/marketing", json={"name": "x"})) == {
        ("path", "team")}


async def test_the_funnel_counts_conversions_and_speed_to_lead(routing: Routing) -> None:
    await routing.put_rep("sato")
    await routing.put_rep("tanaka", team="field_sales")
    won = await new_mql(routing)
    rejected = await new_mql(routing, source="partner-apo", partner="アポ代行株式会社")
    await routing.handle(lead_scored(tier=Tier.B, score=60))
    routing.clock.advance(timedelta(minutes=30))
    await act(routing, won, "accept", rep_id="sato")
    await act(routing, rejected, "reject", rep_id="sato", reason="学生")
    await act(routing, won, "qualify", rep_id="sato", budget=True, authority=True, need=True,
              timeframe=True)
    routing.clock.advance(timedelta(minutes=30))
    contact = await act(routing, won, "contacts", rep_id="tanaka", kind="meeting",
                        occurred_at=routing.clock.now.isoformat())
    assert contact.status_code == 200, contact.text

    response = await routing.client.get("/v1/funnel", params={
        "since": "2026-11-01", "until": "2026-12-01", "group_by": ["source", "period"]})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["timezone"] == "Asia/Tokyo"
    groups = {(row["group"]["source"], row["group"]["period"]): row for row in report["rows"]}
    assert set(groups) == {("partner-apo", "2026-11"), ("web-form", "2026-11")}
    web = groups[("web-form", "2026-11")]
    assert web["leads"] == 2
    assert web["reached"] == {"lead": 2, "mql": 1, "sal": 1, "sql": 1, "opportunity": 0,
                              "won": 0}
    assert web["conversions"][0] == {"from_stage": "lead", "to_stage": "mql", "rate": 0.5}
    assert web["speed_to_acceptance"] == {"leads": 1, "p50_minutes": 30.0, "p95_minutes": 30.0}
    assert web["speed_to_first_contact"]["p50_minutes"] == 60.0
    partner = groups[("partner-apo", "2026-11")]
    assert partner["exited"]["nurture"] == 1 and partner["reached"]["sal"] == 0
    total = report["total"]
    assert (total["leads"], total["reached"]["mql"]) == (3, 2)

    by_partner = (await routing.client.get("/v1/funnel", params={
        "since": "2026-11-01", "until": "2026-12-01",
        "partner": "アポ代行株式会社"})).json()
    assert by_partner["total"]["leads"] == 1
    empty = (await routing.client.get("/v1/funnel", params={
        "since": "2026-10-01", "until": "2026-11-01"})).json()
    assert empty["rows"] == [] and empty["total"]["leads"] == 0
    assert field_errors(await routing.client.get("/v1/funnel", params={
        "since": "2026-12-01", "until": "2026-11-01"})) == {("query", "until")}
    for dates, field in (({"until": "0001-01-01"}, "until"),
                         ({"since": "0001-01-01", "until": "0001-01-02"}, "since"),
                         ({"since": "9999-12-30", "until": "9999-12-31"}, "since")):
        assert field_errors(await routing.client.get("/v1/funnel", params=dates)) == {
            ("query", field)}, dates
    assert field_errors(await routing.client.get("/v1/funnel", params={
        "group_by": "owner"})) == {("query", "group_by", "0")}


@pytest.mark.parametrize(("start_month", "quarter"), [(4, "FY2026-Q3"), (1, "FY2026-Q4"),
                                                       (12, "FY2025-Q4")])
async def test_the_funnels_fiscal_quarters_follow_the_configured_fiscal_year(
        postgres: PostgresServer, start_month: int, quarter: str) -> None:
    # As pipeline's forecast names its quarters, from the same BATON_ setting.
    async with running_routing(await postgres.create_database(),
                               fiscal_year_start_month=start_month) as routing:
        await routing.put_rep("sato")
        await new_mql(routing)  # on Wednesday 18 November 2026
        report = (await routing.client.get("/v1/funnel", params={
            "since": "2026-11-01", "until": "2026-12-01", "period": "fiscal_quarter"})).json()
    assert [row["group"]["period"] for row in report["rows"]] == [quarter]


async def test_speed_to_first_contact_counts_from_the_mql_not_an_earlier_touch(
        routing: Routing) -> None:
    await routing.put_rep("sato")
    warm = lead_scored(tier=Tier.B, score=62)
    await routing.handle(warm)
    touched = await act(routing, warm.lead_id, "contacts", rep_id="sato", kind="email",
                        occurred_at=routing.clock.now.isoformat())
    assert touched.status_code == 200, touched.text
    routing.clock.advance(timedelta(days=2))
    await routing.handle(lead_scored(lead_id=warm.lead_id))  # tier A: an MQL now
    routing.clock.advance(timedelta(minutes=45))
    assert (await act(routing, warm.lead_id, "accept", rep_id="sato")).status_code == 200
    called = await act(routing, warm.lead_id, "contacts", rep_id="sato", kind="call",
                       occurred_at=routing.clock.now.isoformat())
    assert called.status_code == 200, called.text
    response = await routing.client.get("/v1/funnel", params={
        "since": "2026-11-01", "until": "2026-12-01"})
    [row] = response.json()["rows"]
    assert row["speed_to_first_contact"] == {"leads": 1, "p50_minutes": 45.0,
                                             "p95_minutes": 45.0}


async def test_the_openapi_document_names_every_route_and_its_errors(routing: Routing) -> None:
    paths = (await routing.client.get("/openapi.json")).json()["paths"]
    assert set(paths["/slack/actions"]["post"]["responses"]) >= {"200", "401", "422", "503"}
    for action in ("accept", "reject", "qualify", "disqualify", "contacts"):
        assert set(paths[f"/v1/leads/{{lead_id}}/{action}"]["post"]["responses"]) >= {
            "200", "404", "409", "422"}
    assert {"/v1/funnel", "/v1/reps/{rep_id}", "/v1/teams/{team}/queue",
            "/v1/assignments"} <= set(paths)
