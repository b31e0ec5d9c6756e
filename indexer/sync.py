"""Keeping a local copy of a remote list in step through SyncService.Pull.

Each page of changes is applied together with the cursor that follows it, in
one transaction: a puller killed at any moment resumes where its last commit
ended, and applying a page twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hashmatch.bounds import LIST_NAME, SOURCE_REF, SUBMITTER, VARIANT, OutOfBounds
from hashmatch.channel import Credentials, open_channel
from hashmatch.signals import hash_problem
from hashmatch.v1 import feedback_pb2, feedback_pb2_grpc, sync_pb2, sync_pb2_grpc
from indexer.store import LIST_KINDS, MATCH_ID_BYTES, Change, FeedbackCounts, InvalidValue, Store

MAX_REFUSALS_LISTED = 1_000
_OPS = {sync_pb2.Change.OP_ADD: "add", sync_pb2.Change.OP_REMOVE: "remove"}


class SyncError(Exception):
    pass


@dataclass
class PullReport:
    source: str
    cursor: int
    added: int = 0
    removed: int = 0
    refused: int = 0
    refusals: list[str] = field(default_factory=list)  # why, for the first MAX_REFUSALS_LISTED


def from_message(m: sync_pb2.Change, list_name: str) -> Change:
    op = _OPS.get(m.op)
    if op is None:
        raise SyncError(f"change {m.seq}: unknown operation {m.op}")
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


def change_problem(c: Change) -> str | None:
    """Why a pulled change can't go in, or None. A bad change is refused alone: the rest of
    its page goes in. (A removal goes by match id: its hash is never used.)"""
    if len(c.match_id) != MATCH_ID_BYTES:
        return f"a match id is {MATCH_ID_BYTES} bytes, not {len(c.match_id)}"
    if c.op != "add":
        return None
    try:
        SOURCE_REF.check(c.source_ref or "")
        VARIANT.check(c.variant)
    except OutOfBounds as exc:
        return str(exc)
    return hash_problem(c.signal, c.hash)


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
            if not page.changes:
                continue
            if page.changes[0].seq <= report.cursor:
                raise SyncError(
                    f"{source} sent change {page.changes[0].seq}, not after {report.cursor}"
                )
            changes = []
            for m in page.changes:
                c = from_message(m, list_name)
                problem = change_problem(c)
                if problem is None:
                    changes.append(c)
                else:
                    report.refused += 1
                    if len(report.refusals) < MAX_REFUSALS_LISTED:
                        report.refusals.append(f"change {c.seq}: {problem}")
            last = page.changes[-1].seq
            kind = page.kind or "match"
            if kind not in LIST_KINDS:
                raise SyncError(f"{source} sent list kind {kind[:40]!r}")
            try:
                store.apply_sync(source, into or list_name, changes, through=last, kind=kind)
            except InvalidValue as exc:
                raise SyncError(str(exc)) from None
            report.cursor = last
            report.added += sum(c.op == "add" for c in changes)
            report.removed += sum(c.op == "remove" for c in changes)
            if progress is not None:
                progress(report)
    return report


def pull_feedback(
    store: Store, target: str, list_name: str, credentials: Credentials | None = None
) -> PullReport:
    """Bring in the feedback counts a downstream server holds on the entries it copied of
    our list `list_name` (their match ids are ours), since our cursor: each page is kept
    with the cursor after it, in one transaction, as a pull of changes is."""
    source = f"{target}/{list_name}"
    try:
        SUBMITTER.check(f"feedback:{source}")
    except OutOfBounds as exc:
        raise SyncError(str(exc)) from None
    report = PullReport(source, store.sync_cursor(f"feedback:{source}"))
    with open_channel(target, credentials) as channel:
        stub = feedback_pb2_grpc.FeedbackServiceStub(channel)
        request = feedback_pb2.PullFeedbackRequest(list=list_name, after_seq=report.cursor)
        for page in stub.PullFeedback(request):
            if not page.entries:
                continue
            if page.entries[0].seq <= report.cursor:
                raise SyncError(
                    f"{source} sent feedback {page.entries[0].seq}, not after {report.cursor}"
                )
            counts = []
            for m in page.entries:
                if len(m.match_id) != MATCH_ID_BYTES:
                    report.refused += 1
                    if len(report.refusals) < MAX_REFUSALS_LISTED:
                        report.refusals.append(
                            f"feedback {m.seq}: a match id is {MATCH_ID_BYTES} bytes, "
                            f"not {len(m.match_id)}"
                        )
                    continue
                counts.append(
                    FeedbackCounts(
                        m.match_id, m.seq, m.confirmed, m.false_positive, m.pending_review
                    )
                )
            report.cursor = max(report.cursor, max(m.seq for m in page.entries))
            store.apply_remote_feedback(source, counts, report.cursor)
            report.added += len(counts)
    return report
