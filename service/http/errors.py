"""How the HTTP face refuses: `{"message": ...}` with a status, as HMA answers, for the
same refusals the gRPC face answers (one table: service.refusals)."""

from __future__ import annotations

import logging
import uuid

from service.http.jsonio import JSONAnswer
from service.refusals import refusal as refused
from service.refusals import whole_seconds

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
    answer = refused(exc)
    if answer is not None:
        headers = {}
        if answer.kind.http == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if answer.retry_after is not None:
            headers["Retry-After"] = whole_seconds(answer.retry_after)
        # A new case stored but not yet in effect: its receipt, so that it can still be
        # withdrawn (gRPC sends it in trailing metadata).
        receipt = dict(answer.metadata)
        return message(answer.kind.http, answer.message, headers or None, receipt or None)
    rid = uuid.uuid4().hex[:16]
    log.exception("%s failed", route, extra={"request_id": rid, "method": route})
    return message(500, f"internal error (request id {rid})")
