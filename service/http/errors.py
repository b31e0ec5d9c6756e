"""How the HTTP face refuses: `{"message": ...}` with a status, as HMA answers, for the
same exceptions the gRPC face turns into status codes (service/rpc.py)."""

from __future__ import annotations

import logging
import math
import uuid

from hashmatch.bounds import OutOfBounds
from indexer.store import InvalidValue, ListExists, NoSuchCase, NoSuchList, StoreUnavailable
from service import metrics
from service.auth import PermissionDenied, RateLimited, Unauthenticated
from service.batcher import DeadlineExceeded, Overloaded
from service.follower import NotInEffect
from service.http.jsonio import JSONAnswer
from service.queries import InvalidRequest
from service.rpc import RETRY_PUSHBACK_MS

log = logging.getLogger(__name__)


class HttpError(Exception):
    """A refusal with its own status (404 for a bank the caller may not see, 413, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def message(
    status: int,
    text: str,
    headers: dict[str, str] | None = None,
    receipt: dict[str, str] | None = None,
) -> JSONAnswer:
    body: dict[str, object] = {"message": text}
    if receipt:
        body["receipt"] = receipt
    return JSONAnswer(body, status_code=status, headers=headers)


def refusal(exc: Exception, route: str) -> JSONAnswer:
    """The answer to an exception a route raised: its problem named, never a traceback."""
    if isinstance(exc, HttpError):
        return message(exc.status, str(exc))
    if isinstance(exc, InvalidRequest | InvalidValue | OutOfBounds):
        return message(400, str(exc))
    if isinstance(exc, NoSuchList | NoSuchCase):
        return message(404, str(exc))
    if isinstance(exc, ListExists):
        return message(409, str(exc))
    if isinstance(exc, Unauthenticated):
        metrics.REJECTED.labels("unauthenticated").inc()
        return message(401, str(exc), {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, PermissionDenied):
        metrics.REJECTED.labels("permission_denied").inc()
        return message(403, str(exc))
    if isinstance(exc, RateLimited):
        metrics.REJECTED.labels("rate_limited").inc()
        return message(429, str(exc), {"Retry-After": str(max(1, math.ceil(exc.retry_after)))})
    if isinstance(exc, Overloaded):
        metrics.REJECTED.labels("overloaded").inc()
        retry = str(max(1, math.ceil(RETRY_PUSHBACK_MS / 1000)))
        return message(503, str(exc), {"Retry-After": retry})
    if isinstance(exc, StoreUnavailable):
        metrics.REJECTED.labels("store_unavailable").inc()
        return message(503, str(exc), {"Retry-After": "1"})
    if isinstance(exc, NotInEffect):
        # Stored, not yet matching: a new case's receipt comes with it, so that it can
        # still be withdrawn (gRPC sends it in trailing metadata).
        metrics.REJECTED.labels("not_in_effect").inc()
        return message(504, str(exc), receipt=dict(exc.metadata))
    if isinstance(exc, DeadlineExceeded):
        metrics.REJECTED.labels("deadline").inc()
        return message(504, str(exc))
    rid = uuid.uuid4().hex[:16]
    log.exception("%s failed", route, extra={"request_id": rid, "method": route})
    return message(500, f"internal error (request id {rid})")
