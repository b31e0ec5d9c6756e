"""How every handler answers: statuses that name the problem (never UNKNOWN), a request
id on every refusal, rate-limited refusal logs, and per-method metrics."""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

import grpc

from service import metrics
from service.auth import Caller, Gate
from service.refusals import refusal

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 24 * 3600

T = TypeVar("T")


def request_id(context: grpc.ServicerContext) -> str:
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
    rid = request_id(context)
    dropped = _log_budget.take(code.name)
    if dropped is not None:
        fields = {"request_id": rid, "method": method, "code": code.name}
        more = f" ({dropped} more {code.name} not logged)" if dropped else ""
        log.warning("%s refused: %s%s", method, message, more, extra=fields)
    context.set_trailing_metadata((("x-request-id", rid), *extra))
    context.abort(code, message)


def guarded(method: str, context: grpc.ServicerContext, work: Callable[[], T]) -> T:
    """Run a handler body: a refusal → its status (service.refusals), a bug → INTERNAL,
    never UNKNOWN."""
    try:
        return work()
    except Exception as exc:
        answer = refusal(exc)
        if answer is not None:
            extra = answer.metadata
            exhausted = answer.kind.grpc == grpc.StatusCode.RESOURCE_EXHAUSTED
            if exhausted and answer.retry_after is not None:
                # gRPC's standard hint to clients with retry policies: wait before retrying.
                ms = str(max(1, math.ceil(answer.retry_after * 1000)))
                extra = (*extra, ("grpc-retry-pushback-ms", ms))
            _refuse(method, context, answer.kind.grpc, answer.message, *extra)
        if status_of(context) is not None:  # context.abort() already chose the status
            raise
        rid = request_id(context)
        log.exception("%s failed", method, extra={"request_id": rid, "method": method})
        context.set_trailing_metadata((("x-request-id", rid),))
        context.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {rid})")
        raise exc  # unreachable: abort raises


def deadline_of(context: grpc.ServicerContext | None) -> float | None:
    """Seconds left before the caller's deadline; None without one (grpcio reports ~forever,
    and a handler called by the HTTP face has no gRPC context)."""
    if context is None:
        return None
    remaining = context.time_remaining()
    return None if remaining is None or remaining > MAX_WAIT_SECONDS else max(0.0, remaining)


def status_of(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """The status a handler has set (grpcio's context has code(); the stubs lack it)."""
    code: grpc.StatusCode | None = cast(Any, context).code()
    return code


@functools.cache
def _series(method: str, code: str) -> tuple[Any, Any]:
    """An RPC's counter and histogram, looked up once per method and code rather than
    per call (labels() validates and locks every time)."""
    return metrics.RPCS.labels(method, code), metrics.RPC_SECONDS.labels(method)


def record(method: str, context: grpc.ServicerContext, started: float) -> None:
    code = status_of(context) or grpc.StatusCode.OK
    calls, seconds = _series(method, code.name)
    calls.inc()
    seconds.observe(time.perf_counter() - started)


class Guarded(Protocol):
    gate: Gate


Handler = Callable[[Any, Any, grpc.ServicerContext, Caller], T]


def unary(
    method: str, role: str
) -> Callable[[Handler[T]], Callable[[Any, Any, grpc.ServicerContext], T]]:
    """Wrap a handler with one response (its request may be a stream): the caller must
    hold `role`; its errors become clear statuses; it is counted in the RPC metrics."""

    def wrap(handler: Handler[T]) -> Callable[[Any, Any, grpc.ServicerContext], T]:
        def run(self: Guarded, request: Any, context: grpc.ServicerContext) -> T:
            started = time.perf_counter()
            try:
                return guarded(
                    method,
                    context,
                    lambda: handler(self, request, context, self.gate.caller(context, role)),
                )
            finally:
                record(method, context, started)

        # The bare handler stays reachable (inspect.unwrap) for the HTTP face, which
        # authenticates and answers errors its own way.
        functools.update_wrapper(run, handler)
        return run

    return wrap
