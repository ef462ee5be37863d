"""The whole stack, as `make run` starts it: a hot lead travels to Slack."""

from __future__ import annotations

import time

import httpx
import pytest
from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, HeaderBlock

from tests.support.fake_slack import FakeSlack
from tests.support.stack import port_open, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
API_KEY = "e2e-source-key-0123456789"

DEMO_REQUEST = {
    "email": "Taro.Yamada@Example.co.jp",
    "name": "山田 太郎",
    "company": "株式会社サンプル製作所",
    "title": "製造部 部長",
    "industry": "製造業",
    "employee_band": "500-999",
    "touchpoint": {"type": "inquiry.demo_request"},
}


async def test_a_demo_request_reaches_slack_as_a_hot_lead_alert_within_three_seconds() -> None:
    async with FakeSlack().running() as slack, running_stack({
        "BATON_SLACK_WEBHOOK_URL": slack.webhook_url,
        "BATON_INGEST_API_KEYS": f"website={API_KEY}",
    }) as stack:
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{stack.url('ingest')}/v1/leads", json=DEMO_REQUEST,
                                         headers={"X-API-Key": API_KEY})
            accepted_at = time.time()
            assert response.status_code == 202, response.text
            lead_id = response.json()["lead_id"]
            [message] = await slack.wait_for(1, timeout=10)
            latency = message.arrived_at - accepted_at
            assert latency < 3.0, f"alert took {latency:.2f}s"

            blocks = [Block.parse(block) for block in message.body["blocks"]]
            assert isinstance(blocks[0], HeaderBlock) and blocks[0].text is not None
            assert "株式会社サンプル製作所" in blocks[0].text.text
            [actions] = [block for block in blocks if isinstance(block, ActionsBlock)]
            buttons = [e for e in actions.elements if isinstance(e, ButtonElement)]
            assert [(b.action_id, b.value) for b in buttons] == [
                ("lead.accept", lead_id), ("lead.reject", lead_id)]
            assert "山田 太郎" in message.body["text"]

            state = (await client.get(f"{stack.url('routing')}/v1/leads/{lead_id}")).json()
            assert state["stage"] == "mql"
            score = (await client.get(f"{stack.url('scoring')}/v1/leads/{lead_id}/score")).json()
            assert score["tier"] == "A"
            assert {r["code"] for r in score["reasons"]} >= {"inquiry.demo_request",
                                                              "fit.title.manager"}
        assert any(line.startswith("  ingest ") for line in stack.output), "addresses printed"

    assert stack.process.returncode == 0
    assert stack.output[-1] == "baton run: stopped"
    assert not [port for port in stack.ports if port_open(port)], "a port was left open"
