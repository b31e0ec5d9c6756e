"""Keeping a local copy of a remote list in step through SyncService.Pull.

Each page of changes is applied together with the cursor that follows it, in
one transaction: a puller killed at any moment resumes where its last commit
ended, and applying a page twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hashmatch.bounds import LIST_NAME, SOURCE_REF, SUBMITTER, TENANT, VARIANT, OutOfBounds
from hashmatch.channel import Credentials, open_channel
from hashmatch.signals import hash_problem
from hashmatch.v1 import feedback_pb2, feedback_pb2_grpc, sync_pb2, sync_pb2_grpc
from hashmatch.video_entries import VPDQ, listing_problem, unpack_frames, video_digest
from indexer.store import (
    LIST_KINDS,
    MATCH_ID_BYTES,
    MAX_COUNT,
    MAX_SEQ,
    Change,
    FeedbackCounts,
    InvalidValue,
    NoSuchList,
    Store,
    whose,
)

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

    def refuse(self, why: str) -> None:
        self.refused += 1
        if len(self.refusals) < MAX_REFUSALS_LISTED:
            self.refusals.append(why)


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
        m.frames,
    )


def pulled_video_problem(digest: bytes, frames: bytes) -> str | None:
    """Why a pulled video can't go in: frames that don't unpack, don't hash to the digest
    sent with them, or that no list may hold."""
    try:
        unpacked = unpack_frames(frames)
    except ValueError as exc:
        return f"vpdq video: {exc}"
    if video_digest(frames) != digest:
        return "vpdq video: its hash is not the digest of its frames"
    if reason := listing_problem(unpacked):
        return f"vpdq video: {reason}"
    return None


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
    if c.signal == VPDQ:
        return pulled_video_problem(c.hash, c.frames)
    if c.frames:
        return f"a {c.signal[:40]!r} entry carries video frames"
    return hash_problem(c.signal, c.hash)


def whose_negative(
    source: str, kind: str, negative_for: str | None, negative_for_all: bool
) -> str | None:
    """The tenant a pulled list belongs to here (None: a match list, or a negative list
    for every tenant, as the operator said); SyncError if the operator said nothing of
    a negative list, or said it of a match list."""
    if kind != "negative":
        if negative_for is not None or negative_for_all:
            raise SyncError(f"{source} is a {kind} list: only a negative list has a tenant")
        return None
    if negative_for is None and not negative_for_all:
        raise SyncError(
            f"{source} is a negative list, which suppresses matches: say whose it is here,"
            " --negative-for TENANT (that tenant's only) or --negative-for-all (every tenant's)"
        )
    return negative_for


def pull(
    store: Store,
    target: str,
    list_name: str,
    into: str | None = None,
    progress: Callable[[PullReport], None] | None = None,
    credentials: Credentials | None = None,
    *,
    negative_for: str | None = None,
    negative_for_all: bool = False,
) -> PullReport:
    """Apply the remote list's changes since our cursor to the local list `into`.

    A negative list suppresses matches, so whose it is here is the operator's to say:
    `negative_for` a tenant, or `negative_for_all` (every tenant's). A negative list
    pulled with neither is refused before anything is stored: the upstream's word
    must not silence the matches of every tenant here."""
    source = f"{target}/{list_name}"
    try:
        LIST_NAME.check(into or list_name)
        SUBMITTER.check(f"sync:{source}")  # what each pulled entry records as its submitter
        if negative_for is not None:
            TENANT.check(negative_for)
    except OutOfBounds as exc:
        raise SyncError(str(exc)) from None
    if negative_for is not None and negative_for_all:
        raise SyncError(
            "a negative list is one tenant's or every tenant's:"
            " --negative-for TENANT or --negative-for-all, not both"
        )
    try:
        held = store.list_info(into or list_name)
    except NoSuchList:
        pass
    else:  # said now, even when no change is pulled: a later pull never changes whose it is
        here = f"local list {into or list_name!r}"
        tenant = whose_negative(here, held.kind, negative_for, negative_for_all)
        if tenant != held.tenant:
            raise SyncError(f"{here} is {whose(held.tenant)}, not {whose(tenant)}")
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
            tenant = whose_negative(source, kind, negative_for, negative_for_all)
            try:
                elsewhere = store.apply_sync(
                    source, into or list_name, changes, through=last, kind=kind, tenant=tenant
                )
            except InvalidValue as exc:
                raise SyncError(str(exc)) from None
            for c in changes:
                if c.op == "add" and c.match_id in elsewhere:
                    report.refused += 1
                    if len(report.refusals) < MAX_REFUSALS_LISTED:
                        held_by = elsewhere[c.match_id]
                        report.refusals.append(
                            f"change {c.seq}: match id already held by list {held_by!r}"
                        )
            report.cursor = last
            report.added += sum(c.op == "add" and c.match_id not in elsewhere for c in changes)
            report.removed += sum(c.op == "remove" for c in changes)
            if progress is not None:
                progress(report)
    return report


def _counts_problem(m: feedback_pb2.EntryFeedback) -> str | None:
    """Why a downstream's counts on one entry cannot be kept, or None."""
    if len(m.match_id) != MATCH_ID_BYTES:
        return f"a match id is {MATCH_ID_BYTES} bytes, not {len(m.match_id)}"
    if (most := max(m.confirmed, m.false_positive, m.pending_review)) > MAX_COUNT:
        return f"a count of {most} is beyond {MAX_COUNT}"
    return None


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
            if (last := max(m.seq for m in page.entries)) > MAX_SEQ:
                raise SyncError(f"{source} sent feedback seq {last}, beyond {MAX_SEQ}")
            counts = []
            for m in page.entries:
                if (problem := _counts_problem(m)) is not None:
                    report.refuse(f"feedback {m.seq}: {problem}")
                    continue
                counts.append(
                    FeedbackCounts(
                        m.match_id, m.seq, m.confirmed, m.false_positive, m.pending_review
                    )
                )
            report.cursor = max(report.cursor, last)
            try:
                refused = store.apply_remote_feedback(source, list_name, counts, report.cursor)
            except (InvalidValue, NoSuchList) as exc:
                raise SyncError(f"{source}: {exc}") from None
            for c in refused:
                report.refuse(
                    f"feedback {c.seq}: match id {c.match_id.hex()} is no entry of {list_name!r}"
                )
            report.added += len(counts) - len(refused)
    return report
