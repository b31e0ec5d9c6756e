"""The HTTP application: one table of routes, from which both the routing and the OpenAPI
document are made, and the wrapper every route runs in (bounded JSON body, work in a
thread or, for the hot routes, on the event loop; errors as `{"message": ...}`, metrics
by route and status)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from hashmatch.channel import MAX_MESSAGE_BYTES
from service import metrics
from service.http import hma, native
from service.http.docs import docs_page, openapi
from service.http.errors import HttpError, message, refusal
from service.http.face import Face, bearer
from service.http.headers import SecurityHeaders
from service.http.hot import Handler, HotRoutes
from service.http.jsonio import JSONAnswer, loads
from service.http.portal import portal_routes

MAX_BODY_BYTES = MAX_MESSAGE_BYTES
# A case sent without a key: at most MAX_CASE_HASHES hashes of a few hundred bytes each.
MAX_ANONYMOUS_BODY_BYTES = 1024 * 1024

Work = Callable[[Face, Request, Any], Any]


@dataclass(frozen=True)
class Spec:
    """One route: what it does, who may call it, what it takes."""

    method: str
    path: str
    work: Work
    summary: str
    role: str | None  # None: no key needed
    params: tuple[str, ...] = ()
    body: str | None = None  # what the JSON body is, if it takes one
    tag: str = "hashmatch"
    # Dispatched in front of Starlette, its key checked on the event loop's thread
    # (service/http/hot.py).
    hot: bool = False
    # Its work done on the event loop's thread too while that cannot wait (Face.unhurried):
    # only for a single hash, which the engine searches in the calling thread.
    inline: bool = False

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles any one of which lets a key call the route."""
        return () if self.role is None else tuple(self.role.split(" or "))


ROUTES: tuple[Spec, ...] = (
    Spec(
        "POST",
        "/v1/check",
        native.check,
        "Check up to 10,000 hashes",
        "check",
        body="CheckRequest",
        hot=True,
    ),
    Spec(
        "POST",
        "/v1/cases",
        native.submit_case,
        "Submit a victim's case",
        "submit",
        body="SubmitCaseRequest",
    ),
    Spec(
        "GET",
        "/v1/cases/{case_id}",
        native.case_status,
        "A case's status (secret in X-Withdrawal-Secret)",
        "submit",
    ),
    Spec(
        "DELETE",
        "/v1/cases/{case_id}",
        native.withdraw,
        "Withdraw a case (secret in X-Withdrawal-Secret); in effect on return",
        "submit",
    ),
    Spec(
        "POST",
        "/v1/lists",
        native.create_list,
        "Create a list",
        "list-manage",
        body="CreateListRequest",
    ),
    Spec("GET", "/v1/lists/{name}", native.get_list, "A list's information", "list-manage"),
    Spec(
        "POST",
        "/v1/lists/{name}/entries",
        native.upload,
        "Upload entries to a list",
        "list-manage",
        body="UploadRequest",
    ),
    Spec(
        "POST",
        "/v1/lists/{name}/remove",
        native.remove_entries,
        "Remove entries from a list; in effect on return",
        "list-manage",
        body="RemoveEntriesRequest",
    ),
    Spec(
        "POST",
        "/v1/lists/{name}/confirm",
        native.confirm_entry,
        "Confirm an entry flagged for anomalous matching",
        "list-manage",
        body="ConfirmEntryRequest",
    ),
    Spec(
        "POST",
        "/v1/feedback",
        native.report,
        "Report a verdict on a match this key was served",
        "check",
        body="ReportRequest",
    ),
    Spec(
        "GET",
        "/v1/review",
        native.review,
        "The review queue: flagged and reported entries with their evidence",
        "list-manage",
        ("list",),
    ),
    Spec(
        "POST",
        "/v1/lists/{name}/decide",
        native.decide,
        "Decide on an entry of the review queue (confirm, remove, keep); audited",
        "list-manage",
        body="DecideRequest",
    ),
    Spec(
        "POST",
        "/v1/lists/{name}/policy",
        native.set_list_policy,
        "Change a list's maximum distances and anomaly quarantine",
        "list-manage",
        body="SetListPolicyRequest",
    ),
    Spec(
        "GET",
        "/m/raw_lookup",
        hma.raw_lookup,
        "HMA: content ids matching a hash",
        "check",
        ("signal_type", "signal", "banks", "include_distance"),
        tag="HMA",
        hot=True,
        inline=True,
    ),
    Spec(
        "GET",
        "/m/lookup",
        hma.lookup,
        "HMA: matches of a hash by bank",
        "check",
        ("signal_type", "signal", "banks"),
        tag="HMA",
    ),
    Spec(
        "POST",
        "/m/lookup",
        hma.no_media,
        "HMA: refused (this service takes no media)",
        None,
        tag="HMA",
    ),
    Spec(
        "GET",
        "/m/index/status",
        hma.index_status,
        "HMA: index status by signal type",
        "check",
        ("signal_type",),
        tag="HMA",
    ),
    Spec("GET", "/h/hash", hma.no_media, "HMA: refused (hash on your side)", None, tag="HMA"),
    Spec("POST", "/h/hash", hma.no_media, "HMA: refused (hash on your side)", None, tag="HMA"),
    Spec(
        "GET",
        "/c/banks",
        hma.banks,
        "HMA: the banks (lists) this key may see",
        "check or list-manage",
        tag="HMA",
    ),
    Spec(
        "POST",
        "/c/banks",
        hma.create_bank,
        "HMA: create a bank",
        "list-manage",
        body="{name}",
        tag="HMA",
    ),
    Spec("GET", "/c/bank/{name}", hma.bank, "HMA: one bank", "check or list-manage", tag="HMA"),
    Spec(
        "POST",
        "/c/bank/{name}/signal",
        hma.add_signal,
        "HMA: add a hash to a bank",
        "list-manage",
        body='{"pdq": "<hex>"}',
        tag="HMA",
    ),
    Spec(
        "POST",
        "/c/bank/{name}/content",
        hma.no_media,
        "HMA: refused (this service takes no media)",
        None,
        tag="HMA",
    ),
    Spec(
        "DELETE",
        "/c/bank/{name}/content/{content_id}",
        hma.delete_content,
        "HMA: remove a bank's content; in effect on return",
        "list-manage",
        tag="HMA",
    ),
    Spec("GET", "/status", hma.status, "Ready: I-AM-ALIVE, or 503 while not", None, tag="health"),
    Spec("GET", "/status/live", hma.status_live, "Alive", None, tag="health"),
)


