"""What client and server agree on about requests, beyond the .proto itself."""

from __future__ import annotations

from collections.abc import Sequence

from hashmatch.signals import SIGNALS
from hashmatch.v1 import match_pb2
from hashmatch.video import VideoFrame
from hashmatch.video_entries import first_matchable

MAX_QUERIES_PER_REQUEST = 10_000
# Matches one Result holds at most, the closest first; a Result with more says it was capped.
MAX_MATCHES_PER_RESULT = 32


def query(signal: str, hash_bytes: bytes, max_distance: int | None = None) -> match_pb2.Query:
    q = match_pb2.Query(signal=signal, hash=hash_bytes)
    if max_distance is not None:
        q.max_distance = max_distance
    return q


def check_request(
    queries: Sequence[tuple[str, bytes]], images: Sequence[int] = ()
) -> match_pb2.CheckRequest:
    """A CheckRequest for (signal, raw hash) pairs. Hashes all of one signal and of its
    size go packed in one HashBatch (a 1,000-hash batch takes a quarter of the time to
    build, and the server parses it in under a third: wire_benchmark.py);
    anything else goes as one Query each, so that the server names the bad one (packed,
    a short hash would shift every hash after it). `images` numbers each query by the
    image it was hashed from (CheckRequest.images): the robust probes of one image share one."""
    names = {name for name, _ in queries}
    if len(names) == 1:
        signal = SIGNALS.get(names.pop())
        if signal is not None and all(len(h) == signal.nbytes for _, h in queries):
            hashes = b"".join(h for _, h in queries)
            return match_pb2.CheckRequest(
                batch=match_pb2.HashBatch(signal=signal.name, hashes=hashes), images=images
            )
    return match_pb2.CheckRequest(queries=[query(name, h) for name, h in queries], images=images)


def video_frames(frames: Sequence[VideoFrame]) -> list[match_pb2.VideoFrame]:
    return [
        match_pb2.VideoFrame(
            hash=bytes.fromhex(f.pdq), quality=f.quality, timestamp=f.timestamp, scaled=f.scaled
        )
        for f in frames
    ]


def video_check_request(
    frames: Sequence[VideoFrame],
    query_match_percent: float | None = None,
    compared_match_percent: float | None = None,
    max_distance: int | None = None,
    slot_seconds: float | None = None,
) -> match_pb2.VideoCheckRequest:
    """A VideoCheckRequest of the frames the server matches on (the first of each distinct
    hash of quality 50 or more, in each slot for a phased check); a video with none sends
    its first frame, and is answered no match."""
    request = match_pb2.VideoCheckRequest(
        frames=video_frames(first_matchable(frames, slot_seconds) or frames[:1])
    )
    if slot_seconds is not None:
        request.slot_seconds = slot_seconds
    if query_match_percent is not None:
        request.query_match_percent = query_match_percent
    if compared_match_percent is not None:
        request.compared_match_percent = compared_match_percent
    if max_distance is not None:
        request.max_distance = max_distance
    return request
