"""FeedbackService: platforms' verdicts on the matches they were served, the review
queue of flagged and reported entries, and the feed of feedback counts an upstream
hotline pulls for the entries we copied from it.

A report is taken only for a match the server served the reporting key (the served
record its check's audit wrote, within FEEDBACK_WINDOW), so a key can neither report
on an entry it was never shown nor learn, from the answer, whether a match id exists
or in which list: every such case is the same NOT_FOUND. Reports have their own per-key
rate, so a key allowed thousands of hash checks a second is not allowed thousands of
reports.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import grpc

from hashmatch.bounds import LIST_NAME
from hashmatch.feedback import FEEDBACK_WINDOW, verdict_problem
from hashmatch.v1 import feedback_pb2, feedback_pb2_grpc
from indexer.store import MAX_SEQ, NoSuchMatch, ReviewItem, Store
from service import metrics
from service.anomaly import AnomalyWatch
from service.audit import FLUSH_SECONDS, AuditLog
from service.auth import Caller, Gate, PermissionDenied, RateLimited, TokenBucket, reach
from service.queries import InvalidRequest, parse_match_id
from service.rpc import guarded, record, unary

DEFAULT_REPORTS_PER_MINUTE = 60.0
MAX_REVIEW_ENTRIES = 1_000
PAGE = 1_000
SWEEP_SECONDS = 60.0
# How long a report on a match not (yet) found among those served waits for the other
# server processes to write their audit (they write every FLUSH_SECONDS).
SERVED_GRACE = FLUSH_SECONDS + 0.3
# Reports waiting out that grace at once, per key and in all: each holds a server thread.
GRACE_PER_KEY = 2
GRACE_IN_ALL = 8


class ReportLimit:
    """Reports per minute per key, a minute's worth at once; idle buckets are dropped."""

    def __init__(self, per_minute: float) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, TokenBucket] = {}
        self._swept = time.monotonic()
        self._lock = threading.Lock()

    def take(self, caller: Caller) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._swept >= SWEEP_SECONDS:
                self._swept = now
                for actor in [a for a, b in self._buckets.items() if b.full(now)]:
                    del self._buckets[actor]
            bucket = self._buckets.get(caller.actor)
            if bucket is None:
                rate = self.per_minute / 60
                bucket = self._buckets[caller.actor] = TokenBucket(rate, max(self.per_minute, 1))
            wait = bucket.take(1)
        if wait:
            raise RateLimited(
                f"feedback rate of {self.per_minute:g} reports a minute for {caller.actor} "
                f"exceeded; retry in {wait:.1f}s",
                wait,
            )


class GraceSlots:
    """Bounds the reports waiting out SERVED_GRACE at once, per key and in all, so bogus
    reports never hold more than a few server threads. A report over a bound is refused
    at once (RESOURCE_EXHAUSTED, retry after the grace), never queued: it says only that
    reports are busy, nothing of any list."""

    def __init__(self, per_key: int = GRACE_PER_KEY, in_all: int = GRACE_IN_ALL) -> None:
        self.per_key = per_key
        self.in_all = in_all
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def slot(self, caller: Caller) -> Iterator[None]:
        with self._lock:
            mine = self._held.get(caller.actor, 0)
            if mine >= self.per_key or sum(self._held.values()) >= self.in_all:
                raise RateLimited(
                    f"too many reports awaiting their served record (at most {self.per_key} "
                    f"a key, {self.in_all} in all); retry in {SERVED_GRACE:.1f}s",
                    SERVED_GRACE,
                )
            self._held[caller.actor] = mine + 1
        try:
            yield
        finally:
            with self._lock:
                if (left := self._held[caller.actor] - 1) > 0:
                    self._held[caller.actor] = left
                else:
                    del self._held[caller.actor]


@dataclass
class FeedbackSettings:
    """The operator's choices: each key's report rate, and whether upstream hotlines may
    pull the feedback on the entries we copied from them (`serve --share-feedback`)."""

    reports_per_minute: float = DEFAULT_REPORTS_PER_MINUTE
    share: bool = False
    limit: ReportLimit = field(init=False)
    grace: GraceSlots = field(init=False)

    def __post_init__(self) -> None:
        self.limit = ReportLimit(self.reports_per_minute)
        self.grace = GraceSlots()


