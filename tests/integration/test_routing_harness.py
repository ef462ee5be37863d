"""Routing in-process for integration tests: migrated database, real app, a clock tests move.

Holds no tests: test_routing_api.py and test_routing_events.py share it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton import registry
from baton_runtime.consumer import handle_in_order
from baton_runtime.db import create_engine
from baton_runtime.http import create_app
from baton_runtime.migrations import upgrade
from baton_runtime.service import ServiceContext, ServiceDefinition
from baton_runtime.uow import unit_of_work_factory
from schemas.envelope import decode
from schemas.events import (
    Account,
    Event,
    LeadProfile,
    LeadPromoted,
    LeadScored,
    ScoreReason,
    Tier,
    TouchpointType,
)
from services.routing import main, store
from services.routing.settings import RoutingSettings
from tests.support.clock import ManualClock

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
WEDNESDAY_10_JST = datetime(2026, 11, 18, 1, 0, tzinfo=UTC)


def lead_scored(*, tier: Tier = Tier.A, score: int = 85, source: str = "web-form",
                touchpoint: TouchpointType = TouchpointType.PAGE_VIEW_PRICING,
                domain: str = "sample.co.jp", partner: str | None = None,
                lead_id: uuid.UUID | None = None) -> LeadScored:
    """Return a realistic lead.scored event."""
    return LeadScored(
        lead_id=lead_id or uuid.uuid4(), scored_at=WEDNESDAY_10_JST, score=score, tier=tier,
        reasons=[ScoreReason(code="inquiry.demo_request", label="デモ依頼", points=50),
                 ScoreReason(code="fit.title.manager", label="役職: 部長", points=10)],
        model_version="2026.1", source=source, last_touchpoint=touchpoint, partner=partner,
        profile=LeadProfile(email=f"taro@{domain}", name="山田 太郎",
                            company="株式会社サンプル製作所", title="製造部 部長",
                            industry="製造業", employee_band="500-999", region="関東"),
        account=Account(account_key=domain, domain=domain, company_name="株式会社サンプル製作所"),
    )


def rep_body(team: str = "sdr", **changes: Any) -> dict[str, Any]:
    """Return a PUT /v1/reps body: works 09:00-18:00 in Tokyo, Monday to Friday."""
    return {"name": "佐藤 花子", "team": team, **changes}


def slack_form(payload: dict[str, Any]) -> bytes:
    """Return the body Slack posts: the payload JSON in a form field."""
    return urlencode({"payload": json.dumps(payload, ensure_ascii=False)}).encode()


def slack_headers(body: bytes, at: datetime, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """Return the headers of a request Slack signed at ``at``."""
    timestamp = str(int(at.timestamp()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded"}


def button_click(action_id: str, lead_id: uuid.UUID, user: str, response_url: str
                 ) -> dict[str, Any]:
    """Return a block_actions payload for a click on a hot-lead alert's button."""
    return {
        "type": "block_actions", "user": {"id": user, "username": "hanako"},
        "actions": [{"action_id": action_id, "block_id": f"lead:{lead_id}",
                     "value": str(lead_id), "type": "button"}],
        "response_url": response_url,
        "message": {"text": "🔥 ホットリード: 株式会社サンプル製作所", "blocks": [
            {"type": "header", "block_id": "head",
             "text": {"type": "plain_text", "text": "🔥 ホットリード: 株式会社サンプル製作所"}},
            {"type": "actions", "block_id": f"lead:{lead_id}", "elements": []}]},
    }


@dataclass
class Routing:
    """Routing's app and handlers over a migrated database, on a manual clock."""

    definition: ServiceDefinition
    context: ServiceContext
    client: httpx.AsyncClient
    engine: AsyncEngine
    clock: ManualClock

    async def handle(self, *events: Event) -> None:
        """Run the events' handlers on them in one unit of work, as the consumer loop runs a
        batch: each topic's run of events in order, after the batch's locks."""
        async with self.context.unit_of_work() as uow:
            await handle_in_order(self.definition.handlers,
                                  [(event.topic, event) for event in events], uow,
                                  self.definition.lock_first)
            await uow.commit()

    async def promoted(self) -> list[LeadPromoted]:
        """Return every lead.promoted in the outbox, oldest first."""
        outbox = store.plumbing.outbox
        async with self.engine.connect() as connection:
            rows = await connection.execute(select(outbox).order_by(outbox.c.id))
            events = [decode(row.topic, row.key, list(zip(row.header_names, row.header_values,
                                                          strict=True)), row.value).event
                      for row in rows]
        return [event for event in events if isinstance(event, LeadPromoted)]

    async def put_rep(self, rep_id: str, **body: Any) -> dict[str, Any]:
        """Create a rep through the API and return it."""
        response = await self.client.put(f"/v1/reps/{rep_id}", json=rep_body(**body))
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


@asynccontextmanager
async def running_routing(database_url: str, **overrides: Any) -> AsyncIterator[Routing]:
    """Yield routing on a freshly migrated database with Slack verification on.

    Without a broker in ``overrides`` nothing is published: events stay in the outbox.
    """
    await asyncio.to_thread(upgrade, registry.migrations_dir("routing"), database_url)
    settings = RoutingSettings(**{
        "kafka_bootstrap_servers": "127.0.0.1:9", "slack_signing_secret": SIGNING_SECRET,
        "slack_response_hosts": frozenset({"127.0.0.1", "hooks.slack.com"}),
        **overrides, "database_url": database_url})
    clock = ManualClock(WEDNESDAY_10_JST)
    definition = main.definition(settings, clock)
    engine = create_engine(database_url, pool_size=4)
    context = ServiceContext("routing", settings, engine,
                             unit_of_work_factory(engine, definition.tables, definition.source),
                             clock)
    app = create_app(service="routing", version="test", routers=definition.routers,
                     readiness={})
    app.state.context = context
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://routing") as client:
            yield Routing(definition, context, client, engine, clock)
    finally:
        await engine.dispose()
