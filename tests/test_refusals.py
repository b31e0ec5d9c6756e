"""Both faces answer every refusal from one table (service/refusals.py): the same
exception gets its row's gRPC status over gRPC and its row's HTTP status over HTTP, with
the same message and retry hint, and anything no row names is INTERNAL / 500 with a
request id and no trace of the exception's text."""

from __future__ import annotations

import json
from typing import Any, cast

import grpc
import pytest

from hashmatch.bounds import OutOfBounds
from indexer.store import (
    InvalidValue,
    ListExists,
    NoSuchCase,
    NoSuchList,
    NoSuchMatch,
    StoreUnavailable,
)
from service.auth import PermissionDenied, RateLimited, Unauthenticated
from service.batcher import DeadlineExceeded, Overloaded
from service.follower import NotInEffect
from service.http.errors import refusal as http_refusal
from service.queries import InvalidRequest
from service.refusals import KINDS
from service.rpc import guarded


class Aborted(Exception):
    pass


class Context:
    """Enough of a grpc.ServicerContext for `guarded`."""

    def __init__(self) -> None:
        self.status: grpc.StatusCode | None = None
        self.details = ""
        self.trailers: tuple[tuple[str, str], ...] = ()

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def set_trailing_metadata(self, trailers: tuple[tuple[str, str], ...]) -> None:
        self.trailers = trailers

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.status, self.details = code, details
        raise Aborted

    def code(self) -> grpc.StatusCode | None:
        return self.status


def over_grpc(exc: Exception) -> Context:
    context = Context()

    def fail() -> None:
        raise exc

    with pytest.raises(Aborted):
        guarded("Test", cast(grpc.ServicerContext, context), fail)
    return context


C = grpc.StatusCode
# Each exception with the statuses docs/api.md promises for it.
EXAMPLES: list[tuple[Exception, grpc.StatusCode, int]] = [
    (InvalidRequest("query 3: bad hex"), C.INVALID_ARGUMENT, 400),
    (InvalidValue("bad value"), C.INVALID_ARGUMENT, 400),
    (OutOfBounds("too long"), C.INVALID_ARGUMENT, 400),
    (NoSuchList("x"), C.NOT_FOUND, 404),
    (NoSuchCase("no such case"), C.NOT_FOUND, 404),
    (NoSuchMatch("no such match"), C.NOT_FOUND, 404),
    (ListExists("exists"), C.ALREADY_EXISTS, 409),
    (Unauthenticated("no key"), C.UNAUTHENTICATED, 401),
    (PermissionDenied("no role"), C.PERMISSION_DENIED, 403),
    (RateLimited("slow down", 2.5), C.RESOURCE_EXHAUSTED, 429),
    (Overloaded("queue full"), C.RESOURCE_EXHAUSTED, 503),
    (DeadlineExceeded("too late"), C.DEADLINE_EXCEEDED, 504),
    (StoreUnavailable("store down"), C.UNAVAILABLE, 503),
    (
        NotInEffect("stored, not in effect", (("hashmatch-case-id", "c1"),)),
        C.DEADLINE_EXCEEDED,
        504,
    ),
]


def test_every_row_has_an_example() -> None:
    for types, _ in KINDS:
        assert any(isinstance(e, types) for e, _, _ in EXAMPLES), types


@pytest.mark.parametrize(
    ("exc", "code", "status"), EXAMPLES, ids=[type(e).__name__ for e, _, _ in EXAMPLES]
)
def test_both_faces_answer_an_exception_as_promised(
    exc: Exception, code: grpc.StatusCode, status: int
) -> None:
    context = over_grpc(exc)
    response = http_refusal(exc, "GET /test")
    body: dict[str, Any] = json.loads(bytes(response.body))
    assert context.status == code and response.status_code == status
    assert context.details == str(exc) == body["message"]
    trailers = dict(context.trailers)
    assert trailers["x-request-id"]
    if isinstance(exc, RateLimited):
        assert trailers["grpc-retry-pushback-ms"] == "2500"
        assert response.headers["retry-after"] == "3"
    if isinstance(exc, Overloaded):
        assert trailers["grpc-retry-pushback-ms"] == "100"
        assert response.headers["retry-after"] == "1"
    if isinstance(exc, StoreUnavailable):
        assert response.headers["retry-after"] == "1"
    if isinstance(exc, Unauthenticated):
        assert response.headers["www-authenticate"] == "Bearer"
    if isinstance(exc, NotInEffect):
        assert trailers["hashmatch-case-id"] == body["receipt"]["hashmatch-case-id"] == "c1"
    else:
        assert "receipt" not in body


def test_an_exception_no_row_names_is_internal_and_tells_nothing() -> None:
    secret = "postgresql://user:hunter2@db.internal"
    context = over_grpc(RuntimeError(secret))
    response = http_refusal(KeyError(secret), "GET /test")
    assert context.status == grpc.StatusCode.INTERNAL and response.status_code == 500
    assert secret not in context.details and secret.encode() not in bytes(response.body)
    assert "request id" in context.details and b"request id" in bytes(response.body)
