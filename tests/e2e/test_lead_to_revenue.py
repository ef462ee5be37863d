"""Across the services: an SQL becomes a deal that is won, and a zombie deal is recycled."""

from __future__ import annotations

import re
import uuid
from datetime import time
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.kafka import wait_until
from tests.support.stack import RunningStack, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
API_KEY = "e2e-source-key-0123456789"
ALWAYS_WORKING = {"timezone": "Asia/Tokyo", "starts": time(0).isoformat(),
                  "ends": "23:59:59", "workdays": [1, 2, 3, 4, 5, 6, 7], "holidays": None}
CRITERIA = {"problem_agreed": True, "business_issue": "受注処理が手作業", "problem": "入力ミス",
            "solution": "Baton 導入", "benefit": "処理時間 80% 削減", "demo_done": True,
            "quote_presented": True, "approval_route": "部長→役員会", "legal_checked": True,
            "final_terms_agreed": True, "approval_requested": True}


def hot_lead(email: str) -> dict[str, Any]:
    return {"email": email, "name": "鈴木 一郎", "company": "株式会社ミライ製作所",
            "title": "購買部 部長", "industry": "製造業", "employee_band": "1000+",
            "touchpoint": {"type": "inquiry.quote_request"}}


def database_url(stack: RunningStack) -> str:
    """Return the embedded database URL the stack printed."""
    for line in stack.output:
        if match := re.match(r"\s+database\s+(postgresql://\S+)", line):
            return match.group(1)
    raise AssertionError("the stack did not print its database")


async def stage_of(client: httpx.AsyncClient, stack: RunningStack, lead_id: str) -> str:
    response = await client.get(f"{stack.url('routing')}/v1/leads/{lead_id}")
    return str(response.json()["stage"]) if response.status_code == 200 else "unknown"


async def wait_for_stage(client: httpx.AsyncClient, stack: RunningStack, lead_id: str,
                         stage: str) -> None:
    async def reached() -> bool:
        return await stage_of(client, stack, lead_id) == stage

    await wait_until(reached, 30, f"lead {lead_id} to reach {stage}")


async def deal_of(client: httpx.AsyncClient, stack: RunningStack, lead_id: str
                  ) -> dict[str, Any]:
    """Return the lead's deal once pipeline has opened it."""
    found: list[dict[str, Any]] = []

    async def opened() -> bool:
        found[:] = (await client.get(f"{stack.url('pipeline')}/v1/leads/{lead_id}/deals")).json()
        return bool(found)

    await wait_until(opened, 30, f"a deal for lead {lead_id}")
    return found[0]


async def sql_lead(client: httpx.AsyncClient, stack: RunningStack, email: str) -> str:
    """Post a hot lead and take it to SQL through the sales team's actions."""
    posted = await client.post(f"{stack.url('ingest')}/v1/leads", json=hot_lead(email),
                               headers={"X-API-Key": API_KEY})
    assert posted.status_code == 202, posted.text
    lead_id = str(posted.json()["lead_id"])
    await wait_for_stage(client, stack, lead_id, "mql")
    routing = stack.url("routing")
    accepted = await client.post(f"{routing}/v1/leads/{lead_id}/accept", json={"rep_id": "sdr-1"})
    assert accepted.status_code == 200, accepted.text
    qualified = await client.post(f"{routing}/v1/leads/{lead_id}/qualify", json={
        "rep_id": "sdr-1", "budget": True, "authority": True, "need": True, "timeframe": True})
    assert qualified.status_code == 200, qualified.text
    assert qualified.json()["stage"] == "sql"
    return lead_id


async def test_an_sql_deal_is_won_and_a_zombie_deal_sends_its_lead_back_to_nurture() -> None:
    environment = {"BATON_INGEST_API_KEYS": f"website={API_KEY}",
                   "BATON_ZOMBIE_SWEEP_INTERVAL_SECONDS": "0.5"}
    async with running_stack(environment) as stack, httpx.AsyncClient(timeout=10) as client:
        for rep_id, team in (("sdr-1", "sdr"), ("field-1", "field_sales")):
            response = await client.put(f"{stack.url('routing')}/v1/reps/{rep_id}", json={
                "name": rep_id, "team": team, "working_hours": ALWAYS_WORKING})
            assert response.status_code == 200, response.text

        won_lead = await sql_lead(client, stack, f"won-{uuid.uuid4().hex[:6]}@mirai.co.jp")
        deal = await deal_of(client, stack, won_lead)
        assert (deal["phase"], deal["owner_id"]) == ("P1", "field-1")
        await wait_for_stage(client, stack, won_lead, "opportunity")
        pipeline = stack.url("pipeline")
        deal_url = f"{pipeline}/v1/deals/{deal['deal_id']}"
        field_rep = {"rep_id": "field-1"}
        patched = await client.patch(deal_url, json={**field_rep, "amount": 12_000_000,
                                                     "criteria": CRITERIA})
        assert patched.status_code == 200, patched.text
        for phase in ("P2", "P3", "P4", "P5"):
            moved = await client.post(f"{deal_url}/advance",
                                      json={**field_rep, "to_phase": phase})
            assert moved.status_code == 200, moved.text
        won = await client.post(f"{deal_url}/win", json=field_rep)
        assert won.status_code == 200, won.text
        await wait_for_stage(client, stack, won_lead, "won")

        zombie_email = f"zombie-{uuid.uuid4().hex[:6]}@mirai.co.jp"
        zombie_lead = await sql_lead(client, stack, zombie_email)
        zombie = await deal_of(client, stack, zombie_lead)
        await wait_for_stage(client, stack, zombie_lead, "opportunity")
        # 91 days without a phase change, arranged in the pipeline's own table.
        connection = await asyncpg.connect(database_url(stack))
        try:
            await connection.execute(
                "UPDATE pipeline.deals SET phase_changed_at = now() - interval '91 days', "
                "opened_at = now() - interval '91 days' WHERE deal_id = $1",
                uuid.UUID(zombie["deal_id"]))
        finally:
            await connection.close()
        await wait_for_stage(client, stack, zombie_lead, "nurture")
        recycled = (await client.get(f"{pipeline}/v1/deals/{zombie['deal_id']}")).json()
        assert (recycled["is_open"], recycled["outcome"]) == (False, "recycled"), recycled
        history = (await client.get(f"{stack.url('routing')}/v1/leads/{zombie_lead}")).json()
        assert "recycled" in history["history"][-1]["reason"]

        score_url = f"{stack.url('scoring')}/v1/leads/{zombie_lead}/score"
        score: dict[str, Any] = {}

        async def baseline_reset() -> bool:
            score.update((await client.get(score_url)).json())
            return score.get("behaviour_counted_since") is not None

        await wait_until(baseline_reset, 30, "scoring to reset the recycled lead's baseline")
        assert score["tier"] != "A", "the lead must earn MQL again"
        assert "inquiry.quote_request" not in {r["code"] for r in score["reasons"]}
