"""Client SDK for MatchService: hashes in, verdicts out, in input order."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from hashmatch.channel import Credentials, ServiceClient
from hashmatch.v1 import match_pb2, match_pb2_grpc
from hashmatch.video import VideoFrame, hash_video, hash_video_phased
from hashmatch.wire import MAX_QUERIES_PER_REQUEST, check_request, video_check_request


@dataclass(frozen=True)
class Match:
    signal: str
    list: str
    match_id: str
    distance: int | None  # None for a match-only key
    variant: str = ""  # which variant of the listed image matched; "" the image as listed


@dataclass(frozen=True)
class Verdict:
    matched: bool
    matches: tuple[Match, ...]  # the closest first
    capped: bool = False  # more entries matched than the server returns (the farthest left out)


@dataclass(frozen=True)
class VideoMatch:
    list: str
    match_id: str  # the listed video's: one entry, whatever its length
    query_match_percent: float | None  # None for a match-only key
    compared_match_percent: float | None


@dataclass(frozen=True)
class VideoVerdict:
    matched: bool
    matches: tuple[VideoMatch, ...]  # the best first
    capped: bool
    frames_matched_on: int  # the query's unique frames of quality 50 or more


Query = tuple[str, bytes]


class MatchClient(ServiceClient):
    """Checks hashes against a hashmatch server.

    Large inputs go over one CheckStream in full-size batches, so checking
    100,000 hashes costs ten round trips, not 100,000.
    """

    def __init__(
        self, target: str, *, timeout: float = 60.0, credentials: Credentials | None = None
    ) -> None:
        super().__init__(target, timeout=timeout, credentials=credentials)
        self._stub = match_pb2_grpc.MatchServiceStub(self._channel)

    def check(self, queries: Sequence[Query], images: Sequence[int] = ()) -> list[Verdict]:
        """`images` (optional, one per query) numbers the queries by the image they were
        hashed from: the robust probes of one image share a number, so that the server's
        probing watch takes them as one question rather than a walk."""
        if len(queries) <= MAX_QUERIES_PER_REQUEST:
            response = self._stub.Check(check_request(queries, images), timeout=self._timeout)
            return _verdicts(queries, response)
        return list(self.check_stream(queries))

    def check_video(
        self,
        frames: Sequence[VideoFrame],
        *,
        query_match_percent: float | None = None,
        compared_match_percent: float | None = None,
        max_distance: int | None = None,
        slot_seconds: float | None = None,
    ) -> VideoVerdict:
        """One video by its vPDQ frames, in one request whatever its length; the
        thresholds (defaults 80% and 0%) can only be raised. `slot_seconds` makes it a
        phased check: the frames in one slot count as one (hash_video_phased's frames)."""
        request = video_check_request(
            frames, query_match_percent, compared_match_percent, max_distance, slot_seconds
        )
        r = self._stub.CheckVideo(request, timeout=self._timeout)
        return VideoVerdict(
            r.matched,
            tuple(
                VideoMatch(
                    m.list,
                    m.match_id,
                    m.query_match_percent if m.HasField("query_match_percent") else None,
                    m.compared_match_percent if m.HasField("compared_match_percent") else None,
                )
                for m in r.matches
            ),
            r.capped,
            r.frames_matched_on,
        )

    def check_video_file(
        self, path: str | os.PathLike[str], *, plain: bool = False
    ) -> VideoVerdict:
        """A video file hashed here and checked as one. By default a phased check
        (hash_video_phased), which also finds an upload trimmed by a fraction of a
        second; `plain` sends vPDQ's own frames, matched by pytx's rule. Raises VideoError
        for a file that is no readable video, OSError if it cannot be read."""
        if plain:
            return self.check_video(hash_video(path))
        frames, slot_seconds = hash_video_phased(path)
        return self.check_video(frames, slot_seconds=slot_seconds)

    def check_stream(
        self, queries: Iterable[Query], batch_size: int = MAX_QUERIES_PER_REQUEST
    ) -> Iterator[Verdict]:
        """Verdicts for a (possibly huge, lazily read) sequence of queries, in order."""
        sent: list[list[Query]] = []

        def requests() -> Iterator[match_pb2.CheckRequest]:
            it = iter(queries)
            while batch := list(itertools.islice(it, batch_size)):
                sent.append(batch)
                yield check_request(batch)

        # No overall deadline: a stream may carry millions of hashes.
        for i, response in enumerate(self._stub.CheckStream(requests())):
            yield from _verdicts(sent[i], response)
            sent[i] = []


def _verdicts(queries: Sequence[Query], response: match_pb2.CheckResponse) -> list[Verdict]:
    if len(response.results) != len(queries):
        raise RuntimeError(
            f"server answered {len(response.results)} results for {len(queries)} queries"
        )
    return [
        Verdict(
            matched=result.matched,
            matches=tuple(
                Match(
                    signal,
                    m.list,
                    m.match_id,
                    m.distance if m.HasField("distance") else None,
                    m.variant,
                )
                for m in result.matches
            ),
            capped=result.capped,
        )
        for (signal, _), result in zip(queries, response.results, strict=True)
    ]
