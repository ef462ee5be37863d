"""`GET /v1/deals` over real PostgreSQL: filters, most recently changed first, cursor paging,
Japanese text, and 422s for filters no answer fits."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from baton import registry
from baton_runtime import migrations
from baton_runtime.db import create_engine
from baton_runtime.http import create_app
from baton_runtime.service import ServiceContext
from baton_runtime.uow import unit_of_work_factory
from schemas.events import DealPhase
from services.pipeline import domain, main, store
from services.pipeline.domain import Deal, NextAction, Outcome
from services.pipeline.settings import PipelineSettings
from tests.support.clock import ManualClock
from tests.support.infrastructure import PostgresServer

pytestmark = pytest.mark.integration
START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo, in FY2026-Q3
# Nothing listens there: the API's events wait in the outbox, and nothing here reads them.
NO_BROKER = "127.0.0.1:9"
EVERY_CRITERION = {"problem_agreed": True, "business_issue": "受注処理が手作業",
                   "problem": "入力ミス", "solution": "Baton 導入", "benefit": "工数 80% 削減",
                   "demo_done": True, "quote_presented": True, "approval_route": "部長→役員会",
                   "legal_checked": True, "final_terms_agreed": True,
                   "approval_requested": True}
SATO, INOUE = "営業-佐藤", "営業-井上"
# The sales-ops rep who enters every change here.
OPS = {"rep_id": "ops-kato"}
EAST, WEST = "フィールドセールス東日本", "フィールドセールス西日本"
TOWA = "株式会社東和精機"
NORTHWIND = "Northwind Robotics Inc."
HOKUTO = "北斗ソフトウェア株式会社"
SAKURA = "さくら信用金庫"
NIHONBASHI = "株式会社日本橋ロジスティクス"
MINATO = "株式会社みなと電子工業"


@dataclass
class DealApi:
    """Pipeline's API in this process over a fresh database, with a hand-moved clock."""

    client: httpx.AsyncClient
    context: ServiceContext
    clock: ManualClock

    async def page(self, **params: Any) -> dict[str, Any]:
        """Return one page of ``GET /v1/deals``, asserting it was answered 200."""
        response = await self.client.get("/v1/deals", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def listed(self, **params: Any) -> list[str]:
        """Return the companies of every deal the filters keep, following the cursors."""
        companies: list[str] = []
        cursor = None
        for _ in range(100):
            body = await self.page(**params, **({"cursor": cursor} if cursor else {}))
            companies += [deal["company"] for deal in body["deals"]]
            if (cursor := body["next_cursor"]) is None:
                return companies
        raise AssertionError("the cursors never ended")

    async def send(self, method: str, url: str, body: Any = None) -> dict[str, Any]:
        """Return the JSON of a successful call, one minute after the previous one."""
        self.clock.advance(minutes=1)
        response = await self.client.request(method, url, json=body)
        assert response.status_code in (200, 201), response.text
        answer: dict[str, Any] = response.json()
        return answer


@contextlib.asynccontextmanager
async def deal_api(postgres: PostgresServer, **overrides: Any) -> AsyncIterator[DealApi]:
    """Yield pipeline's API over a fresh, migrated database (with settings ``overrides``)."""
    database_url = await postgres.create_database()
    await asyncio.to_thread(migrations.upgrade, registry.migrations_dir("pipeline"),
                            database_url)
    settings = PipelineSettings(database_url=database_url, kafka_bootstrap_servers=NO_BROKER,
                                **overrides)
    clock = ManualClock(START)
    definition = main.definition(settings, clock)
    engine = create_engine(database_url)
    context = ServiceContext("pipeline", settings, engine, unit_of_work_factory(
        engine, definition.tables, definition.source), clock)
    app = create_app(service="pipeline", version="test", routers=definition.routers,
                     readiness={})
    app.state.context = context
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://pipeline") as client:
            yield DealApi(client, context, clock)
    finally:
        await engine.dispose()


async def seed(api: DealApi) -> dict[str, str]:
    """Open six deals a minute apart, then change five of them (one recycled by the
    sweep's store call); return each company's deal id.

    Most recently changed first, they list as 北斗 (held), 日本橋 (recycled), Northwind
    (lost), さくら (won), 東和 (P2), then みなと, opened last and never changed.
    """
    opened = {}
    for company, owner, team, closes in (
            (TOWA, SATO, EAST, date(2026, 12, 15)),
            (NORTHWIND, "walker", "global", date(2027, 1, 20)),
            (HOKUTO, SATO, EAST, date(2027, 2, 10)),
            (SAKURA, INOUE, WEST, date(2026, 12, 1)),
            (NIHONBASHI, INOUE, WEST, None),
            (MINATO, SATO, EAST, date(2026, 12, 20))):
        deal = await api.send("POST", "/v1/deals", {
            **OPS, "lead_id": str(uuid.uuid4()), "owner_id": owner, "team": team,
            "company": company, "amount": 5_000_000, "expected_close_date": closes and str(closes),
            "next_action": {"due": "2026-12-01", "text": "初回訪問でヒアリング"}})
        opened[company] = deal["deal_id"]
    towa, northwind, hokuto, sakura = (f"/v1/deals/{opened[company]}"
                                       for company in (TOWA, NORTHWIND, HOKUTO, SAKURA))
    await api.send("PATCH", towa, {**OPS, "criteria": {"problem_agreed": True}})
    await api.send("POST", f"{towa}/advance", OPS)
    await api.send("PATCH", sakura, {**OPS, "criteria": EVERY_CRITERION})
    await api.send("POST", f"{sakura}/advance", {**OPS, "to_phase": "P5"})
    await api.send("POST", f"{sakura}/win", {**OPS, "note": "受注！"})
    await api.send("POST", f"{northwind}/lose",
                   {**OPS, "reason": api.context.settings.lost_reasons[0]})
    api.clock.advance(minutes=1)
    async with api.context.unit_of_work() as uow:
        idle = await store.get_deal(uow.connection, uuid.UUID(opened[NIHONBASHI]), lock=True)
        assert idle is not None
        await store.save_recycled(uow.connection, [
            domain.recycle(idle, api.clock(), "no phase change for 90 days")], at=api.clock())
        await uow.commit()
    await api.send("PUT", f"{hokuto}/hold",
                   {**OPS, "until": "2027-01-31", "reason": "予算確定待ち"})
    return opened


NEWEST_FIRST = [HOKUTO, NIHONBASHI, NORTHWIND, SAKURA, TOWA, MINATO]


async def test_deals_list_most_recently_changed_first_with_every_filter(
        postgres: PostgresServer) -> None:
    async with deal_api(postgres) as api:
        await seed(api)
        first = await api.page()
        cases = {
            "everyone": await api.listed(),
            "owner": await api.listed(owner_id=SATO),
            "team": await api.listed(team=WEST),
            "P1": await api.listed(phase="P1"),
            "P1 or P2": await api.listed(phase=["P1", "P2"]),
            "open P1": await api.listed(phase="P1", is_open="true"),
            "open": await api.listed(is_open="true"),
            "closed": await api.listed(is_open="false"),
            "won": await api.listed(outcome="won"),
            "lost or recycled": await api.listed(outcome=["lost", "recycled"]),
            "December": await api.listed(expected_close="2026-12"),
            "FY2026-Q4": await api.listed(expected_close="FY2026-Q4"),
            "FY2026": await api.listed(expected_close="FY2026"),
            "FY2027": await api.listed(expected_close="FY2027"),
            "Sato's open December": await api.listed(owner_id=SATO, is_open="true",
                                                     expected_close="2026-12"),
            "closed in November": await api.listed(closed="2026-11"),
            "won in FY2026-Q3": await api.listed(outcome="won", closed="FY2026-Q3"),
            "closed in December": await api.listed(closed="2026-12"),
            "won in November, expected in December": await api.listed(
                closed="2026-11", expected_close="2026-12"),
            "without an expected close": await api.listed(has_expected_close="false"),
            "open with an expected close": await api.listed(is_open="true",
                                                            has_expected_close="true"),
        }

    assert first["next_cursor"] is None and len(first["deals"]) == 6, "one page by default"
    assert cases == {
        "everyone": NEWEST_FIRST,
        "owner": [HOKUTO, TOWA, MINATO],
        "team": [NIHONBASHI, SAKURA],
        # A recycled deal keeps the phase it idled in.
        "P1": [HOKUTO, NIHONBASHI, MINATO],
        "P1 or P2": [HOKUTO, NIHONBASHI, TOWA, MINATO],
        "open P1": [HOKUTO, MINATO],
        "open": [HOKUTO, TOWA, MINATO],
        "closed": [NIHONBASHI, NORTHWIND, SAKURA],
        "won": [SAKURA],
        "lost or recycled": [NIHONBASHI, NORTHWIND],
        "December": [SAKURA, TOWA, MINATO],
        "FY2026-Q4": [HOKUTO, NORTHWIND],
        "FY2026": [HOKUTO, NORTHWIND, SAKURA, TOWA, MINATO],
        "FY2027": [],
        "Sato's open December": [TOWA, MINATO],
        "closed in November": [NIHONBASHI, NORTHWIND, SAKURA],
        "won in FY2026-Q3": [SAKURA],
        "closed in December": [],
        "won in November, expected in December": [SAKURA],
        "without an expected close": [NIHONBASHI],
        "open with an expected close": [HOKUTO, TOWA, MINATO],
    }


def weighted(deals: list[dict[str, Any]]) -> int:
    """Return the deals' amounts x their phase probability, summed and rounded once."""
    cents: int = sum((d["amount"] or 0) * d["probability"] for d in deals)
    return (cents + 50) // 100


async def test_the_forecast_counts_the_deals_the_list_shows_for_each_period(
        postgres: PostgresServer) -> None:
    async with deal_api(postgres) as api:
        await seed(api)
        forecast = (await api.client.get("/v1/forecast", params={"fiscal_year": 2026})).json()
        listed = {label: (await api.page(is_open="true", expected_close=label),
                          await api.page(outcome="won", closed=label))
                  for label in ("2026-12", "2026-11", "FY2026-Q3", "FY2026-Q4", "FY2026")}

    [everyone] = [g for g in forecast["groups"] if g["scope"] == "all"]
    numbers = {p["period"]: p for p in everyone["periods"]}
    for label, (open_deals, won_deals) in listed.items():
        shown = numbers[label]
        assert (shown["deals"], shown["pipeline"], shown["weighted"]) == (
            len(open_deals["deals"]), sum(d["amount"] for d in open_deals["deals"]),
            weighted(open_deals["deals"])), label
        assert shown["won"] == sum(d["amount"] for d in won_deals["deals"]), label
        assert shown["won_deals"] == len(won_deals["deals"]), label
        # Won deals at the phase table's 100 %, open ones at their phase's probability.
        assert shown["forecast"] == weighted(won_deals["deals"] + open_deals["deals"]), label
    # さくら, expected to close on 1 December, was won on 20 November: November's.
    assert (numbers["2026-11"]["won"], numbers["2026-12"]["won"]) == (5_000_000, 0)
    assert numbers["2026-11"]["forecast"] == 5_000_000


async def test_the_deal_list_shows_every_deal_the_forecast_counts_as_unscheduled(
        postgres: PostgresServer) -> None:
    async with deal_api(postgres) as api:
        await seed(api)
        # Open deals without an expected close date (the seed's only one was recycled):
        # one in P4 (commit), one without an amount, for two owners of one team.
        for owner, amount in ((SATO, 7_000_000), (INOUE, None)):
            deal = await api.send("POST", "/v1/deals", {
                **OPS, "lead_id": str(uuid.uuid4()), "owner_id": owner, "team": WEST,
                "company": f"未定の{owner}", "amount": amount})
            if amount:
                url = f"/v1/deals/{deal['deal_id']}"
                await api.send("PATCH", url, {**OPS, "criteria": EVERY_CRITERION})
                await api.send("POST", f"{url}/advance", {**OPS, "to_phase": "P4"})
        forecast = (await api.client.get("/v1/forecast", params={"fiscal_year": 2026})).json()
        groups = {(g["scope"], g["name"]): g["unscheduled"] for g in forecast["groups"]}
        listed = {}
        for scope, name in groups:
            group = {"owner": {"owner_id": name}, "team": {"team": name}}.get(scope, {})
            listed[(scope, name)] = (await api.page(
                is_open="true", has_expected_close="false", limit=200, **group))["deals"]

    assert groups[("all", None)]["deals"] == 2, "the test counts something"
    for key, deals in listed.items():
        assert groups[key] == {
            "deals": len(deals), "pipeline": sum(d["amount"] or 0 for d in deals),
            "weighted": weighted(deals),
            "commit": sum(d["amount"] or 0 for d in deals if d["phase"] in ("P4", "P5")),
        }, key
    assert groups[("team", WEST)]["commit"] == 7_000_000


async def test_deals_list_shows_what_each_deal_is_with_japanese_text_intact(
        postgres: PostgresServer) -> None:
    async with deal_api(postgres) as api:
        opened = await seed(api)
        held = (await api.page(owner_id=SATO, team=EAST, limit=1))["deals"][0]
        won = (await api.page(outcome="won"))["deals"][0]
        recycled = (await api.page(outcome="recycled"))["deals"][0]
        alone = await api.client.get(f"/v1/deals/{opened[HOKUTO]}")

    assert held == alone.json(), "a listed deal reads as the deal itself"
    assert (held["company"], held["owner_id"], held["team"]) == (HOKUTO, SATO, EAST)
    assert held["next_action"]["text"] == "初回訪問でヒアリング"
    assert held["hold"]["reason"] == "予算確定待ち"
    assert held["changed_at"] == "2026-11-20T01:14:00Z", "its hold, the seed's last change"
    assert (won["phase"], won["is_open"], won["outcome"], won["criteria"]["business_issue"]) \
        == ("won", False, "won", "受注処理が手作業")
    assert (recycled["phase"], recycled["outcome"], recycled["close_reason"]) == (
        "P1", "recycled", "no phase change for 90 days")


async def test_deals_list_pages_by_cursor_without_repeats_and_a_change_moves_a_deal_forward(
        postgres: PostgresServer) -> None:
    async with deal_api(postgres) as api:
        opened = await seed(api)
        pages = []
        body = await api.page(limit=2)
        pages.append([deal["company"] for deal in body["deals"]])
        # みなと changes between two pages: it goes to the front, behind this reader.
        await api.send("PATCH", f"/v1/deals/{opened[MINATO]}",
                       {**OPS, "amount": 8_000_000})
        while body["next_cursor"] is not None:
            body = await api.page(limit=2, cursor=body["next_cursor"])
            pages.append([deal["company"] for deal in body["deals"]])
        again = await api.listed(limit=4)
        sato = []
        body = await api.page(limit=2, owner_id=SATO)
        sato.append([deal["company"] for deal in body["deals"]])
        body = await api.page(limit=2, owner_id=SATO, cursor=body["next_cursor"])
        sato.append([deal["company"] for deal in body["deals"]])
        last_cursor = body["next_cursor"]

    assert pages == [NEWEST_FIRST[0:2], NEWEST_FIRST[2:4], NEWEST_FIRST[4:5]]
    assert again == [MINATO, *NEWEST_FIRST[:5]]
    assert sato == [[MINATO, HOKUTO], [TOWA]]
    assert last_cursor is None


async def test_deals_changed_at_the_same_instant_page_by_id(postgres: PostgresServer) -> None:
    async with deal_api(postgres) as api:
        ids = [(await api.client.post("/v1/deals", json={
            **OPS, "lead_id": str(uuid.uuid4()), "owner_id": "sato"})).json()["deal_id"]
            for _ in range(5)]
        seen = []
        body = await api.page(limit=1)
        seen += [deal["deal_id"] for deal in body["deals"]]
        while body["next_cursor"] is not None:
            body = await api.page(limit=1, cursor=body["next_cursor"])
            seen += [deal["deal_id"] for deal in body["deals"]]

    assert seen == sorted(ids, reverse=True), "ties go by deal id, each deal once"


def cursor_of(*parts: Any) -> str:
    """Return a cursor built by hand from ``parts`` (JSON, base64url without padding)."""
    raw = json.dumps(list(parts)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BAD_FILTERS: list[tuple[dict[str, str], str]] = [
    ({"phase": "P9"}, "phase"),
    ({"is_open": "maybe"}, "is_open"),
    ({"outcome": "abandoned"}, "outcome"),
    ({"expected_close": "2026-13"}, "expected_close"),
    ({"expected_close": "FY26"}, "expected_close"),
    ({"expected_close": "２０２６-１２"}, "expected_close"),
    ({"expected_close": "0000-01"}, "expected_close"),
    ({"expected_close": "FY9999"}, "expected_close"),
    ({"limit": "0"}, "limit"),
    ({"limit": "201"}, "limit"),
    ({"owner_id": ""}, "owner_id"),
    ({"owner_id": "x" * 101}, "owner_id"),
    ({"cursor": "not a cursor"}, "cursor"),
    ({"cursor": cursor_of("2026-11-20T01:00:00", str(uuid.uuid4()))}, "cursor"),
    ({"cursor": cursor_of("0001-01-01T00:00:00+14:00", str(uuid.uuid4()))}, "cursor"),
    ({"cursor": cursor_of("2026-11-20T01:00:00+00:00", "not-a-uuid")}, "cursor"),
    ({"cursor": cursor_of("2026-11-20T01:00:00+00:00")}, "cursor"),
    ({"cursor": cursor_of(1, 2)}, "cursor"),
    ({"is_open": "true", "outcome": "won"}, "outcome"),
    ({"is_open": "true", "phase": "won"}, "phase"),
    ({"is_open": "false", "phase": "P1", "outcome": "won"}, "outcome"),
    ({"phase": "lost", "outcome": "won"}, "outcome"),
    ({"closed": "2026-13"}, "closed"),
    ({"closed": "FY9999"}, "closed"),
    ({"closed": "0001-01"}, "closed"),  # its first day begins in year 0 in UTC
    ({"is_open": "true", "closed": "2026-11"}, "closed"),
    ({"has_expected_close": "maybe"}, "has_expected_close"),
    ({"has_expected_close": "false", "expected_close": "2026-12"}, "has_expected_close"),
]


async def test_bad_filters_get_a_422_naming_the_parameter(postgres: PostgresServer) -> None:
    async with deal_api(postgres) as api:
        answers = [(params, await api.client.get("/v1/deals", params=params))
                   for params, _ in BAD_FILTERS]

    for (params, response), (_, field) in zip(answers, BAD_FILTERS, strict=True):
        assert response.status_code == 422, (params, response.text)
        assert [error["loc"][:2] for error in response.json()["detail"]] == [
            ["query", field]], (params, response.text)


def random_deal(rng: random.Random, now: datetime) -> Deal:
    """Return a deal in any state, changed at one of a few instants (ties on purpose)."""
    opened_at = now - timedelta(days=rng.randint(0, 60))
    outcome: Outcome | None = rng.choice([None, None, *Outcome])
    closed_in = {Outcome.WON: DealPhase.WON, Outcome.LOST: DealPhase.LOST}
    phase = closed_in.get(outcome, rng.choice(domain.OPEN_PHASES)) if outcome else (
        rng.choice(domain.OPEN_PHASES))
    return Deal(
        deal_id=uuid.uuid4(), lead_id=uuid.uuid4(), phase=phase,
        owner_id=rng.choice(["佐藤", "sato", None]), team=rng.choice(["東日本", "west", None]),
        company=rng.choice(["株式会社ＡＢＣ商事", "Bluefin Capital Ltd.", None]),
        opened_at=opened_at, phase_changed_at=opened_at,
        expected_close_date=rng.choice([None, date(2026, rng.randint(1, 12), 1)
                                        + timedelta(days=rng.randint(0, 27))]),
        next_action=NextAction(date(2026, 12, 1), "次回訪問"),
        closed_at=None if outcome is None else opened_at, outcome=outcome,
        close_reason=None if outcome is None else "seed")


async def test_every_filter_and_page_size_lists_exactly_what_the_rules_keep_in_order(
        postgres: PostgresServer) -> None:
    rng = random.Random(8)
    async with deal_api(postgres) as api:
        now = api.clock()
        population = [random_deal(rng, now) for _ in range(150)]
        async with api.context.unit_of_work() as uow:
            for deal in population:
                assert await store.insert_deal(uow.connection, domain.Changed(
                    deal, domain.Change(domain.Action.OPENED, None, DealPhase.P1, "seed")))
            await uow.commit()
        fiscal = api.context.settings.rules().fiscal
        zone = api.context.settings.rules().timezone
        for _ in range(40):
            phases = rng.sample(list(DealPhase), rng.randint(0, 2))
            outcomes = rng.sample(list(Outcome), rng.randint(0, 2))
            is_open = rng.choice([None, True, False])
            period = rng.choice([None, "2026-03", "FY2025-Q4", "FY2026", "2026-11"])
            closed = rng.choice([None, None, "2026-10", "FY2026-Q3", "2026-11"])
            dated = rng.choice([None, None, True, False])
            owner, team = rng.choice([None, "佐藤", "sato"]), rng.choice([None, "東日本"])
            params: dict[str, Any] = {"limit": rng.choice([1, 7, 50, 200]),
                                      "phase": [p.value for p in phases],
                                      "outcome": [o.value for o in outcomes]}
            for name, value in (("owner_id", owner), ("team", team),
                                ("expected_close", period), ("closed", closed)):
                if value is not None:
                    params[name] = value
            for name, flag in (("is_open", is_open), ("has_expected_close", dated)):
                if flag is not None:
                    params[name] = str(flag).lower()
            try:
                where = domain.deal_filter(
                    owner_id=owner, team=team, phases=phases, is_open=is_open,
                    outcomes=outcomes, closing=fiscal.period(period) if period else None,
                    closed=fiscal.period(closed).in_zone(zone) if closed else None,
                    has_expected_close=dated)
            except domain.InvalidFilter as refused:
                response = await api.client.get("/v1/deals", params=params)
                assert response.status_code == 422, (params, response.text)
                assert response.json()["detail"][0]["loc"] == ["query", refused.field]
                continue
            ids = []
            cursor = None
            while True:
                body = await api.page(**params, **({"cursor": cursor} if cursor else {}))
                assert len(body["deals"]) <= params["limit"]
                ids += [uuid.UUID(deal["deal_id"]) for deal in body["deals"]]
                if (cursor := body["next_cursor"]) is None:
                    break
            expected = sorted((d for d in population if where.keeps(d)),
                              key=lambda d: (d.opened_at, d.deal_id), reverse=True)
            assert ids == [d.deal_id for d in expected], params


async def test_the_migration_dates_existing_deals_by_their_latest_history_entry(
        postgres: PostgresServer) -> None:
    database_url = await postgres.create_database()
    scripts = registry.migrations_dir("pipeline")
    await asyncio.to_thread(migrations.upgrade, scripts, database_url, "0002")
    deal_id, orphan = uuid.uuid4(), uuid.uuid4()
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            for deal in (deal_id, orphan):
                await connection.execute(text(
                    "INSERT INTO pipeline.deals (deal_id, lead_id, phase, opened_at, "
                    "phase_changed_at, next_action_entered_at) VALUES (:d, :l, 'P2', :o, :p, :n)"),
                    {"d": deal, "l": uuid.uuid4(), "o": START, "p": START + timedelta(days=1),
                     "n": START + timedelta(days=2)})
            for days in (0, 1, 3):
                await connection.execute(text(
                    "INSERT INTO pipeline.phase_history (deal_id, action, to_phase, occurred_at) "
                    "VALUES (:d, 'updated', 'P2', :at)"),
                    {"d": deal_id, "at": START + timedelta(days=days)})
        await asyncio.to_thread(migrations.upgrade, scripts, database_url)
        async with engine.connect() as connection:
            changed: dict[uuid.UUID, datetime] = dict((await connection.execute(text(
                "SELECT deal_id, changed_at FROM pipeline.deals"))).all())
    finally:
        await engine.dispose()

    assert changed == {deal_id: START + timedelta(days=3),  # the latest history entry
                       orphan: START + timedelta(days=2)}  # no history: its latest own time


async def test_deals_show_the_configured_phase_probabilities(postgres: PostgresServer) -> None:
    async with deal_api(postgres, phase_probabilities="P1=5,P2=20,P3=50,P4=70,P5=95") as api:
        opened = await api.send("POST", "/v1/deals", {**OPS, "lead_id": str(uuid.uuid4()),
                                                      "owner_id": "sato"})
        assert opened["probability"] == 5
        listed = (await api.client.get("/v1/deals")).json()["deals"]
        assert [deal["probability"] for deal in listed] == [5]
