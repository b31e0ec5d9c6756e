"""What client and server agree on about requests, beyond the .proto itself."""

from __future__ import annotations

from hashmatch.v1 import match_pb2

MAX_QUERIES_PER_REQUEST = 10_000


def query(signal: str, hash_bytes: bytes, max_distance: int | None = None) -> match_pb2.Query:
    q = match_pb2.Query(signal=signal, hash=hash_bytes)
    if max_distance is not None:
        q.max_distance = max_distance
    return q
