"""Checking a video: its frames are searched as one batch of PDQ queries against the listed
videos' frames (through the same batcher and engine as every hash), and the hits
are grouped back into videos by the share of frames matched on both sides, as
python-threatexchange's vPDQ matching measures it.

What a caller sees is decided frame by frame first (service.checking.visible: its lists,
per-list distances, quarantine, negative lists). A frame shared by many listed videos (a
black frame, an intro card) costs the check little: equal frames are one index row run
(indexer.video_frames), and a frame keeps the MAX_MATCHES_PER_RESULT nearest videos, so
it counts towards at most that many (cap and count, and the answer says `capped`); a
video matching on its own frames still reaches its share.

A phased check (slot_seconds) counts the query by its slots, not its frames
(hashmatch.video_match.query_units, the rule's one definition); its frames are still
searched, charged and watched each once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

from hashmatch.bounds import MAX_VIDEO_FRAMES
from hashmatch.signals import SIGNALS
from hashmatch.v1 import match_pb2
from hashmatch.video import VideoFrame
from hashmatch.video_entries import FRAME_SIGNAL, VPDQ, frame_of, percent
from hashmatch.video_match import (
    COMPARED_MATCH_PERCENT,
    FRAME_THRESHOLD,
    QUERY_MATCH_PERCENT,
    query_units,
    slot_problem,
    unit_membership,
    units_matched,
)
from hashmatch.wire import MAX_MATCHES_PER_RESULT
from service import metrics
from service.matcher import Hit
from service.queries import InvalidRequest, ParsedQuery

_PDQ = SIGNALS[FRAME_SIGNAL]


class VideoQuery(NamedTuple):
    frames: list[ParsedQuery]  # the unique frames of quality 50 or more, as vpdq queries
    query_match: float
    compared_match: float
    # What the query-match counts: one unit per frame, unless the request sets
    # slot_seconds (hashmatch.video_match.query_units); each frame's units.
    units: int
    membership: list[list[int]]


class VideoHit(NamedTuple):
    list: str
    match_id: str
    query_match: float
    compared_match: float


def frame_hash(index: int, frame: match_pb2.VideoFrame) -> bytes:
    which = frame.WhichOneof("value")
    if which == "hash":
        return frame.hash
    if which == "hex":
        try:
            return _PDQ.parse_hex(frame.hex)
        except ValueError as exc:
            raise InvalidRequest(f"frame {index}: {exc}") from None
    raise InvalidRequest(f"frame {index}: no hash given: set hash (bytes) or hex (text)")


def video_query_frames(frames: Sequence[match_pb2.VideoFrame]) -> list[VideoFrame]:
    """The frames of a request, each checked; InvalidRequest naming the first bad one."""
    n = len(frames)
    if not 1 <= n <= MAX_VIDEO_FRAMES:
        raise InvalidRequest(
            f"a video has 1 to {MAX_VIDEO_FRAMES} frames, got {n}; send only its distinct "
            "frames of quality 50 or more, or sample it less often"
        )
    parsed = []
    for i, frame in enumerate(frames):
        raw = frame_hash(i, frame)
        try:
            parsed.append(frame_of(raw, frame.quality, frame.timestamp, frame.scaled))
        except ValueError as exc:
            raise InvalidRequest(f"frame {i}: {exc}") from None
    return parsed


def _threshold(request: match_pb2.VideoCheckRequest, field: str, default: float) -> float:
    """The request's share, which may only be raised from the default, never lowered."""
    if not request.HasField(field):  # type: ignore[arg-type]
        return default
    value = float(getattr(request, field))
    if not default <= value <= 100.0:  # also refuses NaN
        raise InvalidRequest(
            f"{field} {value} must be between the default {default:g} and 100; "
            "it can only be raised"
        )
    return value