def tenant_of(caller: Caller) -> str:
    """The tenant a key belongs to (its actor is "tenant/key id"): reports count per tenant."""
    return caller.actor.rpartition("/")[0] or caller.actor


def _review_entry(item: ReviewItem, admin: bool) -> feedback_pb2.ReviewEntry:
    reasons: dict[str, int] = {}
    for r in item.reports:
        if r.reason:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
    return feedback_pb2.ReviewEntry(
        list=item.list,
        match_id=item.match_id.hex(),
        state=item.state,
        cause=item.cause,
        anomaly_matches=item.anomaly_matches,
        confirmed=item.tenants("confirmed"),
        false_positive=item.tenants("false_positive"),
        pending_review=item.tenants("pending_review"),
        reasons=reasons,
        last_report_at=item.last_report_at,
        state_at=item.state_at,
        tenants=[
            feedback_pb2.TenantReport(tenant=r.tenant, verdict=r.verdict, reason=r.reason, at=r.at)
            for r in item.reports
        ]
        if admin
        else [],
        remote=[
            feedback_pb2.RemoteFeedback(
                source=c.source,
                confirmed=c.confirmed,
                false_positive=c.false_positive,
                pending_review=c.pending_review,
            )
            for c in item.remote
        ],
    )


class FeedbackServicer(feedback_pb2_grpc.FeedbackServiceServicer):
    def __init__(
        self,
        store: Store,
        reader: Store,
        gate: Gate,
        audit: AuditLog,
        anomaly: AnomalyWatch,
        settings: FeedbackSettings,
        in_effect: Callable[[grpc.ServicerContext | None, str], None],
    ) -> None:
        self._store = store
        self._reader = reader
        self.gate = gate
        self._audit = audit
        self._anomaly = anomaly
        self._settings = settings
        self._in_effect = in_effect

    def _served(self, caller: Caller, match_id: bytes, list_name: str) -> list[str]:
        """The lists whose entry `match_id` was served to the caller (only `list_name`, if
        given) and that it may still see. The check may have been answered a moment ago:
        its audit still queued here, or in another process that writes within
        FLUSH_SECONDS. So before an empty answer this process writes its queue and, that
        failing, waits out one flush of the others: every NOT_FOUND takes as long. Only a
        few reports wait at once (GraceSlots); the rest are told to retry."""
        since = time.time() - FEEDBACK_WINDOW

        def lookup() -> list[str]:
            return [
                name
                for name in self._store.served_lists(caller.actor, match_id, since)
                if caller.may_see(name) and (not list_name or name == list_name)
            ]

        if lists := lookup():
            return lists
        self._audit.write_queued()
        if lists := lookup():
            return lists
        with self._settings.grace.slot(caller):
            time.sleep(SERVED_GRACE)
            return lookup()

    @unary("Report", "check")
    def Report(
        self, request: feedback_pb2.ReportRequest, context: grpc.ServicerContext, caller: Caller
    ) -> feedback_pb2.ReportResponse:
        self._settings.limit.take(caller)
        match_id = parse_match_id(request.match_id)
        if (problem := verdict_problem(request.verdict, request.reason)) is not None:
            raise InvalidRequest(problem)
        if request.list:
            LIST_NAME.check(request.list)
        recorded = []
        for name in self._served(caller, match_id, request.list):
            try:
                quarantined = self._store.report_feedback(
                    name, match_id, caller.actor, tenant_of(caller), request.verdict, request.reason
                )
            except NoSuchMatch:
                continue  # removed since it was served
            recorded.append(name)
            self._audit.record(
                caller.actor,
                "feedback",
                name,
                match_id=request.match_id.lower(),
                verdict=request.verdict,
                reason=request.reason,
            )
            metrics.FEEDBACK.labels(name, request.verdict).inc()
            if quarantined:
                self._anomaly.quarantine(match_id)
                metrics.FEEDBACK.labels(name, "quarantined").inc()
                self._audit.record(
                    "hashmatch",
                    "entry_quarantined",
                    name,
                    match_id=request.match_id.lower(),
                    cause="feedback",
                )
        if not recorded:
            raise NoSuchMatch(request.match_id)
        return feedback_pb2.ReportResponse(lists=recorded)

    @unary("Review", "list-manage")
    def Review(
        self, request: feedback_pb2.ReviewRequest, context: grpc.ServicerContext, caller: Caller
    ) -> feedback_pb2.ReviewResponse:
        self.gate.charge(caller, 1)
        if request.list:
            _may_manage(caller, request.list)
            reach(self._store, caller, request.list)
            names: list[str] | None = [request.list]
        elif caller.lists is None and "admin" in caller.roles:
            names = None
        else:
            names = [
                p.name
                for p in self._store.list_policies()
                if caller.may_manage(p.name) and caller.may_reach(p.kind, p.tenant, p.name)
            ]
        items = self._store.review_queue(names)[:MAX_REVIEW_ENTRIES]
        admin = "admin" in caller.roles
        return feedback_pb2.ReviewResponse(entries=[_review_entry(i, admin) for i in items])

    @unary("Decide", "list-manage")
    def Decide(
        self, request: feedback_pb2.DecideRequest, context: grpc.ServicerContext, caller: Caller
    ) -> feedback_pb2.DecideResponse:
        _may_manage(caller, request.list)
        self.gate.charge(caller, 1)  # one entry, as a removal charges
        match_id = parse_match_id(request.match_id)
        state = self._store.decide_entry(request.list, match_id, request.decision)
        self._audit.record(
            caller.actor,
            f"review_{request.decision}",
            request.list,
            match_id=match_id.hex(),
            state=state,
        )
        if state == "quarantined":
            self._anomaly.quarantine(match_id)
        else:
            self._anomaly.confirm(match_id)
        if state == "removed":
            self._in_effect(context, "the removal (removing again is safe)")
        return feedback_pb2.DecideResponse(state=state)

    def _start(
        self, request: feedback_pb2.PullFeedbackRequest, context: grpc.ServicerContext
    ) -> Caller:
        caller = self.gate.caller(context, "sync-read")
        if not self._settings.share:
            raise PermissionDenied("this server does not share feedback (serve --share-feedback)")
        if not request.list:
            raise InvalidRequest("name the list whose feedback to pull")
        if request.after_seq > MAX_SEQ:
            raise InvalidRequest(f"after_seq {request.after_seq} is beyond {MAX_SEQ}")
        if not caller.may_pull(request.list):
            raise PermissionDenied(f"{caller.actor} may not read list {request.list[:200]!r}")
        reach(self._reader, caller, request.list)
        self._audit.record(caller.actor, "pull_feedback", request.list, after_seq=request.after_seq)
        return caller

    def _page(
        self, caller: Caller, list_name: str, after: int, size: int
    ) -> feedback_pb2.PullFeedbackResponse:
        page = self._reader.feedback_counts(list_name, after, size)
        if page:
            self.gate.charge(caller, len(page))
        return feedback_pb2.PullFeedbackResponse(
            entries=[
                feedback_pb2.EntryFeedback(
                    match_id=c.match_id,
                    seq=c.seq,
                    confirmed=c.confirmed,
                    false_positive=c.false_positive,
                    pending_review=c.pending_review,
                )
                for c in page
            ]
        )

    def PullFeedback(
        self, request: feedback_pb2.PullFeedbackRequest, context: grpc.ServicerContext
    ) -> Iterator[feedback_pb2.PullFeedbackResponse]:
        started = time.perf_counter()
        after = request.after_seq
        try:
            caller = guarded("PullFeedback", context, partial(self._start, request, context))
            capacity = self.gate.capacity(caller)
            size = PAGE if capacity is None else max(1, min(PAGE, int(capacity)))
            while True:
                page = guarded(
                    "PullFeedback", context, partial(self._page, caller, request.list, after, size)
                )
                if page.entries:
                    yield page
                    after = page.entries[-1].seq
                if len(page.entries) < size:
                    return
        finally:
            record("PullFeedback", context, started)


def _may_manage(caller: Caller, list_name: str) -> None:
    if not caller.may_manage(list_name):
        raise PermissionDenied(f"{caller.actor} may not manage list {list_name[:200]!r}")
