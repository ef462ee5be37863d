"""Routing over real PostgreSQL at its edges: colleagues acting on one lead, odd input."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest

from schemas.events import DealPhase, LifecycleStage, TouchpointType
from services.routing import store
from tests.integration.test_routing_api import act, deal_event, state
from tests.integration.test_routing_harness import (
    WEDNESDAY_10_JST,
    Routing,
    button_click,
    lead_scored,
    rep_body,
    running_routing,
    slack_form,
    slack_headers,
)
from tests.support.fake_slack import FakeSlack
from tests.support.infrastructure import PostgresServer
from tests.support.kafka import wait_until
from tests.support.locks import waiting_for_a_lock

pytestmark = pytest.mark.integration
S = LifecycleStage


@pytest.fixture
async def routing(postgres: PostgresServer) -> AsyncIterator[Routing]:
    async with running_routing(await postgres.create_database()) as service:
        yield service


async def accepted_by_sato(routing: Routing) -> uuid.UUID:
    """Return an MQL of team sdr (sato and suzuki) that sato accepted."""
    await routing.put_rep("sato", slack_user_id="U0SATO1")
    await routing.put_rep("suzuki", slack_user_id="U0SUZUKI")
    event = lead_scored()
    await routing.handle(event)
    accepted = await act(routing, event.lead_id, "accept", rep_id="sato")
    assert accepted.status_code == 200, accepted.text
    return event.lead_id


# What the owner of an accepted lead may do with it, and the stage it is in afterwards.
OWNERS_ACTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "qualify": ({"budget": True, "authority": True, "need": True, "timeframe": True}, "sql"),
    "disqualify": ({"reason": "競合に決定済み"}, "disqualified"),
    "contacts": ({"kind": "call", "occurred_at": WEDNESDAY_10_JST.isoformat()}, "sal"),
}


@pytest.mark.parametrize("action", OWNERS_ACTIONS)
async def test_only_the_rep_who_accepted_a_lead_qualifies_disqualifies_or_logs_contacts(
        routing: Routing, action: str) -> None:
    # As with reject: an accepted lead is its owner's to work; a colleague's BANT, verdict
    # or call would act on sato's lead and restart sato's SLA clocks in sato's name.
    lead_id = await accepted_by_sato(routing)
    body, stage_after = OWNERS_ACTIONS[action]
    refused = await act(routing, lead_id, action, rep_id="suzuki", **body)
    assert refused.status_code == 409, refused.text
    assert "accepted by sato" in refused.json()["detail"]
    lead = await state(routing, lead_id)
    assert (lead["stage"], lead["owner_id"], lead["bant"]) == ("sal", "sato", None)
    assert [e.to_stage for e in await routing.promoted()] == [S.MQL, S.SAL], "nothing announced"
    funnel = (await routing.client.get("/v1/funnel", params={
        "since": "2026-11-01", "until": "2027-01-01"})).json()
    assert funnel["total"]["speed_to_first_contact"]["leads"] == 0, "no contact stored"

    own = await act(routing, lead_id, action, rep_id="sato", **body)
    assert own.status_code == 200, own.text
    assert own.json()["stage"] == stage_after
    assert "by sato" in (await routing.promoted())[-1].reason


# How a rep leaves a team: marked inactive, or moved to another team (still active there).
DEPARTURES: dict[str, dict[str, Any]] = {"inactive": {"active": False},
                                         "moved": {"team": "bdr"}}


@pytest.mark.parametrize("departure", DEPARTURES)
@pytest.mark.parametrize("action", OWNERS_ACTIONS)
async def test_a_departed_reps_accepted_lead_stays_open_to_the_team(routing: Routing,
                                                                    action: str,
                                                                    departure: str) -> None:
    lead_id = await accepted_by_sato(routing)
    await routing.put_rep("sato", slack_user_id="U0SATO1", **DEPARTURES[departure])
    body, stage_after = OWNERS_ACTIONS[action]
    done = await act(routing, lead_id, action, rep_id="suzuki", **body)
    assert done.status_code == 200, done.text
    assert done.json()["stage"] == stage_after
    last = (await routing.promoted())[-1]
    assert "by suzuki" in last.reason
    if action == "contacts":
        # Worked by suzuki now, the lead is suzuki's: its SLA clocks name who works it.
        assert (done.json()["owner_id"], last.owner_id) == ("suzuki", "suzuki")


@pytest.mark.parametrize("occurred_at", ["0001-01-01T00:00:00+09:00",
                                         "0001-01-01T08:59:59+09:00"])
async def test_a_contact_before_the_first_representable_instant_gets_a_422(
        routing: Routing, occurred_at: str) -> None:
    # Year 1 east of UTC lies before year 1 in UTC, which no timestamp can hold.
    lead_id = await accepted_by_sato(routing)
    routing.clock.advance(timedelta(minutes=5))
    response = await act(routing, lead_id, "contacts", rep_id="sato", kind="call",
                         occurred_at=occurred_at)
    assert response.status_code == 422, response.text
    assert {tuple(item["loc"]) for item in response.json()["detail"]} == {
        ("body", "occurred_at")}
    assert len(await routing.promoted()) == 2, "nothing announced"


async def test_speed_to_acceptance_counts_from_the_mql_that_was_accepted(
        routing: Routing) -> None:
    # Rejected at its first MQL, the lead asked for a demo a month later and was accepted
    # 5 minutes after that MQL: its speed to lead is 5 minutes, not a month.
    await routing.put_rep("sato")
    first = lead_scored()
    await routing.handle(first)
    assert (await act(routing, first.lead_id, "reject", rep_id="sato",
                      reason="時期尚早")).status_code == 200
    routing.clock.advance(timedelta(days=30))
    await routing.handle(lead_scored(lead_id=first.lead_id, score=95,
                                     touchpoint=TouchpointType.INQUIRY_DEMO_REQUEST))
    routing.clock.advance(timedelta(minutes=5))
    assert (await act(routing, first.lead_id, "accept", rep_id="sato")).status_code == 200
    called = await act(routing, first.lead_id, "contacts", rep_id="sato", kind="call",
                       occurred_at=routing.clock.now.isoformat())
    assert called.status_code == 200, called.text

    response = await routing.client.get("/v1/funnel", params={
        "since": "2026-11-01", "until": "2027-01-01"})
    total = response.json()["total"]
    assert total["speed_to_acceptance"] == {"leads": 1, "p50_minutes": 5.0,
                                            "p95_minutes": 5.0}
    assert total["speed_to_first_contact"] == {"leads": 1, "p50_minutes": 5.0,
                                               "p95_minutes": 5.0}


async def test_two_reps_linked_to_one_slack_user_at_once_get_a_200_and_a_409(
        routing: Routing) -> None:
    # Two admins link the same Slack user to a rep of sdr and one of bdr at once: both
    # find the user free, and the later write meets the first's link.
    async with routing.context.unit_of_work() as assigning:
        await store.lock_teams(assigning.connection, ["sdr"])  # an assignment in progress
        sato = asyncio.create_task(routing.client.put(
            "/v1/reps/sato", json=rep_body("sdr", slack_user_id="U0SHARED")))
        await wait_until(lambda: waiting_for_a_lock(routing.engine), 10,
                         "sato's write to wait for team sdr")
        suzuki = await routing.client.put(
            "/v1/reps/suzuki", json=rep_body("bdr", slack_user_id="U0SHARED"))
        assert suzuki.status_code == 200, suzuki.text
    answer = await sato
    assert answer.status_code == 409, answer.text
    assert "U0SHARED" in answer.json()["detail"]
    assert (await routing.client.get("/v1/reps/sato")).status_code == 404, "nothing stored"


async def test_nobody_is_assigned_a_lead_on_a_day_the_company_is_closed(
        routing: Routing) -> None:
    await routing.put_rep("sato")
    owners = []
    # Wednesday 30 December, 10:00 JST (the year-end closing), then Monday 28th, 10:00.
    for moment in (datetime(2026, 12, 30, 1, 0, tzinfo=UTC),
                   datetime(2026, 12, 28, 1, 0, tzinfo=UTC)):
        routing.clock.now = moment
        event = lead_scored()
        await routing.handle(event)
        lead = await state(routing, event.lead_id)
        owners.append((lead["owner_id"], lead["assignments"][-1]["rule"]))
    assert owners[0] == (None, "queued")
    assert owners[1][0] == "sato"


# --- clear answers: blank reasons, qualifying too early, a second rejection ---------------


async def assigned_to_sato(routing: Routing) -> uuid.UUID:
    """Return an MQL of team sdr (sato and suzuki) assigned to sato, accepted by nobody."""
    await routing.put_rep("sato", slack_user_id="U0SATO1")
    await routing.put_rep("suzuki", slack_user_id="U0SUZUKI")
    event = lead_scored()
    await routing.handle(event)
    lead = await state(routing, event.lead_id)
    assert (lead["stage"], lead["owner_id"]) == ("mql", "sato"), lead
    return event.lead_id


async def handed_to_tanaka(routing: Routing) -> uuid.UUID:
    """Return an SQL that sato qualified, of team field_sales (tanaka and yamada), owned
    by tanaka."""
    lead_id = await accepted_by_sato(routing)
    await routing.put_rep("tanaka", team="field_sales", slack_user_id="U0TANAKA")
    await routing.put_rep("yamada", team="field_sales", slack_user_id="U0YAMADA")
    qualified = await act(routing, lead_id, "qualify", rep_id="sato", budget=True,
                          authority=True, need=True, timeframe=True)
    assert qualified.status_code == 200, qualified.text
    lead = qualified.json()
    assert (lead["stage"], lead["owner_id"], lead["team"]) == ("sql", "tanaka",
                                                               "field_sales"), lead
    return lead_id


async def queued_for_sdr(routing: Routing) -> uuid.UUID:
    """Return an MQL of team sdr (sato and suzuki) scored at 20:00 in Tokyo, when neither
    works, so that it waits in the queue; the clock is then the next day's 10:00."""
    await routing.put_rep("sato", slack_user_id="U0SATO1")
    await routing.put_rep("suzuki", slack_user_id="U0SUZUKI")
    routing.clock.now = WEDNESDAY_10_JST + timedelta(hours=10)
    event = lead_scored()
    await routing.handle(event)
    lead = await state(routing, event.lead_id)
    assert (lead["stage"], lead["owner_id"]) == ("mql", None), lead
    routing.clock.now = WEDNESDAY_10_JST + timedelta(days=1)
    return event.lead_id


