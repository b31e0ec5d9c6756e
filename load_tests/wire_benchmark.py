"""Wire benchmark: what a 1,000-hash Check costs outside the engine, by request form.

    .venv/bin/python load_tests/wire_benchmark.py

For a batch of N PDQ hashes sent as N Query messages and as one packed HashBatch:
the caller building the request (packed as the SDK's check_request packs it), the
server decoding and parsing it (protobuf decode plus service.queries.parse_request,
all under the GIL), and the server starting the answer (one empty Result per
query). Best of several rounds, one thread. The engine's own time is
engine_benchmark.py's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from hashmatch.v1 import match_pb2
from hashmatch.wire import check_request, query
from service.queries import parse_request
from service.server import EMPTY_RESULT

ROUNDS = 7


def best_ms(work: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(repeat):
            work()
        best = min(best, (time.perf_counter() - started) / repeat)
    return best * 1000


def _decode_and_parse(wire: bytes) -> object:
    return parse_request(match_pb2.CheckRequest.FromString(wire))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="hashes in the batch")
    parser.add_argument("--repeat", type=int, default=200, help="calls per round")
    args = parser.parse_args()
    rows = [bytes(r) for r in np.random.default_rng(1).integers(0, 256, (args.n, 32), np.uint8)]

    def as_queries() -> match_pb2.CheckRequest:
        return match_pb2.CheckRequest(queries=[query("pdq", h) for h in rows])

    pairs = [("pdq", h) for h in rows]

    def packed() -> match_pb2.CheckRequest:
        return check_request(pairs)

    print(f"\n{args.n:,} PDQ hashes in one Check, ms (best of {ROUNDS} rounds, one thread):\n")
    print("| request form | bytes | caller builds | server decodes and parses |")
    print("|---|---|---|---|")
    parsed = []
    for name, build in (("Query messages", as_queries), ("packed HashBatch", packed)):
        wire = build().SerializeToString()
        parsed.append(parse_request(match_pb2.CheckRequest.FromString(wire)))
        built = best_ms(build, args.repeat)
        decoded = best_ms(partial(_decode_and_parse, wire), args.repeat)
        print(f"| {name} | {len(wire):,} | {built:.3f} | {decoded:.3f} |")
    assert parsed[0] == parsed[1], "both forms must parse to the same queries"

    def added() -> match_pb2.CheckResponse:
        response = match_pb2.CheckResponse(snapshot_version=1)
        for _ in range(args.n):
            response.results.add()
        return response

    def decoded_empty() -> match_pb2.CheckResponse:
        response = match_pb2.CheckResponse(snapshot_version=1)
        response.MergeFromString(EMPTY_RESULT * args.n)
        return response

    assert added() == decoded_empty()
    print(f"\n{args.n:,} empty Results, the start of the answer, ms:\n")
    print("| built by | ms |")
    print("|---|---|")
    for name, work in (("results.add() each", added), ("decoding their bytes", decoded_empty)):
        print(f"| {name} | {best_ms(work, args.repeat):.3f} |")


if __name__ == "__main__":
    main()
