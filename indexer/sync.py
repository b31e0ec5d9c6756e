"""Keeping a local copy of a remote list in step through SyncService.Pull.

Each page of changes is applied together with the cursor that follows it, in
one transaction: a puller killed at any moment resumes where its last commit
ended, and applying a page twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hashmatch.bounds import LIST_NAME, SOURCE_REF, SUBMITTER, VARIANT, OutOfBounds
from hashmatch.channel import Credentials, open_channel
from hashmatch.codec import HashFormatError
from hashmatch.signals import UnknownSignalError, get_signal
from hashmatch.v1 import sync_pb2, sync_pb2_grpc
from indexer.store import MATCH_ID_BYTES, Change, Store

_OPS = {sync_pb2.Change.OP_ADD: "add", sync_pb2.Change.OP_REMOVE: "remove"}


class SyncError(Exception):
    pass


@dataclass
class PullReport:
    source: str
    cursor: int
    added: int = 0
    removed: int = 0


def from_message(m: sync_pb2.Change, list_name: str) -> Change:
    op = _OPS.get(m.op)
    if op is None:
        raise SyncError(f"change {m.seq}: unknown operation {m.op}")
    try:
        get_signal(m.signal).check_bytes(m.hash)
    except (UnknownSignalError, HashFormatError) as exc:
        raise SyncError(f"change {m.seq}: {exc}") from None
    if len(m.match_id) != MATCH_ID_BYTES:
        raise SyncError(
            f"change {m.seq}: a match id is {MATCH_ID_BYTES} bytes, not {len(m.match_id)}"
        )
    try:
        SOURCE_REF.check(m.source_ref)
        VARIANT.check(m.variant)
    except OutOfBounds as exc:
        raise SyncError(f"change {m.seq}: {exc}") from None
    quality = m.quality if m.HasField("quality") else None
    return Change(
        m.seq,
        op,
        0,
        list_name,
        m.signal,
        m.hash,
        m.match_id,
        quality,
        m.source_ref or None,
        0.0,
        m.variant,
    )


def pull(
    store: Store,
    target: str,
    list_name: str,
    into: str | None = None,
    progress: Callable[[PullReport], None] | None = None,
    credentials: Credentials | None = None,
) -> PullReport:
    """Apply the remote list's changes since our cursor to the local list `into`."""
    source = f"{target}/{list_name}"
    try:
        LIST_NAME.check(into or list_name)
        SUBMITTER.check(f"sync:{source}")  # what each pulled entry records as its submitter
    except OutOfBounds as exc:
        raise SyncError(str(exc)) from None
    report = PullReport(source, store.sync_cursor(source))
    with open_channel(target, credentials) as channel:
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        for page in stub.Pull(sync_pb2.PullRequest(list=list_name, after_seq=report.cursor)):
            changes = [from_message(m, list_name) for m in page.changes]
            if not changes:
                continue
            if changes[0].seq <= report.cursor:
                raise SyncError(f"{source} sent change {changes[0].seq}, not after {report.cursor}")
            store.apply_sync(source, into or list_name, changes)
            report.cursor = changes[-1].seq
            report.added += sum(c.op == "add" for c in changes)
            report.removed += sum(c.op == "remove" for c in changes)
            if progress is not None:
                progress(report)
    return report