@pytest.mark.parametrize("action", ["reject", "disqualify"])
async def test_a_blank_reason_is_refused_as_blank_not_as_a_pattern(routing: Routing,
                                                                   action: str) -> None:
    lead_id = await assigned_to_sato(routing)
    for blank in ("", "   ", "\u3000\u3000", "\n"):
        refused = await act(routing, lead_id, action, rep_id="sato", reason=blank)
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["detail"]
        assert (error["loc"], error["msg"]) == (["body", "reason"],
                                                "reason must not be blank"), error
    too_long = await act(routing, lead_id, action, rep_id="sato", reason="長" * 401)
    assert too_long.status_code == 422 and "at most 400" in too_long.text, too_long.text
    assert (await state(routing, lead_id))["stage"] == "mql"


async def test_qualifying_an_mql_nobody_accepted_says_to_accept_it_first(
        routing: Routing) -> None:
    lead_id = await assigned_to_sato(routing)
    refused = await act(routing, lead_id, "qualify", rep_id="sato", budget=True,
                        authority=True, need=True, timeframe=True)
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == (
        f"lead {lead_id} is an mql nobody has accepted yet: accept it first "
        f"(POST /v1/leads/{lead_id}/accept), then qualify it")
    lead = await state(routing, lead_id)
    assert (lead["stage"], lead["bant"]) == ("mql", None)


