"""Bodies of routes that take JSON: sent as JSON in UTF-8, or refused with a clear answer.

FastAPI reads a body whose Content-Type is not JSON as bytes, which its model then refuses
with a 422 about the type of the input ("Input should be a valid dictionary"), and answers
a JSON body that is not UTF-8 with a bare "There was an error parsing the body".
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import params
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON = "application/json"
# What FastAPI answers (400) when it cannot decode a body as JSON text at all.
FASTAPI_PARSE_ERROR = "There was an error parsing the body"
NOT_UTF8 = f"the body is not valid UTF-8: send it as {JSON} in UTF-8"


def takes_json_body(route: BaseRoute) -> bool:
    """Return True if ``route`` has FastAPI read its body as JSON (not a form, not bytes
    the endpoint reads itself, not a body documented as another media type)."""
    if not isinstance(route, APIRoute) or route.body_field is None:
        return False
    info = route.body_field.field_info
    return not isinstance(info, params.Body) or is_json(info.media_type)


def is_json(media_type: str) -> bool:
    """Return True for application/json and the application/*+json types, as FastAPI
    decides whether to parse a body as JSON."""
    media_type = media_type.strip().lower()
    return media_type == JSON or (media_type.startswith("application/")
                                  and media_type.endswith("+json"))


def json_in_utf8(content_type: str) -> bool:
    """Return True if a Content-Type says JSON in UTF-8 (no charset means UTF-8)."""
    media_type, _, parameters = content_type.partition(";")
    return is_json(media_type) and charset_of(parameters) in ("", "utf-8")


class JsonBodies:
    """Pure ASGI middleware: a request with a body for a route that takes a JSON body gets
    415 unless its Content-Type is application/json (or application/*+json) with no
    charset or UTF-8; the route's endpoint is never called.

    Routes that read their body themselves (webhooks with forms, NDJSON) take any
    Content-Type. A request whose Content-Type is JSON in UTF-8, or that has no body, goes
    on at once, without a route lookup.
    """

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = list(routes)  # in the order the app's router tries them

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope, (b"content-type", b"content-length", b"transfer-encoding"))
        content_type = headers.get(b"content-type")
        length = headers.get(b"content-length")
        chunked = length is None and b"transfer-encoding" in headers
        if ((content_type is not None and json_in_utf8(content_type.decode("latin-1")))
                or not (chunked or (length is not None and _declares_a_body(length)))):
            await self.app(scope, receive, send)
            return
        route = self._route(scope)
        if route is None or not takes_json_body(route):
            await self.app(scope, receive, send)
            return
        if chunked:
            # Only a chunk with bytes in it makes a body; an empty one is handed on.
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                if message.get("body"):
                    break
                if not message.get("more_body", False):
                    await self.app(scope, replaying(b"", receive), send)
                    return
        await _refuse(scope, route, receive, send, content_type)

    def _route(self, scope: Scope) -> BaseRoute | None:
        """Return the route the router will choose for ``scope``, if one of ours."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return route
        return None


def _headers(scope: Scope, names: tuple[bytes, ...]) -> dict[bytes, bytes]:
    """Return the first value of each of these headers (names in lower case) present."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        name = name.lower()
        if name in names and name not in found:
            found[name] = value
    return found


def _declares_a_body(length: bytes) -> bool:
    """Return True unless a Content-Length says there are no bytes."""
    try:
        return int(length) > 0
    except ValueError:
        return True  # servers refuse one that is not a number; never read it as none


def replaying(body: bytes, receive: Receive) -> Receive:
    """Return a receive that gives ``body`` (already read) once, then what ``receive`` gives."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _refuse(scope: Scope, route: BaseRoute, receive: Receive, send: Send,
                  content_type: bytes | None) -> None:
    """Answer 415, naming the Content-Type the request gave; the body is left unread, so
    the connection closes after the answer."""
    scope["route"] = route  # as the router sets it: RequestMetrics labels by the route
    given = ("the request has no Content-Type" if content_type is None
             else f"its Content-Type is {content_type.decode('latin-1')!r}")
    response = JSONResponse({"detail": f"send the body as {JSON} in UTF-8 ({given})"},
                            status_code=415, headers={"Connection": "close"})
    await response(scope, receive, send)


def charset_of(parameters: str) -> str:
    """Return the charset parameter of a Content-Type, lower case, or '' if none."""
    for parameter in parameters.split(";"):
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return ""
