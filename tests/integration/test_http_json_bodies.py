"""Bodies of routes that take JSON: any other Content-Type gets 415, bytes that are not
UTF-8 get a 400 that says so, in every service, and the endpoint is never called."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, Body, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from prometheus_client import REGISTRY
from pydantic import BaseModel

from baton import registry
from baton_runtime.http import create_app
from baton_runtime.service import ServiceContext
from tests.support.openapi import InProcessService

pytestmark = pytest.mark.integration

NAMED = json.dumps({"name": "山田"}, ensure_ascii=False).encode()
WRONG_CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded",
                       "application/json; charset=shift_jis", 'application/json; charset="UTF-16"',
                       "text/json", "multipart/form-data; boundary=x"]
JSON_IN_UTF8 = ["application/json", "application/json; charset=UTF-8",
                'Application/JSON;charset="utf-8"', "application/merge-patch+json"]


class Named(BaseModel):
    name: str


class Names:
    """An app with routes that take JSON and routes that do not; it records every call."""

    def __init__(self) -> None:
        self.called: list[str] = []
        router = APIRouter()

        @router.post("/names")
        async def add(named: Named) -> dict[str, str]:
            self.called.append(f"add {named.name}")
            return {"name": named.name}

        @router.patch("/names/{name}")
        async def rename(name: str, named: Named) -> dict[str, str]:
            self.called.append(f"rename {name}")
            return {"name": named.name}

        @router.get("/names/{name}")
        async def show(name: str) -> dict[str, str]:
            return {"name": name}

        @router.post("/names/{name}/touch")
        async def touch(name: str) -> dict[str, str]:  # no body
            return {"name": name}

        @router.post("/hooks/form")
        async def form(request: Request) -> dict[str, str]:  # reads its body itself
            return {"body": (await request.body()).decode()}

        @router.post("/hooks/text")
        async def text(body: Annotated[bytes, Body(media_type="text/plain")]) -> dict[str, str]:
            return {"body": body.decode()}

        @router.post("/hooks/strict")
        async def strict(request: Request) -> dict[str, str]:
            try:
                return {"body": (await request.body()).decode()}
            except UnicodeDecodeError as error:
                raise HTTPException(400, "the hook's own answer") from error

        self.app = create_app(service="test", version="0", routers=[router], readiness={})

    def client(self) -> httpx.AsyncClient:
        """Return a client of the app, in process."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                 base_url="http://test")


def observed(method: str, route: str, status: str) -> float:
    """Return how many requests the latency histogram has counted for these labels."""
    return REGISTRY.get_sample_value("baton_http_request_seconds_count", {
        "method": method, "route": route, "status": status}) or 0.0


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    """Return a body httpx sends chunked (no Content-Length)."""
    for part in parts:
        yield part


@pytest.mark.parametrize("content_type", [*WRONG_CONTENT_TYPES, None])
async def test_a_body_not_sent_as_json_in_utf8_gets_415_and_the_endpoint_is_not_called(
        content_type: str | None) -> None:
    names = Names()
    headers = {} if content_type is None else {"Content-Type": content_type}
    before = observed("PATCH", "/names/{name}", "415")
    async with names.client() as client:
        answers = [await client.post("/names", content=NAMED, headers=headers),
                   await client.patch("/names/x", content=NAMED, headers=headers),
                   await client.post("/names", content=chunks(b"", NAMED), headers=headers)]
    for answer in answers:
        assert answer.status_code == 415, answer.text
        detail = answer.json()["detail"]
        assert detail.startswith("send the body as application/json in UTF-8 ("), detail
        if content_type is not None:
            assert repr(content_type) in detail
    assert names.called == []
    assert observed("PATCH", "/names/{name}", "415") - before == 1


async def test_json_in_utf8_and_requests_without_a_body_go_on_as_before() -> None:
    names = Names()
    async with names.client() as client:
        accepted = [await client.post("/names", content=NAMED,
                                      headers={"Content-Type": content_type})
                    for content_type in JSON_IN_UTF8]
        chunked = await client.post("/names", content=chunks(b"{", b'"name": "x"}'),
                                    headers={"Content-Type": "application/json"})
        # No body: the rule is about bodies, so FastAPI's own "Field required" answers.
        missing = await client.post("/names", headers={"Content-Type": "text/plain"})
        empty_chunked = await client.post("/names", content=chunks(b"", b""),
                                          headers={"Content-Type": "text/plain"})
    assert [answer.status_code for answer in accepted] == [200] * len(JSON_IN_UTF8)
    assert chunked.status_code == 200, chunked.text
    for answer in (missing, empty_chunked):
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["type"] == "missing"
    assert len(names.called) == len(JSON_IN_UTF8) + 1