@pytest.mark.parametrize(("action", "stage", "done"), [
    ("reject", S.NURTURE, "rejected"), ("disqualify", S.DISQUALIFIED, "disqualified")])
async def test_a_second_rejection_with_another_reason_is_a_conflict_naming_the_first(
        routing: Routing, action: str, stage: LifecycleStage, done: str) -> None:
    lead_id = await accepted_by_sato(routing)
    first = await act(routing, lead_id, action, rep_id="sato", reason="予算なし")
    assert first.status_code == 200, first.text
    again = await act(routing, lead_id, action, rep_id="sato", reason="予算なし")
    assert again.status_code == 200, "the same rejection again changes nothing"
    assert again.json()["history"] == first.json()["history"]
    for rep_id, reason in (("sato", "時期未定"), ("suzuki", "予算なし")):
        other = await act(routing, lead_id, action, rep_id=rep_id, reason=reason)
        assert other.status_code == 409, other.text
        assert other.json()["detail"] == f"lead {lead_id} was already {done} by sato: 予算なし"
    lead = await state(routing, lead_id)
    assert lead["history"][-1]["reason"] == f"{done} by sato: 予算なし"
    assert [e.to_stage for e in await routing.promoted()] == [S.MQL, S.SAL, stage]


# --- a lead a colleague holds: assigned, accepted, or handed to field sales ---------------


