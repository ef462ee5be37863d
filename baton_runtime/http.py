"""The FastAPI app factory: health, readiness, metrics, request logs and errors."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg
import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from baton_runtime.db import RETRYABLE_SQLSTATES, sqlstate_of
from baton_runtime.json_body import FASTAPI_PARSE_ERROR, NOT_UTF8, JsonBodies, takes_json_body
from baton_runtime.metrics import HTTP_REQUESTS

log = structlog.get_logger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]
# Text the database cannot store, in a text column or a JSON value: a NUL character.
UNSTORABLE_TEXT_SQLSTATES = frozenset({"22021", "22P05"})
READINESS_TIMEOUT_SECONDS = 2.0
# Swagger UI's and ReDoc's scripts, stylesheet and icon, served by the service under its
# docs' own prefix: an ingress rule that restricts /docs restricts them too.
DOCS_ASSETS_URL = "/docs/assets"


def error_response(description: str) -> dict[str, Any]:
    """Return an OpenAPI response entry for an error answered as ``{"detail": ...}``."""
    return {"description": description,
            "content": {"application/json": {"schema": {
                "type": "object", "properties": {"detail": {}}, "required": ["detail"]}}}}


BODY_NOT_DECODED = error_response("The body could not be decoded (not UTF-8 JSON).")
BODY_NOT_JSON = error_response("The body was not sent as application/json in UTF-8 "
                               "(Content-Type); nothing was changed.")


def create_app(
    *,
    service: str,
    version: str,
    routers: Sequence[APIRouter],
    readiness: Mapping[str, ReadinessCheck],
    middleware: Sequence[Middleware] = (),
) -> FastAPI:
    """Return the service's app with /healthz, /readyz, /metrics, its routers and its docs
    (/docs, /redoc).

    A body sent to a route that takes JSON must be application/json in UTF-8 (415), after
    ``middleware``: a service's own checks of bodies answer first.
    """
    routes = [route for router in routers for route in router.routes]
    # FastAPI's own /docs and /redoc load their scripts from a CDN, and come up blank without
    # internet access: these load them from the service (a mount, outside the OpenAPI
    # document). Metrics are Prometheus (/metrics); FastAPI's OpenTelemetry support would
    # otherwise look for a configured provider in os.environ on every request.
    app = FastAPIOffline(
        title=f"Baton {service}", version=version,
        docs_url="/docs", redoc_url="/redoc", static_url=DOCS_ASSETS_URL,
        middleware=[Middleware(RequestMetrics), *middleware,
                    Middleware(JsonBodies, routes=routes)],
        telemetry={"tracing": False, "metrics": False, "logs": False})

    @app.get("/healthz", tags=["operations"], summary="The process is alive.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="The database and the broker answer, the consumer has its partitions, and "
                "the service is not stopping.",
        responses={503: {"description": "A dependency is not ready."}},
    )
    async def readyz() -> JSONResponse:
        results = await asyncio.gather(*(_run_check(check) for check in readiness.values()))
        checks = dict(zip(readiness, results, strict=True))
        ready = all(result == "ok" for result in results)
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics.",
             response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for route in routes:
        if isinstance(route, APIRoute) and route.body_field is not None:
            # The answers to a body that is not UTF-8 JSON, before any handler.
            route.responses.setdefault(400, BODY_NOT_DECODED)
            if takes_json_body(route):
                route.responses.setdefault(415, BODY_NOT_JSON)
    for router in routers:
        app.include_router(router)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        if (error.status_code == 400 and error.detail == FASTAPI_PARSE_ERROR
                and isinstance(error.__cause__, UnicodeDecodeError)):
            # FastAPI's answer to a JSON body that is not UTF-8 names no cause.
            return JSONResponse({"detail": NOT_UTF8}, status_code=400)
        return await http_exception_handler(request, error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        # FastAPI's own answer, except that input echoed back may hold text UTF-8 cannot
        # encode (a lone surrogate a client escaped in its JSON): that must not become a 500.
        return EscapingJSONResponse({"detail": jsonable_encoder(error.errors())},
                                    status_code=422)

    @app.exception_handler(DBAPIError)
    @app.exception_handler(asyncpg.PostgresError)  # from statements sent to the driver itself
    async def database_refused(request: Request, error: Exception) -> Response:
        sqlstate = sqlstate_of(error)
        if sqlstate in UNSTORABLE_TEXT_SQLSTATES:
            # Only a request's own text can hold what PostgreSQL refuses to store.
            return JSONResponse({"detail": [{
                "loc": ["request"], "type": "value_error",
                "msg": "text may not contain a NUL character (\\u0000): it cannot be stored",
            }]}, status_code=422)
        # PostgreSQL aborted the transaction to break a deadlock or keep it serializable;
        # nothing was written, and the same request will most likely pass if repeated.
        if sqlstate in RETRYABLE_SQLSTATES:
            log.warning("transaction aborted by the database; asking the client to retry",
                        path=request.url.path, sqlstate=sqlstate)
            return JSONResponse({"detail": "the database aborted a conflicting change; "
                                           "nothing was written, retry the request"},
                                status_code=503, headers={"Retry-After": "1"})
        raise error

    return app


class EscapingJSONResponse(JSONResponse):
    """A JSON response that escapes what UTF-8 cannot encode instead of failing."""

    def render(self, content: Any) -> bytes:
        """Return the body: UTF-8 JSON, or ASCII JSON if some text is not valid Unicode;
        a number JSON cannot write (NaN, Infinity: Python's JSON parser reads them) is
        written as its name in a string."""
        try:
            return super().render(content)
        except ValueError:  # UnicodeEncodeError, or "Out of range float values ..."
            return json.dumps(_finite(content), ensure_ascii=True, allow_nan=False,
                              separators=(",", ":")).encode("ascii")


def _finite(content: Any) -> Any:
    """Return ``content`` with every float JSON cannot write replaced by its name."""
    if isinstance(content, float) and not math.isfinite(content):
        return str(content).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(content, dict):
        return {key: _finite(value) for key, value in content.items()}
    if isinstance(content, list | tuple):
        return [_finite(value) for value in content]
    return content


class RequestMetrics:
    """Pure ASGI middleware that observes every HTTP request's latency by route and status.

    Not ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs the app in a task
    group of its own and streams the response through it, several times this one's cost.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before it starts a response

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            # The router records the route it matched: its template keeps one series per route.
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(scope["method"], route,
                                 str(status)).observe(time.perf_counter() - started)


async def _run_check(check: ReadinessCheck) -> str:
    """Return "ok", or what went wrong, for one readiness check."""
    try:
        await asyncio.wait_for(check(), READINESS_TIMEOUT_SECONDS)
    except Exception as error:
        return f"failed: {type(error).__name__}: {error}"[:300]
    return "ok"
