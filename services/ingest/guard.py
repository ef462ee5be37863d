"""Refuses oversized bodies (413) and wrong content types (415) before the app reads them."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from baton_runtime.json_body import charset_of, replaying

JSON = "application/json"
NDJSON = "application/x-ndjson"


class BodyGuard:
    """Pure ASGI middleware for the capture routes (every POST under ``/v1/``).

    A declared ``Content-Length`` over the limit is refused without reading a byte;
    a chunked body is read only up to the limit, then refused.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int,
                 large_bodies: Mapping[str, int] | None = None,
                 content_types: Mapping[str, str] | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.large_bodies = dict(large_bodies or {})
        self.content_types = dict(content_types or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or not scope["path"].startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = {name.lower(): value for name, value in scope["headers"]}
        expected = self.content_types.get(path, JSON)
        media_type, _, parameters = headers.get(b"content-type", b"").decode("latin-1"
                                                                             ).partition(";")
        if media_type.strip().lower() != expected or charset_of(parameters) not in ("", "utf-8"):
            await _refuse(send, 415, f"send the body as {expected} in UTF-8")
            return
        limit = self.large_bodies.get(path, self.max_body_bytes)
        declared = headers.get(b"content-length")
        if declared is not None:  # the server has checked that it is a number
            if int(declared) > limit:
                await _refuse(send, 413, f"the body is over {limit} bytes")
                return
            await self.app(scope, receive, send)
            return
        # Chunked: read at most the limit, then hand the app what was read.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _refuse(send, 413, f"the body is over {limit} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, replaying(b"".join(chunks), receive), send)


async def _refuse(send: Send, status: int, detail: str) -> None:
    """Answer with ``status`` and a JSON ``detail``, as FastAPI's own errors look."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
