"""The hot routes, `GET /m/raw_lookup` and `POST /v1/check`: the calls a platform makes
for each upload, so their cost per request sets the service's HTTP rate. They are
answered in front of Starlette, looked up by method and path in one dict, without its
router, middleware stack or exception wrappers, and on the event loop's thread rather
than a worker thread's: each hop to a worker and back is two thread wake-ups, which on a
busy machine cost more than the lookup. Every other request, these paths with another
method included, goes on to Starlette unchanged.

What the loop may still wait on, bounded: a hit's content id the first time that
entry is hit (one indexed store read, then cached: service/http/face.py). A key id not
among the keys loaded (which may wait for a reload, service/auth.py), and a lookup the
engine would queue or whose hits the audit log might hold back (Face.unhurried), go to
a worker thread."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Response]]


class HotRoutes:
    def __init__(self, app: ASGIApp, handlers: Mapping[tuple[str, str], Handler]) -> None:
        self._app = app
        self._handlers = dict(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self._handlers.get((scope["method"], scope["path"]))
            if handler is not None:
                response = await handler(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)
