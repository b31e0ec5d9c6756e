"""Client SDK for MatchService: hashes in, verdicts out, in input order."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

import grpc

from hashmatch.v1 import match_pb2, match_pb2_grpc
from hashmatch.wire import MAX_QUERIES_PER_REQUEST, query


@dataclass(frozen=True)
class Match:
    signal: str
    list: str
    match_id: str
    distance: int


@dataclass(frozen=True)
class Verdict:
    matched: bool
    matches: tuple[Match, ...]


Query = tuple[str, bytes]


class MatchClient:
    """Checks hashes against a hashmatch server.

    Large inputs go over one CheckStream in full-size batches, so checking
    100,000 hashes costs ten round trips, not 100,000.
    """

    def __init__(self, target: str, *, timeout: float = 60.0) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = match_pb2_grpc.MatchServiceStub(self._channel)
        self._timeout = timeout

    def __enter__(self) -> MatchClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def check(self, queries: Sequence[Query]) -> list[Verdict]:
        if len(queries) <= MAX_QUERIES_PER_REQUEST:
            response = self._stub.Check(_request(queries), timeout=self._timeout)
            return _verdicts(queries, response)
        return list(self.check_stream(queries))

    def check_stream(
        self, queries: Iterable[Query], batch_size: int = MAX_QUERIES_PER_REQUEST
    ) -> Iterator[Verdict]:
        """Verdicts for a (possibly huge, lazily read) sequence of queries, in order."""
        sent: list[list[Query]] = []

        def requests() -> Iterator[match_pb2.CheckRequest]:
            it = iter(queries)
            while batch := list(itertools.islice(it, batch_size)):
                sent.append(batch)
                yield _request(batch)

        # No overall deadline: a stream may carry millions of hashes.
        for i, response in enumerate(self._stub.CheckStream(requests())):
            yield from _verdicts(sent[i], response)
            sent[i] = []


def _request(queries: Iterable[Query]) -> match_pb2.CheckRequest:
    return match_pb2.CheckRequest(queries=[query(signal, h) for signal, h in queries])


def _verdicts(queries: Sequence[Query], response: match_pb2.CheckResponse) -> list[Verdict]:
    if len(response.results) != len(queries):
        raise RuntimeError(
            f"server answered {len(response.results)} results for {len(queries)} queries"
        )
    return [
        Verdict(
            matched=result.matched,
            matches=tuple(Match(signal, m.list, m.match_id, m.distance) for m in result.matches),
        )
        for (signal, _), result in zip(queries, response.results, strict=True)
    ]
