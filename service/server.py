"""The gRPC server: MatchService (plus, with a store, SubmissionService, SyncService and
FeedbackService),
standard health checking (liveness and readiness: service.readiness) and, when asked
for, reflection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection as grpc_reflection

from hashmatch.channel import MAX_MESSAGE_BYTES
from hashmatch.v1 import (
    feedback_pb2,
    feedback_pb2_grpc,
    match_pb2,
    match_pb2_grpc,
    submission_pb2,
    submission_pb2_grpc,
    sync_pb2,
    sync_pb2_grpc,
)
from hashmatch.video_entries import VPDQ
from indexer.store import Store
from service import metrics
from service.batcher import DEFAULT_MAX_QUEUED, Batcher
from service.checking import Found, check, visible
from service.decoding import TolerantDecoding
from service.feedback import FeedbackServicer, FeedbackSettings
from service.follower import ChangeFollower
from service.guards import Guards
from service.list_policy import widened
from service.matcher import Hit
from service.readiness import Readiness
from service.rpc import deadline_of, guarded, record
from service.snapshots import SnapshotHolder
from service.submission import SubmissionServicer
from service.sync import SyncServicer
from service.tls import TLS
from service.video_checking import (
    count_video,
    parse_video,
    video_response,
    videos,
    visible_videos,
)

MATCH_SERVICE = match_pb2.DESCRIPTOR.services_by_name["MatchService"].full_name
SUBMISSION_SERVICE = submission_pb2.DESCRIPTOR.services_by_name["SubmissionService"].full_name
SYNC_SERVICE = sync_pb2.DESCRIPTOR.services_by_name["SyncService"].full_name
FEEDBACK_SERVICE = feedback_pb2.DESCRIPTOR.services_by_name["FeedbackService"].full_name
# One empty Result as CheckResponse bytes: a response starts as one per query, decoded in C
# (for 1,000, 0.02 ms where results.add() each took 0.49: wire_benchmark.py), and only
# the queries with hits are filled in.
EMPTY_RESULT = match_pb2.CheckResponse(results=[match_pb2.Result()]).SerializeToString()


@dataclass(frozen=True)
class Feed:
    """The store behind a server that takes submissions: one connection for writes, one
    for reads (the change follower and sync pulls), the follower itself, and the
    operator's feedback settings (shared by the gRPC and HTTP faces, so one rate)."""

    writer: Store
    reader: Store
    follower: ChangeFollower
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)

    def servicers(self, guards: Guards) -> tuple[SubmissionServicer, FeedbackServicer]:
        """The handlers that write to the store, for either face."""
        submission = SubmissionServicer(
            self.writer,
            self.follower,
            guards.gate,
            guards.audit,
            guards.anomaly.confirm,
            guards.policies,
        )
        feedback = FeedbackServicer(
            self.writer,
            self.reader,
            guards.gate,
            guards.audit,
            guards.anomaly,
            self.feedback,
            submission.in_effect,
        )
        return submission, feedback


def check_response(
    version: int, n: int, with_hits: list[Found], match_only: bool
) -> match_pb2.CheckResponse:
    """The CheckResponse to `n` queries: a result for each, the hits filled in; no distance
    for a match-only key."""
    response = match_pb2.CheckResponse(snapshot_version=version)
    response.MergeFromString(EMPTY_RESULT * n)
    results = response.results
    for i, hits, capped in with_hits:
        result = results[i]
        result.matched = True
        result.capped = capped
        for h in hits:
            if match_only:
                result.matches.add(list=h.list, match_id=h.match_id, variant=h.variant)
            else:
                result.matches.add(
                    list=h.list, match_id=h.match_id, distance=h.distance, variant=h.variant
                )
    return response