async def _json_body(request: Request, limit: int) -> Any:
    """The request's JSON, read at most `limit` bytes: a bigger body is refused before
    it is all read, whatever Content-Length says."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"request body over {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise HttpError(400, "send a JSON body")
    try:
        return loads(raw)
    except ValueError as exc:
        raise HttpError(400, f"the body is not JSON: {str(exc)[:200]}") from None


def _observe(route: str, status: int, started: float) -> None:
    metrics.HTTP_REQUESTS.labels(route, str(status)).inc()
    metrics.HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)


def _endpoint(face: Face, spec: Spec) -> Handler:
    route = f"{spec.method} {spec.path}"

    async def run(request: Request) -> Response:
        started = time.perf_counter()
        try:
            limit = MAX_BODY_BYTES
            if spec.roles:
                # The key (and its role) first: a caller without one is refused before
                # its body is read, and one without a key of its own (anonymous, or
                # through the page's key) may send only a case's worth.
                if spec.hot and face.guards.gate.knows(bearer(request)):
                    caller = face.caller(request, *spec.roles)
                else:
                    caller = await run_in_threadpool(face.caller, request, *spec.roles)
                if caller.visitor:
                    limit = MAX_ANONYMOUS_BODY_BYTES
            body = await _json_body(request, limit) if spec.body is not None else None
            if spec.inline and face.unhurried():
                result = spec.work(face, request, body)
            else:
                result = await run_in_threadpool(spec.work, face, request, body)
            response = result if isinstance(result, Response) else JSONAnswer(result)
        except Exception as exc:
            response = refusal(exc, route)
        _observe(route, response.status_code, started)
        return response

    return run


async def _unmatched(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods, as JSON like every other refusal."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    metrics.HTTP_REQUESTS.labels("unmatched", str(status)).inc()
    text = "no such route" if status == 404 else "method not allowed" if status == 405 else "error"
    return message(status, text)


def build_app(face: Face, tls: bool = False, portal: bool = False) -> ASGIApp:
    """The HTTP face; with `portal`, the victims' page at `/` (service.http.portal)."""
    handlers = {(spec.method, spec.path): _endpoint(face, spec) for spec in ROUTES}
    routes: list[BaseRoute] = [
        Route(spec.path, handlers[spec.method, spec.path], methods=[spec.method]) for spec in ROUTES
    ]
    document = openapi(ROUTES)
    page = docs_page(document)

    async def openapi_json(request: Request) -> Response:
        return JSONAnswer(document)

    async def docs(request: Request) -> Response:
        return HTMLResponse(page)

    routes += [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
    if portal:
        routes += portal_routes()
    app = Starlette(routes=routes, exception_handlers={HTTPException: _unmatched})
    hot = {(s.method, s.path): handlers[s.method, s.path] for s in ROUTES if s.hot}
    return SecurityHeaders(HotRoutes(app, hot), tls)