async def test_routes_that_take_no_json_body_get_any_content_type() -> None:
    names = Names()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with names.client() as client:
        read_itself = await client.post("/hooks/form", content=b"payload=%7B%7D", headers=form)
        as_text = await client.post("/hooks/text", content=b"plain",
                                    headers={"Content-Type": "text/plain"})
        no_body_param = await client.post("/names/x/touch", content=b"x=1", headers=form)
        get = await client.request("GET", "/names/x", content=b"x=1", headers=form)
    assert (read_itself.status_code, read_itself.json()) == (200, {"body": "payload=%7B%7D"})
    assert (as_text.status_code, as_text.json()) == (200, {"body": "plain"})
    assert (no_body_param.status_code, get.status_code) == (200, 200)


async def test_a_json_body_that_is_not_utf8_gets_a_400_that_says_so() -> None:
    names = Names()
    shift_jis = json.dumps({"name": "山田"}, ensure_ascii=False).encode("shift_jis")
    async with names.client() as client:
        answers = [await client.post("/names", content=shift_jis,
                                     headers={"Content-Type": content_type})
                   for content_type in ("application/json", "application/json; charset=utf-8")]
        own = await client.post("/hooks/strict", content=b"\xff",
                                headers={"Content-Type": "application/json"})
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert answer.json() == {
            "detail": "the body is not valid UTF-8: send it as application/json in UTF-8"}
    assert names.called == []
    # Only FastAPI's own answer is replaced: a route's own 400 keeps its words.
    assert (own.status_code, own.json()) == (400, {"detail": "the hook's own answer"})


async def test_the_415_is_documented_on_the_routes_that_take_json_only() -> None:
    async with Names().client() as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    refusing = {(path, method) for path, operations in paths.items()
                for method, operation in operations.items() if "415" in operation["responses"]}
    assert refusing == {("/names", "post"), ("/names/{name}", "patch")}


def json_routes(service: InProcessService) -> list[APIRoute]:
    """Return the service's routes that have FastAPI read a JSON body."""
    return [route for router in service.definition.routers for route in router.routes
            if isinstance(route, APIRoute) and route.body_field is not None
            and getattr(route.body_field.field_info, "media_type", None) == "application/json"]


@pytest.mark.parametrize("name", registry.SERVICES)
async def test_every_service_answers_415_on_every_route_that_takes_json(name: str) -> None:
    service = InProcessService.build(name)
    routes = json_routes(service)
    assert routes or name == "notifier"
    # No database: the answer comes before any handler, which could not run.
    service.app.state.context = ServiceContext(name, service.settings, None,  # type: ignore[arg-type]
                                               None, service.definition.clock)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=service.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
        for route in routes:
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            [method] = sorted(route.methods or ())
            for content_type in ("text/plain", "application/x-www-form-urlencoded",
                                 "application/json; charset=shift_jis"):
                answer = await client.request(method, path, content=b'{"name":"x","team":"sdr"}',
                                              headers={"Content-Type": content_type})
                assert answer.status_code == 415, (method, path, content_type, answer.text)
                assert answer.json()["detail"].startswith(
                    "send the body as application/json in UTF-8"), answer.text
            assert "415" in paths[route.path][method.lower()]["responses"], route.path


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[tuple[str, int]]:
    """Serve ``app`` with uvicorn on a free loopback port for the duration of the block."""
    listener = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        yield listener.getsockname()
    finally:
        server.should_exit = True
        await task
        listener.close()


async def exchange(address: tuple[str, int], request: bytes) -> tuple[bytes, dict[str, Any]]:
    """Send raw ``request`` bytes; return the status line and the JSON body of the answer,
    once the server has closed the connection."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # to the end: the server closes
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], json.loads(body)


async def test_a_real_server_answers_415_without_waiting_for_the_body() -> None:
    names = Names()
    async with serving(names.app) as address:
        async with httpx.AsyncClient(base_url=f"http://{address[0]}:{address[1]}") as client:
            # The report's request: curl -X PUT -H 'Content-Type: text/plain' -d '{...}'
            refused = await client.patch("/names/x", content=NAMED,
                                         headers={"Content-Type": "text/plain"})
            accepted = await client.patch("/names/x", json={"name": "x"})
        # Declared but never sent: the answer does not wait for it, and the server closes.
        status, body = await exchange(address, b"POST /names HTTP/1.1\r\nHost: test\r\n"
                                      b"Content-Type: text/plain\r\nContent-Length: 100000\r\n"
                                      b"\r\n{")
        chunked_status, _ = await exchange(
            address, b"POST /names HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n")
    assert refused.status_code == 415, refused.text
    assert refused.headers["connection"] == "close"
    assert accepted.status_code == 200, accepted.text
    assert (status, chunked_status) == (b"HTTP/1.1 415 Unsupported Media Type",) * 2
    assert "text/plain" in body["detail"]
    assert names.called == ["rename x"]
