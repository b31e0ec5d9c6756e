"""The kinds of refusal a handler raises, and how each face answers them: one table of
exception → (gRPC status, HTTP status, metric, retry hint), so that gRPC and HTTP
(service/rpc.py, service/http/errors.py) cannot drift apart."""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc

from hashmatch.bounds import OutOfBounds
from indexer.store import (
    InvalidValue,
    ListExists,
    NoSuchCase,
    NoSuchList,
    NoSuchMatch,
    StoreUnavailable,
)
from service import metrics
from service.auth import PermissionDenied, RateLimited, Unauthenticated
from service.batcher import DeadlineExceeded, Overloaded
from service.follower import NotInEffect
from service.queries import InvalidRequest

RETRY_PUSHBACK_MS = 100


@dataclass(frozen=True)
class Kind:
    """How one kind of refusal is answered."""

    grpc: grpc.StatusCode
    http: int
    rejected: str | None = None  # its label in the rejected-calls metric
    retry_after: float | None = None  # seconds to wait before retrying, if a wait helps


KINDS: tuple[tuple[tuple[type[Exception], ...], Kind], ...] = (
    ((InvalidRequest, InvalidValue, OutOfBounds), Kind(grpc.StatusCode.INVALID_ARGUMENT, 400)),
    ((NoSuchList, NoSuchCase, NoSuchMatch), Kind(grpc.StatusCode.NOT_FOUND, 404)),
    ((ListExists,), Kind(grpc.StatusCode.ALREADY_EXISTS, 409)),
    ((Unauthenticated,), Kind(grpc.StatusCode.UNAUTHENTICATED, 401, "unauthenticated")),
    ((PermissionDenied,), Kind(grpc.StatusCode.PERMISSION_DENIED, 403, "permission_denied")),
    # The wait is the caller's bucket's own (RateLimited.retry_after).
    ((RateLimited,), Kind(grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "rate_limited", 0.0)),
    (
        (Overloaded,),
        Kind(grpc.StatusCode.RESOURCE_EXHAUSTED, 503, "overloaded", RETRY_PUSHBACK_MS / 1000),
    ),
    ((DeadlineExceeded,), Kind(grpc.StatusCode.DEADLINE_EXCEEDED, 504, "deadline")),
    # A database outage is the caller's to retry, not a server fault.
    ((StoreUnavailable,), Kind(grpc.StatusCode.UNAVAILABLE, 503, "store_unavailable", 1.0)),
    # Stored, not yet matching: DEADLINE_EXCEEDED is gRPC's "the change may have been made",
    # not to be retried blindly; a new case's receipt comes with it (NotInEffect.metadata).
    ((NotInEffect,), Kind(grpc.StatusCode.DEADLINE_EXCEEDED, 504, "not_in_effect")),
)


@dataclass(frozen=True)
class Refusal:
    """An exception as a refusal: its kind, message and retry hint, already counted."""

    kind: Kind
    message: str
    retry_after: float | None
    metadata: tuple[tuple[str, str], ...]  # to send with it (a new case's receipt)


def refusal(exc: Exception) -> Refusal | None:
    """The refusal `exc` stands for, counted in the rejected-calls metric; None for an
    exception no table row names (a bug: the face answers INTERNAL)."""
    for types, kind in KINDS:
        if isinstance(exc, types):
            if kind.rejected is not None:
                metrics.REJECTED.labels(kind.rejected).inc()
            retry = exc.retry_after if isinstance(exc, RateLimited) else kind.retry_after
            metadata = tuple(exc.metadata) if isinstance(exc, NotInEffect) else ()
            return Refusal(kind, str(exc), retry, metadata)
    return None


def whole_seconds(seconds: float) -> str:
    """A wait as HTTP's Retry-After says it: whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))
