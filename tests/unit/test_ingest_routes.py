"""Single captures' direct path answers every request as FastAPI's own handler would."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from prometheus_client import REGISTRY
from starlette.middleware import Middleware

from baton_runtime.group_commit import GroupCommit
from baton_runtime.http import create_app
from baton_runtime.service import ServiceContext
from baton_runtime.uow import UnitOfWorkFactory
from services.ingest import api, handlers
from services.ingest.access import ApiKey, KeyRing, RateLimiter, hash_api_key, signature
from services.ingest.adapters import MappingFile
from services.ingest.direct import DirectCaptures
from services.ingest.guard import BodyGuard
from services.ingest.settings import IngestSettings
from services.ingest.submissions import Accepted

KEY, SIGNED_KEY, SLOW_KEY = "route-key-0123456789", "route-signed-key-0123", "route-slow-key-01"
SECRET = "bks_route-test-secret"
NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
LEAD = {"email": "Taro@Example.co.jp", "name": "ｔａｒｏ", "phone": "03-1234-5678",
        "touchpoint": {"type": "inquiry.demo_request"}}
ACTIVITY = {"email": "taro@example.co.jp", "type": "page.view", "asset_id": "/pricing"}


class Answers(GroupCommit[handlers.Submitted, handlers.Outcome]):
    """Answers captures without a database: every third one as a replay."""

    def __init__(self) -> None:
        super().__init__(handlers.record_all)
        self.count = 0

    async def run(self, unit_of_work: UnitOfWorkFactory,
                  submitted: handlers.Submitted) -> handlers.Outcome:
        name = submitted.capture.submission.name
        if name == "deadlock":  # what the database raises through asyncpg itself
            raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
        if name == "refused":
            raise asyncpg.exceptions.CheckViolationError("refused")
        if name == "crash":
            raise RuntimeError("something else went wrong")
        self.count += 1
        return handlers.Outcome(Accepted(lead_id=uuid.UUID(int=self.count), event_id="event"),
                                replayed=self.count % 3 == 0)


def app(*, direct: bool) -> FastAPI:
    """Return ingest's app on fake captures; with ``direct`` False, every route is FastAPI's."""
    settings = IngestSettings(database_url="postgresql://unused/",
                              kafka_bootstrap_servers="127.0.0.1:9",
                              ingest_rate_limit_per_minute=1_000_000)
    keys = KeyRing([ApiKey("key_1", "web", hash_api_key(KEY)),
                    ApiKey("key_2", "partner", hash_api_key(SIGNED_KEY), signing_secret=SECRET),
                    ApiKey("key_3", "slow", hash_api_key(SLOW_KEY), rate_limit_per_minute=1)])
    routes = api.router(api.Collaborators(keys, RateLimiter(settings.ingest_rate_limit_per_minute),
                                          MappingFile(), Answers()))
    single_captures = [route for route in routes.routes if isinstance(route, APIRoute)
                       and route.path in ("/v1/leads", "/v1/activities")]
    assert len(single_captures) == 2
    assert not any(type(route) is APIRoute for route in single_captures)  # the direct path
    if not direct:
        plain = APIRouter()
        for route in routes.routes:
            assert isinstance(route, APIRoute)
            plain.add_api_route(route.path, route.endpoint, methods=sorted(route.methods or ()),
                                status_code=route.status_code, response_model=route.response_model,
                                responses=route.responses, openapi_extra=route.openapi_extra,
                                tags=route.tags, summary=route.summary, name=route.name,
                                description=route.description, route_class_override=APIRoute)
        routes = plain
    middleware = [Middleware(BodyGuard, max_body_bytes=64 * 1024)]
    if direct:
        middleware.append(Middleware(DirectCaptures, routes=routes.routes))
    built = create_app(service="ingest", version="test", routers=[routes], readiness={},
                       middleware=middleware)
    built.state.context = ServiceContext("ingest", settings, None, None,  # type: ignore[arg-type]
                                         lambda: NOW)
    return built


Headers = dict[str, str] | list[tuple[str, str]]


def post(path: str, body: Any, **headers: str) -> tuple[str, bytes, Headers]:
    """Return a request: its path, body (JSON unless bytes) and headers."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return path, content, {"Content-Type": "application/json", **headers}


def signed(body: Any, at: str) -> dict[str, str]:
    """Return the headers of a signed request of the signing key."""
    return {"X-API-Key": SIGNED_KEY, "X-Baton-Timestamp": at,
            "X-Baton-Signature": signature(SECRET, at, json.dumps(body).encode())}


