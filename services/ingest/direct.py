"""Valid single captures answered without FastAPI's routing.

FastAPI's router found the capture route in about 150k instructions a request, a tenth
of all a capture costs (matching every route of the app, then the included router's,
then two exit stacks and two exception wrappers around the handler). This middleware
sits where BodyGuard hands a capture on, and gives a POST to a capture route's exact
path to that route's direct path itself; a request the direct path does not take
(invalid, or anything else) goes on to the app with its body, as before. Exceptions
are answered by the app's exception handlers, looked up as Starlette's
ExceptionMiddleware looks them up; one without a handler propagates as before.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, runtime_checkable

from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from baton_runtime.json_body import replaying


@runtime_checkable
class DirectRoute(Protocol):
    """A route with a direct path (api's CaptureRoute)."""

    path: str
    endpoint: Callable[..., Any]

    def direct(self) -> Callable[[Request], Coroutine[Any, Any, Response | None]]:
        """Return the answer to a valid request, None for any other."""
        ...


class DirectCaptures:
    """Pure ASGI middleware that answers valid single captures by their routes' direct path."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = {route.path: route for route in routes if isinstance(route, DirectRoute)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if (
            scope["type"] == "http" and scope["method"] == "POST"
            and not scope.get("root_path")) else None
        if route is None:
            await self.app(scope, receive, send)
            return
        # What the router sets for the route it matched (RequestMetrics labels by "route").
        scope.update(route=route, endpoint=route.endpoint, path_params={})
        request = Request(scope, receive, send)
        try:
            response = await route.direct()(request)
        except Exception as error:
            handler = _handler(scope, error)
            if handler is None:
                raise
            if is_async_callable(handler):
                response = await handler(request, error)
            else:
                response = await run_in_threadpool(handler, request, error)
            error.__traceback__ = None  # as Starlette: reused exceptions keep no traceback
        if response is None:  # not a request for the direct path: the app answers it
            await self.app(scope, replaying(await request.body(), receive), send)
            return
        await response(scope, receive, send)


def _handler(scope: Scope, error: Exception) -> Any:
    """Return the app's handler of ``error``, as ExceptionMiddleware finds it, or None.

    The handlers of status 500 and of Exception belong to ServerErrorMiddleware.
    """
    handlers: dict[Any, Any] = scope["app"].exception_handlers
    if isinstance(error, HTTPException) and error.status_code != 500:
        handler = handlers.get(error.status_code)
        if handler is not None:
            return handler
    for cls in type(error).__mro__:
        if cls is not Exception and cls in handlers:
            return handlers[cls]
    return None