class Holding(NamedTuple):
    """A lead a rep holds: how to get one, the rep and their team, a colleague of theirs in
    it, what the colleague is told, and the moves announced until then."""

    lead: Callable[[Routing], Awaitable[uuid.UUID]]
    owner: str
    team: str
    colleague: str
    colleague_on_slack: str
    refusal: str
    announced: list[LifecycleStage]


ASK_THE_OWNER = ("(ask them to, or, if they have left the team, mark them inactive so that "
                 "the team can)")
HOLDINGS = {
    "sal": Holding(accepted_by_sato, "sato", "sdr", "suzuki", "U0SUZUKI",
                   "was accepted by sato; only they can {action} it " + ASK_THE_OWNER,
                   [S.MQL, S.SAL]),
    "mql": Holding(assigned_to_sato, "sato", "sdr", "suzuki", "U0SUZUKI",
                   "is assigned to sato; only they can {action} it "
                   "(to {action} it yourself, take it first by accepting it)", [S.MQL]),
    "sql": Holding(handed_to_tanaka, "tanaka", "field_sales", "yamada", "U0YAMADA",
                   "is owned by tanaka; only they can {action} it " + ASK_THE_OWNER,
                   [S.MQL, S.SAL, S.SQL]),
}


@pytest.mark.parametrize("held", HOLDINGS)
@pytest.mark.parametrize(("action", "stage_after", "done"), [
    ("reject", "nurture", "rejected"), ("disqualify", "disqualified", "disqualified")])
async def test_a_colleague_cannot_reject_or_disqualify_a_lead_another_rep_holds(
        routing: Routing, held: str, action: str, stage_after: str, done: str) -> None:
    # Both saw the alert, or both work in the lead's team: the colleague's click must not
    # throw the owner's lead back to marketing, nor end it for good.
    holding = HOLDINGS[held]
    lead_id = await holding.lead(routing)
    refused = await act(routing, lead_id, action, rep_id=holding.colleague, reason="対象外")
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == (
        f"lead {lead_id} {holding.refusal.format(action=action)}")
    lead = await state(routing, lead_id)
    assert (lead["stage"], lead["owner_id"]) == (held, holding.owner)
    assert [e.to_stage for e in await routing.promoted()] == holding.announced, "nothing new"

    own = await act(routing, lead_id, action, rep_id=holding.owner, reason="対象外")
    assert own.status_code == 200, own.text
    assert own.json()["stage"] == stage_after
    assert (await routing.promoted())[-1].reason == f"{done} by {holding.owner}: 対象外"


@pytest.mark.parametrize("held", HOLDINGS)
async def test_a_reject_click_on_a_colleagues_lead_gets_a_private_note(routing: Routing,
                                                                       held: str) -> None:
    holding = HOLDINGS[held]
    lead_id = await holding.lead(routing)
    async with FakeSlack().running() as slack:
        url = f"http://127.0.0.1:{slack.port}/actions/T0/1/abc"
        body = slack_form(button_click("lead.reject", lead_id, holding.colleague_on_slack, url))
        answer = await routing.client.post("/slack/actions", content=body,
                                           headers=slack_headers(body, routing.clock.now))
        assert answer.status_code == 200, answer.text
        [note] = await slack.wait_for(1, timeout=5)
    assert note.body["response_type"] == "ephemeral"
    assert note.body["text"] == (
        f"⚠️ 操作できません: lead {lead_id} {holding.refusal.format(action='reject')}")
    assert (await state(routing, lead_id))["stage"] == held


async def opportunity_of_tanaka(routing: Routing) -> uuid.UUID:
    """Return tanaka's SQL (``handed_to_tanaka``) made an opportunity by its deal."""
    lead_id = await handed_to_tanaka(routing)
    await routing.handle(deal_event(lead_id, uuid.uuid4(), DealPhase.P1))
    assert (await state(routing, lead_id))["stage"] == "opportunity"
    return lead_id