REQUESTS: list[tuple[str, bytes, Headers]] = [
    post("/v1/leads", LEAD, **{"X-API-Key": KEY}),
    post("/v1/leads", LEAD, **{"X-API-Key": KEY, "Idempotency-Key": "form-1"}),
    post("/v1/leads", LEAD, **{"X-API-Key": KEY}),  # answered as a replay
    post("/v1/leads", {**LEAD, "honeypot": "spam"}, **{"X-API-Key": KEY}),
    post("/v1/leads", LEAD),
    post("/v1/leads", LEAD, **{"X-API-Key": ""}),
    post("/v1/leads", LEAD, **{"X-API-Key": "not-a-key-of-ours"}),
    post("/v1/leads", {"email": "nobody"}),  # unauthenticated: 401 before the field errors
    post("/v1/leads", {"email": "nobody", "extra": 1}, **{"X-API-Key": KEY}),
    post("/v1/leads", LEAD, **{"X-API-Key": KEY, "Idempotency-Key": "with space"}),
    post("/v1/leads", {"email": 3}, **{"X-API-Key": KEY, "Idempotency-Key": ""}),
    post("/v1/leads", b"{not json"),  # JSON errors come before authentication
    post("/v1/leads", b"", **{"X-API-Key": KEY}),
    post("/v1/leads", b"[1]", **{"X-API-Key": KEY}),
    post("/v1/leads", b"\xff\xfe{", **{"X-API-Key": KEY}),
    post("/v1/leads", b"\xef\xbb\xbf" + json.dumps(LEAD).encode(), **{"X-API-Key": KEY}),
    post("/v1/leads", LEAD, **{"X-API-Key": SIGNED_KEY}),
    post("/v1/leads", LEAD, **signed(LEAD, str(int(NOW.timestamp())))),
    post("/v1/leads", LEAD, **signed(LEAD, "1000")),
    post("/v1/leads", LEAD, **{"X-API-Key": SLOW_KEY}),
    post("/v1/leads", LEAD, **{"X-API-Key": SLOW_KEY}),  # over its limit: 429
    ("/v1/leads", json.dumps(LEAD).encode(),  # the first of repeated headers counts
     [("Content-Type", "application/json"), ("X-API-Key", KEY), ("X-API-Key", "other"),
      ("Idempotency-Key", "form-2"), ("Idempotency-Key", "not valid")]),
    post("/v1/activities", ACTIVITY, **{"X-API-Key": KEY}),
    post("/v1/activities", {**ACTIVITY, "type": "appointment.set"}, **{"X-API-Key": KEY}),
    post("/v1/activities", {**ACTIVITY, "type": "carrier.pigeon"}),
    post("/v1/leads", {**LEAD, "name": "deadlock"}, **{"X-API-Key": KEY}),  # 503
    post("/v1/leads", {**LEAD, "name": "refused"}, **{"X-API-Key": KEY}),  # 500
    post("/v1/activities", {**ACTIVITY, "name": "crash"}, **{"X-API-Key": KEY}),  # 500
    post("/v1/leads/", LEAD, **{"X-API-Key": KEY}),  # not the route's path
    post("/v1/leads?x=1", LEAD, **{"X-API-Key": KEY}),
]


def observations() -> dict[tuple[str, str], float]:
    """Return how many requests RequestMetrics observed so far, by route and status."""
    return {(sample.labels["route"], sample.labels["status"]): sample.value
            for metric in REGISTRY.collect() if metric.name == "baton_http_request_seconds"
            for sample in metric.samples if sample.name.endswith("_count")}


async def test_single_captures_answer_as_fastapi_does_and_document_the_same() -> None:
    answers: dict[bool, list[tuple[int, dict[str, str], Any]]] = {}
    observed: dict[bool, dict[tuple[str, str], float]] = {}
    for direct in (True, False):
        before = observations()
        transport = httpx.ASGITransport(app=app(direct=direct), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers[direct] = []
            for path, content, headers in REQUESTS:
                response = await client.post(path, content=content, headers=headers)
                body: Any = response.json() if response.headers.get(
                    "content-type") == "application/json" else response.text
                answers[direct].append((response.status_code, dict(response.headers), body))
        observed[direct] = {labels: count - before.get(labels, 0)
                            for labels, count in observations().items()}
    assert answers[True] == answers[False]
    assert observed[True] == observed[False], "RequestMetrics labels the same routes"
    statuses = {status for status, _, _ in answers[True]}
    assert statuses == {202, 307, 400, 401, 403, 422, 429, 500, 503}
    assert any("idempotent-replayed" in headers for _, headers, _ in answers[True])
    assert app(direct=True).openapi() == app(direct=False).openapi()