class MatchServicer(match_pb2_grpc.MatchServiceServicer):
    def __init__(self, batcher: Batcher, guards: Guards) -> None:
        self._batcher = batcher
        self._guards = guards

    def _answer(
        self, request: match_pb2.CheckRequest, context: grpc.ServicerContext, method: str
    ) -> match_pb2.CheckResponse:
        checked = check(
            self._batcher,
            self._guards,
            partial(self._guards.gate.caller, context),
            request,
            deadline_of(context),
            method,
        )
        return check_response(*checked)

    def Check(
        self, request: match_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> match_pb2.CheckResponse:
        started = time.perf_counter()
        try:
            return guarded("Check", context, lambda: self._answer(request, context, "Check"))
        finally:
            record("Check", context, started)

    def _answer_video(
        self, request: match_pb2.VideoCheckRequest, context: grpc.ServicerContext
    ) -> match_pb2.VideoCheckResponse:
        """One video: its frames are charged, watched for probing as one question, and
        searched as one batch; each video shown is audited once, not each frame."""
        caller = self._guards.gate.caller(context, "check")
        query = parse_video(request, caller.match_only)
        frames = query.frames
        guards = self._guards
        guards.gate.charge(caller, max(1, len(frames)))
        if frames:
            guards.probe.observe(caller, frames, [list(range(len(frames)))])
        negative = guards.policies.current.negative_for(caller.tenant)
        version, found = self._batcher.check(
            widened(frames) if negative else frames, deadline_of(context)
        )
        # Each frame's hits as an image hash's: the caller's lists, per-list distances,
        # quarantine and negative lists (a frame near a negative entry counts for nothing).
        seen: list[list[Hit]] = [[] for _ in frames]
        crowded = False  # a frame matched more videos than it kept: the answer may be short
        for f in visible(caller, frames, found, guards.anomaly.quarantined, guards.policies):
            seen[f.query], crowded = f.hits, crowded or f.capped
        shown, capped = visible_videos(videos(seen, query), query)
        capped |= crowded
        for v in shown:
            guards.audit.record(
                caller.actor,
                "match",
                v.list,
                match_id=v.match_id,
                signal=VPDQ,
                frames=len(frames),
                query_match=round(v.query_match, 2),
                compared_match=round(v.compared_match, 2),
            )
        if shown:
            guards.anomaly.count(Hit(v.list, v.match_id, 0) for v in shown)
        guards.audit.key_used(caller.actor, "CheckVideo")
        count_video(len(frames), shown)
        return video_response(version, query.units, shown, capped, caller.match_only)

    def CheckVideo(
        self, request: match_pb2.VideoCheckRequest, context: grpc.ServicerContext
    ) -> match_pb2.VideoCheckResponse:
        started = time.perf_counter()
        try:
            return guarded("CheckVideo", context, lambda: self._answer_video(request, context))
        finally:
            record("CheckVideo", context, started)

    def CheckStream(
        self, request_iterator: Iterator[match_pb2.CheckRequest], context: grpc.ServicerContext
    ) -> Iterator[match_pb2.CheckResponse]:
        started = time.perf_counter()
        try:
            for request in request_iterator:
                yield guarded(
                    "CheckStream", context, partial(self._answer, request, context, "CheckStream")
                )
        finally:
            record("CheckStream", context, started)


def build_server(
    holder: SnapshotHolder,
    listen: str,
    max_workers: int = 64,
    max_queued_queries: int = DEFAULT_MAX_QUEUED,
    max_concurrent_rpcs: int = 1024,
    feed: Feed | None = None,
    guards: Guards | None = None,
    tls: TLS | None = None,
    pin_workers: bool = False,
    readiness: Readiness | None = None,
    reflection: bool = False,
    batcher: Batcher | None = None,
) -> tuple[grpc.Server, int]:
    """A server ready to start, bound to `listen`; returns it with the bound port.

    Past `max_concurrent_rpcs` in flight, gRPC itself answers RESOURCE_EXHAUSTED;
    past `max_queued_queries` waiting for the engine, so does the batcher.
    `pin_workers` keeps each engine worker on a CPU of its own. A `batcher` given (one
    the HTTP face shares) takes the place of the last two. Reflection is off unless
    asked for: every RPC but health needs a key, and reflection cannot check one.
    """
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        interceptors=[TolerantDecoding()],
    )
    if batcher is None:
        batcher = Batcher(lambda: holder.matcher, max_queued=max_queued_queries, pin=pin_workers)
    metrics.QUEUED.set_function(lambda: batcher.queued)
    guards = guards or Guards.open()
    match_pb2_grpc.add_MatchServiceServicer_to_server(MatchServicer(batcher, guards), server)
    services = [MATCH_SERVICE]
    if feed is not None:
        submission, feedback = feed.servicers(guards)
        submission_pb2_grpc.add_SubmissionServiceServicer_to_server(submission, server)
        sync_pb2_grpc.add_SyncServiceServicer_to_server(
            SyncServicer(feed.reader, guards.gate, guards.audit), server
        )
        feedback_pb2_grpc.add_FeedbackServiceServicer_to_server(feedback, server)
        services += [SUBMISSION_SERVICE, SYNC_SERVICE, FEEDBACK_SERVICE]
    readiness = readiness or Readiness(guards.gate, feed.follower if feed else None)
    health_pb2_grpc.add_HealthServicer_to_server(readiness.health, server)
    readiness.serve(MATCH_SERVICE, services[1:])
    if reflection:
        grpc_reflection.enable_server_reflection(
            (*services, health.SERVICE_NAME, grpc_reflection.SERVICE_NAME), server
        )
    try:
        port = (
            server.add_secure_port(listen, tls.server_credentials())
            if tls is not None
            else server.add_insecure_port(listen)
        )
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {listen}: {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    return server, port