@pytest.mark.parametrize("held", ["sql", "opportunity"])
async def test_a_colleague_cannot_log_a_contact_on_a_field_sales_reps_lead(
        routing: Routing, held: str) -> None:
    # yamada's call would stop tanaka's first-contact and activity clocks, though tanaka
    # never called: contacts on an SQL or an opportunity are its owner's, as on an SAL.
    lead_id = await (handed_to_tanaka if held == "sql" else opportunity_of_tanaka)(routing)
    announced = len(await routing.promoted())
    call = {"kind": "call", "occurred_at": routing.clock.now.isoformat()}
    refused = await act(routing, lead_id, "contacts", rep_id="yamada", **call)
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == (
        f"lead {lead_id} is owned by tanaka; only they can log a contact on it {ASK_THE_OWNER}")
    lead = await state(routing, lead_id)
    assert (lead["stage"], lead["owner_id"], lead["contacts"]) == (held, "tanaka", [])
    assert len(await routing.promoted()) == announced, "nothing announced"

    own = await act(routing, lead_id, "contacts", rep_id="tanaka", **call)
    assert own.status_code == 200, own.text
    assert (await routing.promoted())[-1].reason == "call contact logged by tanaka"
    await routing.put_rep("tanaka", team="field_sales", active=False)
    departed = await act(routing, lead_id, "contacts", rep_id="yamada", **call)
    assert departed.status_code == 200, departed.text
    assert [c["rep_id"] for c in departed.json()["contacts"]] == ["tanaka", "yamada"]


@pytest.mark.parametrize(("action", "held", "target"), [
    ("accept", "sql", "sal"), ("accept", "opportunity", "sal"),
    ("qualify", "opportunity", "sql")])
async def test_a_colleagues_action_nobody_may_take_says_so_not_who_owns_the_lead(
        routing: Routing, action: str, held: str, target: str) -> None:
    # Asking tanaka would not help: the lead cannot make that move at all.
    lead_id = await (handed_to_tanaka if held == "sql" else opportunity_of_tanaka)(routing)
    bant = {"budget": True, "authority": True, "need": True, "timeframe": True}
    refused = await act(routing, lead_id, action, rep_id="yamada",
                        **(bant if action == "qualify" else {}))
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"].startswith(
        f"a lead cannot move from {held} to {target}"), refused.text


@pytest.mark.parametrize(("queued", "owner_departed", "account_owner"), [
    (False, False, "sato"), (True, False, "suzuki"), (False, True, "suzuki")],
    ids=["assigned", "queued", "owner-departed"])
async def test_a_colleague_may_take_an_mql_and_reject_it_but_not_an_owned_account(
        routing: Routing, queued: bool, owner_departed: bool, account_owner: str) -> None:
    # Taking a lead takes that lead: its account stays with sato, who owns it since the
    # round robin gave them its first lead, and is the taker's only if nobody (still on
    # the team) owned it.
    lead_id = await (queued_for_sdr if queued else assigned_to_sato)(routing)
    if owner_departed:
        await routing.put_rep("sato", team="sdr", active=False)
    taken = await act(routing, lead_id, "accept", rep_id="suzuki")
    assert taken.status_code == 200, taken.text
    assert taken.json()["assignments"][-1]["rule"] == "taken"
    rejected = await act(routing, lead_id, "reject", rep_id="suzuki", reason="対象外")
    assert rejected.status_code == 200 and rejected.json()["stage"] == "nurture", rejected.text

    same_account = lead_scored()
    await routing.handle(same_account)
    decision = (await state(routing, same_account.lead_id))["assignments"][-1]
    assert (decision["rep_id"], decision["rule"]) == (account_owner, "account_owner")


@pytest.mark.parametrize("held", HOLDINGS)
async def test_a_departed_reps_lead_stays_open_to_the_team(routing: Routing,
                                                           held: str) -> None:
    holding = HOLDINGS[held]
    lead_id = await holding.lead(routing)
    await routing.put_rep(holding.owner, team=holding.team, active=False)
    rejected = await act(routing, lead_id, "reject", rep_id=holding.colleague,
                         reason="担当退職のため")
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["history"][-1]["reason"] == (
        f"rejected by {holding.colleague}: 担当退職のため")
