"""The app factory's answers to readiness failures and database conflicts."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import REGISTRY
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import text

from baton_runtime.db import create_engine
from baton_runtime.http import create_app
from tests.conftest import Infrastructure

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("through", ["sqlalchemy", "driver"])
async def test_a_deadlock_victim_gets_503_with_retry_after_and_nothing_written(
    infrastructure: Infrastructure, through: str,
) -> None:
    engine = create_engine(infrastructure.database_url)
    table = f"pair_{through}"
    async with engine.begin() as connection:
        await connection.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY, n int)"))
        await connection.execute(text(f"INSERT INTO {table} VALUES (1, 0), (2, 0)"))
    both_locked_first = asyncio.Barrier(2)

    async def cross_update(first: int, second: int) -> None:
        async with engine.begin() as connection:
            update = f"UPDATE {table} SET n = n + 1 WHERE id = "
            await connection.execute(text(update + ":i"), {"i": first})
            await both_locked_first.wait()
            if through == "driver":  # asyncpg's own error, not SQLAlchemy's DBAPIError
                driver = (await connection.get_raw_connection()).driver_connection
                assert driver is not None
                await driver.execute(update + "$1", second)
            else:
                await connection.execute(text(update + ":i"), {"i": second})

    router = APIRouter()

    @router.post("/left")
    async def left() -> dict[str, str]:
        await cross_update(1, 2)
        return {"status": "ok"}

    @router.post("/right")
    async def right() -> dict[str, str]:
        await cross_update(2, 1)
        return {"status": "ok"}

    app = create_app(service="test", version="0", routers=[router], readiness={})
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        responses = await asyncio.gather(client.post("/left"), client.post("/right"))
    async with engine.connect() as connection:
        assert (await connection.execute(text(f"SELECT sum(n) FROM {table}"))).scalar() == 2
    await engine.dispose()
    assert sorted(r.status_code for r in responses) == [200, 503]
    [refused] = [r for r in responses if r.status_code == 503]
    assert refused.headers["Retry-After"] == "1"
    assert "nothing was written" in refused.json()["detail"]


async def test_text_the_database_cannot_store_gets_422_not_500(
    infrastructure: Infrastructure,
) -> None:
    engine = create_engine(infrastructure.database_url)
    router = APIRouter()

    @router.get("/echo")
    async def echo(name: str, kind: str) -> dict[str, str]:
        async with engine.connect() as connection:
            return {"stored": (await connection.execute(
                text(f"SELECT CAST(:name AS {kind})"), {"name": name})).scalar_one()}

    app = create_app(service="test", version="0", routers=[router], readiness={})
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        stored = await client.get("/echo", params={"name": "山田", "kind": "text"})
        as_text = await client.get("/echo", params={"name": "山\x00田", "kind": "text"})
        as_json = await client.get("/echo", params={"name": '"山\\u0000田"', "kind": "jsonb"})
    await engine.dispose()
    assert (stored.status_code, stored.json()) == (200, {"stored": "山田"})
    for refused in (as_text, as_json):
        assert refused.status_code == 422, refused.text
        assert "NUL" in refused.json()["detail"][0]["msg"]


class Named(BaseModel):
    name: str


async def test_a_body_that_is_not_utf8_gets_the_documented_400() -> None:
    router = APIRouter()

    @router.post("/names")
    async def add(named: Named) -> dict[str, str]:
        return {"name": named.name}

    @router.get("/names")
    async def names() -> list[str]:
        return []

    app = create_app(service="test", version="0", routers=[router], readiness={})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        garbled = await client.post("/names", content=b"\xff",
                                    headers={"Content-Type": "application/json"})
        document = (await client.get("/openapi.json")).json()
    assert garbled.status_code == 400
    assert "400" in document["paths"]["/names"]["post"]["responses"]
    assert "400" not in document["paths"]["/names"]["get"]["responses"]


async def test_readiness_names_the_failing_dependency() -> None:
    async def database() -> None:
        return None

    async def broker() -> None:
        raise ConnectionError("no broker at 127.0.0.1:1")

    app = create_app(service="test", version="0", routers=[],
                     readiness={"database": database, "broker": broker})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/readyz")
        health = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": "ok", "broker": "failed: ConnectionError: no broker at 127.0.0.1:1"}
    assert health.status_code == 200


def observed(method: str, route: str, status: str) -> float:
    """Return how many requests the latency histogram has counted for these labels."""
    return REGISTRY.get_sample_value("baton_http_request_seconds_count", {
        "method": method, "route": route, "status": status}) or 0.0


async def test_every_request_is_observed_by_route_template_and_status() -> None:
    router = APIRouter()

    @router.get("/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        if thing_id == 0:
            raise HTTPException(404, "no such thing")
        return {"id": thing_id}

    @router.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    app = create_app(service="test", version="0", routers=[router], readiness={})
    labels = [("GET", "/things/{thing_id}", "200"), ("GET", "/things/{thing_id}", "404"),
              ("GET", "/things/{thing_id}", "422"), ("GET", "/broken", "500"),
              ("GET", "unmatched", "404")]
    before = [observed(*label) for label in labels]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path in ("/things/1", "/things/2", "/things/0", "/things/x", "/broken", "/nowhere"):
            await client.get(path)
    assert [observed(*label) - count for label, count in zip(labels, before, strict=True)
            ] == [2, 1, 1, 1, 1]


async def test_a_lone_surrogate_echoed_in_a_validation_error_gets_422_not_500() -> None:
    class Person(BaseModel):
        name: str = Field(max_length=3)

    router = APIRouter()

    @router.post("/people")
    async def add(request: Request) -> dict[str, str]:
        # Python's json module, like a service parsing a body itself, keeps a lone surrogate.
        try:
            person = Person.model_validate(json.loads(await request.body()))
        except ValidationError as error:
            raise RequestValidationError(error.errors()) from None
        return {"name": person.name}

    app = create_app(service="test", version="0", routers=[router], readiness={})
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/people", content=b'{"name": "\\ud800\\u682a\\u5f0f\\u4f1a"}')
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert (error["loc"], error["input"]) == (["name"], "\ud800株式会")


async def test_a_number_json_cannot_write_echoed_in_a_validation_error_gets_422_not_500(
) -> None:
    class Reading(BaseModel):
        value: float = Field(gt=0)

    router = APIRouter()

    @router.post("/readings")
    async def add(request: Request) -> dict[str, float]:
        # A service parsing a body itself (scoring's model) with Python's JSON parser.
        try:
            reading = Reading.model_validate(json.loads(await request.body()))
        except ValidationError as error:
            raise RequestValidationError(error.errors()) from None
        return {"value": reading.value}

    app = create_app(service="test", version="0", routers=[router], readiness={})
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        # Python's JSON parser reads NaN and Infinity, and Python clients write them.
        answers = [await client.post("/readings", content=f'{{"value": {number}}}'.encode(),
                                     headers={"content-type": "application/json"})
                   for number in ("NaN", "-Infinity")]
    assert [answer.status_code for answer in answers] == [422, 422], answers[0].text
    assert [answer.json()["detail"][0]["input"] for answer in answers] == ["NaN", "-Infinity"]
