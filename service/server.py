"""The gRPC server: MatchService plus standard health checking and reflection."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hashmatch.v1 import match_pb2, match_pb2_grpc
from service import metrics
from service.batcher import DEFAULT_MAX_QUEUED, Batcher, DeadlineExceeded, Overloaded
from service.queries import InvalidRequest, parse_request
from service.snapshots import SnapshotHolder

log = logging.getLogger(__name__)

MATCH_SERVICE = match_pb2.DESCRIPTOR.services_by_name["MatchService"].full_name
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
RETRY_PUSHBACK_MS = 100
MAX_WAIT_SECONDS = 24 * 3600

T = TypeVar("T")


def _request_id(context: grpc.ServicerContext) -> str:
    """The caller's x-request-id, or a new one."""
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and isinstance(value, str) and value:
            return value[:64]
    return uuid.uuid4().hex[:16]


class _LogBudget:
    """At most `per_second` log lines per status code; the rest are counted and
    reported with the next line, so a flood of refusals is not also a flood of logs."""

    def __init__(self, per_second: int = 10) -> None:
        self._per_second = per_second
        self._window: dict[str, tuple[int, int, int]] = {}  # code → (second, logged, dropped)
        self._lock = threading.Lock()

    def take(self, code: str) -> int | None:
        """None if this event should not be logged, else how many were dropped before it."""
        now = int(time.monotonic())
        with self._lock:
            second, logged, dropped = self._window.get(code, (now, 0, 0))
            if second != now:
                second, logged = now, 0
            if logged >= self._per_second:
                self._window[code] = (second, logged, dropped + 1)
                return None
            self._window[code] = (second, logged + 1, 0)
            return dropped


_log_budget = _LogBudget()


def _refuse(
    method: str,
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    *extra: tuple[str, str],
) -> None:
    """End the RPC with `code`, logging it and returning its request id to the caller."""
    request_id = _request_id(context)
    dropped = _log_budget.take(code.name)
    if dropped is not None:
        fields = {"request_id": request_id, "method": method, "code": code.name}
        more = f" ({dropped} more {code.name} not logged)" if dropped else ""
        log.warning("%s refused: %s%s", method, message, more, extra=fields)
    context.set_trailing_metadata((("x-request-id", request_id), *extra))
    context.abort(code, message)


def _guarded(method: str, context: grpc.ServicerContext, work: Callable[[], T]) -> T:
    """Run a handler body: bad input → INVALID_ARGUMENT, a bug → INTERNAL, never UNKNOWN."""
    try:
        return work()
    except InvalidRequest as exc:
        _refuse(method, context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except Overloaded as exc:
        metrics.REJECTED.labels("overloaded").inc()
        # gRPC's standard hint to clients with retry policies: wait before retrying.
        pushback = ("grpc-retry-pushback-ms", str(RETRY_PUSHBACK_MS))
        _refuse(method, context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), pushback)
    except DeadlineExceeded as exc:
        metrics.REJECTED.labels("deadline").inc()
        _refuse(method, context, grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
    except Exception as exc:
        if _status(context) is not None:  # context.abort() already chose the status
            raise
        request_id = _request_id(context)
        log.exception("%s failed", method, extra={"request_id": request_id, "method": method})
        context.set_trailing_metadata((("x-request-id", request_id),))
        context.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {request_id})")
        raise exc  # unreachable: abort raises
    raise AssertionError("unreachable: every refusal aborts")


def _timeout(context: grpc.ServicerContext) -> float | None:
    """Seconds left before the caller's deadline; None without one (grpcio reports ~forever)."""
    remaining = context.time_remaining()
    return None if remaining is None or remaining > MAX_WAIT_SECONDS else max(0.0, remaining)


def _status(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """The status a handler has set (grpcio's context has code(); the stubs lack it)."""
    code: grpc.StatusCode | None = cast(Any, context).code()
    return code


def _record(method: str, context: grpc.ServicerContext, started: float) -> None:
    code = _status(context) or grpc.StatusCode.OK
    metrics.RPCS.labels(method, code.name).inc()
    metrics.RPC_SECONDS.labels(method).observe(time.perf_counter() - started)


class MatchServicer(match_pb2_grpc.MatchServiceServicer):
    def __init__(self, batcher: Batcher) -> None:
        self._batcher = batcher

    def _answer(
        self, request: match_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> match_pb2.CheckResponse:
        queries = parse_request(request)
        version, found = self._batcher.check(queries, _timeout(context))
        response = match_pb2.CheckResponse(snapshot_version=version)
        checked: Counter[str] = Counter()
        matched: Counter[tuple[str, str]] = Counter()
        for q, hits in zip(queries, found, strict=True):
            checked[q.signal] += 1
            result = response.results.add(matched=bool(hits))
            for h in hits:
                matched[q.signal, h.list] += 1
                result.matches.add(list=h.list, match_id=h.match_id, distance=h.distance)
        # One counter update per label set, not per query: the labels() lookups and
        # their locks were a visible share of a 1,000-query request.
        for signal, n in checked.items():
            metrics.QUERIES.labels(signal).inc(n)
        for (signal, list_name), n in matched.items():
            metrics.MATCHES.labels(signal, list_name).inc(n)
        return response

    def Check(
        self, request: match_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> match_pb2.CheckResponse:
        started = time.perf_counter()
        try:
            return _guarded("Check", context, lambda: self._answer(request, context))
        finally:
            _record("Check", context, started)

    def CheckStream(
        self, request_iterator: Iterator[match_pb2.CheckRequest], context: grpc.ServicerContext
    ) -> Iterator[match_pb2.CheckResponse]:
        started = time.perf_counter()
        try:
            for request in request_iterator:
                yield _guarded("CheckStream", context, partial(self._answer, request, context))
        finally:
            _record("CheckStream", context, started)


def build_server(
    holder: SnapshotHolder,
    listen: str,
    max_workers: int = 64,
    max_queued_queries: int = DEFAULT_MAX_QUEUED,
    max_concurrent_rpcs: int = 1024,
) -> tuple[grpc.Server, int]:
    """A server ready to start, bound to `listen`; returns it with the bound port.

    Past `max_concurrent_rpcs` in flight, gRPC itself answers RESOURCE_EXHAUSTED;
    past `max_queued_queries` waiting for the engine, so does the batcher.
    """
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    batcher = Batcher(lambda: holder.matcher, max_queued=max_queued_queries)
    metrics.QUEUED.set_function(lambda: batcher.queued)
    match_pb2_grpc.add_MatchServiceServicer_to_server(MatchServicer(batcher), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", MATCH_SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (MATCH_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {listen}: {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    return server, port
