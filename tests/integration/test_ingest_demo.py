"""`baton demo` against the whole stack: a new user sees hot-lead alerts within a minute, and
the demo's own sales organisation takes hot leads on to SQLs and deals."""

from __future__ import annotations

import itertools
import time

import httpx
import pytest

from baton.demo import DEMO_REP_IDS, TrafficGenerator, post_stream, run_demo, set_up_sales_org
from tests.support.fake_slack import FakeSlack
from tests.support.stack import running_stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]
API_KEY = "demo-test-key-0123456789"
SEED = 11


async def test_the_demo_stream_gets_hot_leads_alerted_within_a_minute() -> None:
    hot_names = {submission.body["name"] for submission in itertools.islice(
        TrafficGenerator(SEED), 60) if submission.hot}
    async with FakeSlack().running() as slack, running_stack({
        "BATON_SLACK_WEBHOOK_URL": slack.webhook_url,
        "BATON_INGEST_API_KEYS": f"demo={API_KEY}",
    }) as stack:
        started = time.monotonic()
        code = await post_stream(stack.url("ingest"), API_KEY, count=60, rate=30, seed=SEED)
        assert code == 0, "every demo request was accepted"
        [first, *_] = await slack.wait_for(1, timeout=60 - (time.monotonic() - started))
        assert any(name in first.body["text"] for name in hot_names), first.body["text"]


async def test_the_demo_sets_up_reps_once_and_its_hot_leads_reach_reps_sqls_and_deals(
        capsys: pytest.CaptureFixture[str]) -> None:
    async with running_stack({"BATON_INGEST_API_KEYS": f"demo={API_KEY}"}) as stack, \
            httpx.AsyncClient(timeout=10) as client:
        routing, pipeline = stack.url("routing"), stack.url("pipeline")
        code = await run_demo(stack.url("ingest"), API_KEY, count=60, rate=30, seed=SEED)
        first = capsys.readouterr().out
        reps = {rep["rep_id"]: rep for rep in (await client.get(f"{routing}/v1/reps")).json()}
        assignments = (await client.get(f"{routing}/v1/assignments",
                                        params={"limit": 1000})).json()
        funnel = (await client.get(f"{routing}/v1/funnel")).json()["total"]
        deals = (await client.get(f"{pipeline}/v1/deals")).json()["deals"]
        # The change each demo field rep made last: filling in their deal.
        filled_in = {deal["deal_id"]: (await client.get(
            f"{pipeline}/v1/deals/{deal['deal_id']}/history")).json()[-1]
            for deal in deals if deal["owner_id"] in DEMO_REP_IDS}

        # A user changes a demo rep; the demo runs again and neither adds nor overwrites one.
        changed = {key: value for key, value in reps["demo-sdr-kobayashi"].items()
                   if key != "rep_id"} | {"daily_capacity": 5}
        put = await client.put(f"{routing}/v1/reps/demo-sdr-kobayashi", json=changed)
        assert put.status_code == 200, put.text
        again = await run_demo(stack.url("ingest"), API_KEY, count=3, rate=30, seed=SEED + 1)
        second = capsys.readouterr().out
        reps_again = {rep["rep_id"]: rep
                      for rep in (await client.get(f"{routing}/v1/reps")).json()}

        # Once the user has a rep of their own, the demo leaves the organisation to them.
        own = await client.put(f"{routing}/v1/reps/tanaka", json={"name": "田中 一郎",
                                                                  "team": "sdr"})
        assert own.status_code == 200, own.text
        plan = await set_up_sales_org(client, routing)
        third = capsys.readouterr().out

    assert (code, again) == (0, 0)
    assert set(reps) == DEMO_REP_IDS, "the demo sets up its sales organisation"
    assert "set up a sales organisation" in first and "demo-fs-yamaguchi" in first, first
    assert "PUT " in first and "/v1/reps/{rep_id}" in first, "it says how to add real reps"
    inside = [a for a in assignments if a["team"] == "sdr" and a["rep_id"] in DEMO_REP_IDS]
    field = [a for a in assignments
             if a["team"] == "field_sales" and a["rep_id"] in DEMO_REP_IDS]
    assert inside, f"hot leads are assigned to demo reps: {assignments}"
    assert field, f"an SQL is handed to a demo field rep: {assignments}"
    assert funnel["reached"]["sal"] >= 1 and funnel["reached"]["sql"] >= 1, funnel
    assert funnel["speed_to_acceptance"]["leads"] >= 1, funnel
    opened = [d for d in deals if d["owner_id"] in DEMO_REP_IDS]
    assert opened, f"a deal is open for a demo field rep: {deals}"
    assert all(d["amount"] and d["expected_close_date"] and d["next_action"]
               for d in opened), opened
    assert all(filled_in[d["deal_id"]]["actor"] == d["owner_id"] for d in opened), filled_in
    assert "deals opened" in first and "/v1/deals" in first

    assert "in place" in second, second
    assert set(reps_again) == DEMO_REP_IDS, "no rep added twice"
    assert reps_again["demo-sdr-kobayashi"]["daily_capacity"] == 5, "the user's change is kept"
    assert plan.own == ("tanaka",) and not plan.missing
    assert "1 rep of your own" in third, third
