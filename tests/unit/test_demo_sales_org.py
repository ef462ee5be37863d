"""The demo's sales organisation: valid reps routing assigns to whenever the demo runs, set up
once, never beside or over a user's own reps."""

from __future__ import annotations

import itertools
import json
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from baton.demo import (
    COMPANIES,
    DEMO_REP_IDS,
    DEMO_REPS,
    DemoError,
    TrafficGenerator,
    plan_sales_org,
    set_up_sales_org,
    sibling_url,
)
from baton_runtime.business_time import BusinessCalendar
from services.routing import domain
from services.routing.api import RepIn

ROUTING = "http://127.0.0.1:8003"


def as_routing_sees(body: dict[str, Any]) -> domain.Rep:
    """Return a demo rep as routing's assignment sees it (routing's own body model)."""
    rep = RepIn.model_validate(body)
    hours = rep.working_hours
    return domain.Rep(rep_id="demo", team=rep.team, daily_capacity=rep.daily_capacity,
                      hours=BusinessCalendar(timezone=hours.timezone, opens=hours.starts,
                                             closes=hours.ends, holidays=hours.holidays,
                                             workdays=frozenset(hours.workdays)))


def test_every_demo_rep_is_one_routing_takes() -> None:
    for rep in DEMO_REPS:
        RepIn.model_validate(rep.body())
        assert rep.rep_id.startswith("demo-")
    assert {rep.team for rep in DEMO_REPS} == {"sdr", "field_sales"}
    assert len(DEMO_REP_IDS) == len(DEMO_REPS) == 6


def test_demo_reps_are_working_now_whenever_the_demo_runs() -> None:
    # Weekends, public holidays, night in Tokyo, London or California: any instant of a year.
    rng = random.Random(4)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    instants = [start + timedelta(seconds=rng.randrange(366 * 86400)) for _ in range(2000)]
    instants += [datetime(2026, 5, 3, 14, 59, 59, 999998, tzinfo=UTC),  # 23:59 on a holiday
                 datetime(2026, 11, 21, 15, 0, tzinfo=UTC)]  # midnight in Tokyo, a Sunday
    for rep in DEMO_REPS:
        seen = as_routing_sees(rep.body())
        for at in instants:
            assert domain.unavailable_because(seen, at, assigned_today=0) is None, (rep, at)


def test_every_demo_company_region_has_a_field_rep_and_no_rep_shares_a_lead_name() -> None:
    field_regions = {region for rep in DEMO_REPS if rep.team == "field_sales"
                     for region in rep.regions}
    assert {company.region for company in COMPANIES} == field_regions
    lead_names = {submission.body["name"]
                  for submission in itertools.islice(TrafficGenerator(1), 3000)
                  if "name" in submission.body}
    assert not lead_names & {rep.name for rep in DEMO_REPS}


def test_the_plan_creates_what_is_missing_and_nothing_beside_a_users_own_reps() -> None:
    empty = plan_sales_org([])
    assert (empty.own, empty.present, empty.missing) == ((), (), DEMO_REPS)
    partly = plan_sales_org(["demo-sdr-clark"])
    assert [rep.rep_id for rep in partly.present] == ["demo-sdr-clark"]
    assert "demo-sdr-clark" not in {rep.rep_id for rep in partly.missing}
    assert len(partly.missing) == 5
    assert plan_sales_org(DEMO_REP_IDS).missing == ()
    own = plan_sales_org(["tanaka", "demo-sdr-clark"])
    assert (own.own, own.missing) == (("tanaka",), ())


@pytest.mark.parametrize(("ingest", "service", "expected"), [
    ("http://127.0.0.1:8001", "routing", "http://127.0.0.1:8003"),
    ("http://127.0.0.1:8001/", "pipeline", "http://127.0.0.1:8004"),
    ("http://localhost:9101/v1", "routing", "http://localhost:9103"),
])
def test_routing_and_pipeline_are_found_beside_ingest(ingest: str, service: str,
                                                       expected: str) -> None:
    assert sibling_url(ingest, service) == expected


def test_an_ingest_address_without_a_port_asks_for_the_others() -> None:
    with pytest.raises(DemoError, match="--routing-url"):
        sibling_url("https://ingest.example.com", "routing")


class FakeRouting:
    """Routing's reps API in memory, counting the reps put."""

    def __init__(self, reps: dict[str, dict[str, Any]] | None = None) -> None:
        self.reps = dict(reps or {})
        self.puts: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/v1/reps":
            return httpx.Response(200, json=[{"rep_id": rep_id, **rep}
                                             for rep_id, rep in sorted(self.reps.items())])
        if request.method == "PUT" and request.url.path.startswith("/v1/reps/"):
            rep_id = request.url.path.removeprefix("/v1/reps/")
            self.reps[rep_id] = json.loads(request.content)
            self.puts.append(rep_id)
            return httpx.Response(200, json={"rep_id": rep_id, **self.reps[rep_id]})
        return httpx.Response(404)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))


async def test_set_up_twice_puts_each_demo_rep_once_and_keeps_a_users_changes(
        capsys: pytest.CaptureFixture[str]) -> None:
    routing = FakeRouting()
    async with routing.client() as client:
        await set_up_sales_org(client, ROUTING)
        routing.reps["demo-sdr-clark"]["daily_capacity"] = 5  # the user's change
        await set_up_sales_org(client, ROUTING)
    first, second = capsys.readouterr().out.split("baton demo: ")[1:]

    assert sorted(routing.puts) == sorted(DEMO_REP_IDS)
    assert routing.reps["demo-sdr-clark"]["daily_capacity"] == 5
    assert all(rep.rep_id in first and rep.name in first for rep in DEMO_REPS)
    assert f"PUT {ROUTING}/v1/reps/{{rep_id}}" in first
    assert "in place (6 reps" in second


async def test_set_up_adds_no_demo_rep_beside_a_users_own(
        capsys: pytest.CaptureFixture[str]) -> None:
    routing = FakeRouting({"tanaka": {"name": "田中 一郎", "team": "sdr"}})
    async with routing.client() as client:
        plan = await set_up_sales_org(client, ROUTING)

    assert routing.puts == [] and plan.own == ("tanaka",)
    assert "1 rep of your own" in capsys.readouterr().out


async def test_set_up_says_what_failed_when_routing_cannot_be_reached() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(DemoError, match=re.escape("cannot reach http://127.0.0.1:9/v1/reps")):
            await set_up_sales_org(client, "http://127.0.0.1:9")