def parse_video(request: match_pb2.VideoCheckRequest, match_only: bool) -> VideoQuery:
    """The request's frames checked, and those matched on as queries."""
    if match_only and any(
        request.HasField(f)
        for f in ("query_match_percent", "compared_match_percent", "max_distance")
    ):
        raise InvalidRequest("this API key learns match / no match only: thresholds may not be set")
    frames = video_query_frames(request.frames)
    slot = None
    if request.HasField("slot_seconds"):
        if (problem := slot_problem(request.slot_seconds)) is not None:
            raise InvalidRequest(problem)
        slot = request.slot_seconds
    hashes, units = query_units(frames, slot_seconds=slot)
    distance = FRAME_THRESHOLD
    if request.HasField("max_distance"):
        if request.max_distance > distance:
            raise InvalidRequest(
                f"max_distance {request.max_distance} exceeds the vpdq frame threshold "
                f"{distance}; it can only be tightened"
            )
        distance = request.max_distance
    return VideoQuery(
        [ParsedQuery(VPDQ, bytes.fromhex(h), distance) for h in hashes],
        _threshold(request, "query_match_percent", QUERY_MATCH_PERCENT),
        _threshold(request, "compared_match_percent", COMPARED_MATCH_PERCENT),
        len(units),
        unit_membership(units, len(hashes)),
    )


def videos(found: Sequence[list[Hit]], query: VideoQuery) -> list[VideoHit]:
    """The listed videos the frames hit, each with the share of the query's units (its
    frames, unless the query groups them in slots) that hit it and the share of its own
    frames hit; best first (ties by list, then match id)."""
    units, membership = query.units, query.membership
    query_frames: dict[tuple[str, str], set[int]] = defaultdict(set)
    # A listed video's frames hit, and how many it has: its plain frames and its scaled
    # ones apart (Hit.variant), its compared share the more met of the two, so that an
    # exact copy meets all of it as a downscaled one does.
    listed_frames: dict[tuple[str, str], dict[str, set[int]]] = defaultdict(
        lambda: defaultdict(set)
    )
    sizes: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for i, hits in enumerate(found):
        for h in hits:
            if h.frame < 0:
                continue
            key = (h.list, h.match_id)
            query_frames[key].add(i)
            listed_frames[key][h.variant].add(h.frame)
            sizes[key][h.variant] = h.frames
    matched = [
        VideoHit(
            key[0],
            key[1],
            percent(units_matched(membership, rows), units),
            max(percent(len(hit), sizes[key][kind]) for kind, hit in listed_frames[key].items()),
        )
        for key, rows in query_frames.items()
    ]
    matched.sort(key=lambda v: (-v.query_match, -v.compared_match, v.list, v.match_id))
    return matched


def visible_videos(matched: Sequence[VideoHit], query: VideoQuery) -> tuple[list[VideoHit], bool]:
    """The videos meeting the request's thresholds, at most MAX_MATCHES_PER_RESULT, and
    whether more did. (What the caller may see was decided frame by frame before.)"""
    shown = [
        v
        for v in matched
        if v.query_match >= query.query_match and v.compared_match >= query.compared_match
    ]
    return shown[:MAX_MATCHES_PER_RESULT], len(shown) > MAX_MATCHES_PER_RESULT


def video_response(
    version: int, frames: int, shown: Sequence[VideoHit], capped: bool, match_only: bool
) -> match_pb2.VideoCheckResponse:
    response = match_pb2.VideoCheckResponse(
        matched=bool(shown), capped=capped, frames_matched_on=frames, snapshot_version=version
    )
    for v in shown:
        if match_only:
            response.matches.add(list=v.list, match_id=v.match_id)
        else:
            response.matches.add(
                list=v.list,
                match_id=v.match_id,
                query_match_percent=v.query_match,
                compared_match_percent=v.compared_match,
            )
    return response


def count_video(frames: int, shown: Sequence[VideoHit]) -> None:
    metrics.QUERIES.labels(VPDQ).inc(frames)
    for v in shown:
        metrics.MATCHES.labels(VPDQ, v.list).inc()
