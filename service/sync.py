"""SyncService: a list's change log after a cursor, for keeping copies in step.

Every change handed out is charged to the caller's rate limit, a page at a time, and
victims' cases go only to keys granted their list by name (Caller.may_pull).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial

import grpc

from hashmatch.v1 import sync_pb2, sync_pb2_grpc
from indexer.store import CASE_LIST, MAX_SEQ, Change, Store
from service.audit import AuditLog
from service.auth import Caller, Gate, PermissionDenied, reach
from service.queries import InvalidRequest
from service.rpc import guarded, record

PAGE = 1_000
# Video frames a page holds at most (its first change whatever its size): well under the
# message limit.
PAGE_FRAME_BYTES = 8 * 1024 * 1024

_OPS = {"add": sync_pb2.Change.OP_ADD, "remove": sync_pb2.Change.OP_REMOVE}


def to_message(c: Change) -> sync_pb2.Change:
    m = sync_pb2.Change(
        seq=c.seq,
        op=_OPS[c.op],
        signal=c.signal,
        hash=c.hash,
        match_id=c.match_id,
        source_ref=c.source_ref or "",
        variant=c.variant,
        frames=c.frames if c.op == "add" else b"",
    )
    if c.quality is not None:
        m.quality = c.quality
    return m


class SyncServicer(sync_pb2_grpc.SyncServiceServicer):
    def __init__(self, store: Store, gate: Gate, audit: AuditLog) -> None:
        self._store = store
        self._gate = gate
        self._audit = audit

    def _start(
        self, request: sync_pb2.PullRequest, context: grpc.ServicerContext
    ) -> tuple[Caller, str]:
        caller = self._gate.caller(context, "sync-read")
        if not request.list:
            raise InvalidRequest("name the list to pull")
        if request.after_seq > MAX_SEQ:
            raise InvalidRequest(
                f"after_seq {request.after_seq} is beyond the largest change sequence {MAX_SEQ}"
            )
        if not caller.may_pull(request.list):
            granted = " (victims' cases go only to keys granted it by name)"
            raise PermissionDenied(
                f"{caller.actor} may not read list {request.list[:200]!r}"
                + (granted if request.list == CASE_LIST else "")
            )
        info = reach(self._store, caller, request.list)
        self._audit.record(caller.actor, "pull", request.list, after_seq=request.after_seq)
        return caller, info.kind

    def _page(
        self, caller: Caller, list_name: str, after: int, size: int
    ) -> tuple[list[Change], bool]:
        """The next page, and whether more may follow."""
        page = self._store.changes(after, size, list_name)
        more = len(page) == size
        held = 0
        for k, c in enumerate(page):
            held += len(c.frames) if c.op == "add" else 0
            if k and held > PAGE_FRAME_BYTES:
                page, more = page[:k], True
                break
        if page:
            self._gate.charge(caller, len(page))
        return page, more

    def Pull(
        self, request: sync_pb2.PullRequest, context: grpc.ServicerContext
    ) -> Iterator[sync_pb2.PullResponse]:
        started = time.perf_counter()
        after = request.after_seq
        try:
            caller, kind = guarded("Pull", context, partial(self._start, request, context))
            capacity = self._gate.capacity(caller)
            # A page never exceeds what the caller's bucket can hold, so it can always
            # go on once its bucket has refilled.
            size = PAGE if capacity is None else max(1, min(PAGE, int(capacity)))
            while True:
                page, more = guarded(
                    "Pull", context, partial(self._page, caller, request.list, after, size)
                )
                if page:
                    yield sync_pb2.PullResponse(changes=[to_message(c) for c in page], kind=kind)
                    after = page[-1].seq
                if not more:
                    return
        finally:
            record("Pull", context, started)
