"""A real HTTP server standing in for Slack's incoming webhooks."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from baton_runtime.embedded import LOOPBACK, free_port


@dataclass(frozen=True)
class ReceivedMessage:
    """One webhook POST as Slack would have seen it."""

    arrived_at: float
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """What the fake answers: a status, a body and headers."""

    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)


class FakeSlack:
    """Records every POST; answers from a script of replies, then 200 ok."""

    def __init__(self) -> None:
        self.messages: list[ReceivedMessage] = []
        self.replies: list[Reply] = []
        self._arrived = asyncio.Condition()
        self.port = free_port()  # bound in running(); the gap is a few microseconds

    @property
    def webhook_url(self) -> str:
        """Return the URL to configure as BATON_SLACK_WEBHOOK_URL."""
        return f"http://{LOOPBACK}:{self.port}/services/T000/B000/hook"

    async def _receive(self, request: Request) -> PlainTextResponse:
        body = json.loads(await request.body())
        reply = self.replies.pop(0) if self.replies else Reply()
        async with self._arrived:
            self.messages.append(ReceivedMessage(time.time(), request.url.path,
                                                 dict(request.headers), body))
            self._arrived.notify_all()
        return PlainTextResponse(reply.body, status_code=reply.status, headers=reply.headers)

    async def wait_for(self, count: int, timeout: float) -> list[ReceivedMessage]:
        """Return once ``count`` messages arrived; fail if they do not within ``timeout``."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.messages) >= count), timeout)
        return list(self.messages)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeSlack]:
        """Serve on the loopback address for the duration of the block."""
        app = Starlette(routes=[Route("/{path:path}", self._receive, methods=["POST"])])
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        # Listening before serve() starts: connections wait in the backlog, no polling needed.
        listener = socket.create_server((LOOPBACK, self.port))
        task = asyncio.create_task(server.serve(sockets=[listener]))
        try:
            yield self
        finally:
            server.should_exit = True
            await task
            listener.close()
