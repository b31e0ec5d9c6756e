"""What one query may cost the server: bounded however many entries lie near it, over
real gRPC against a real server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from hashmatch.serve_process import ServerProcess, running_server
from hashmatch.signals import get_signal
from hashmatch.v1 import match_pb2, match_pb2_grpc
from hashmatch.wire import MAX_MATCHES_PER_RESULT, query
from indexer.mih import MIH_MIN_ENTRIES, build_tables, plan_for
from indexer.store import NewEntry, open_store
from service.mih_engine import MihEngine

PDQ = get_signal("pdq")
FLOOD = 20_000
CENTRE = bytes(np.random.default_rng(22).integers(0, 256, 32, dtype=np.uint8))


def flipped(centre: bytes, n: int, seed: int, most: int = 8) -> tuple[list[bytes], list[int]]:
    """`n` distinct hashes 1 to `most` bits from `centre`, and their distances."""
    rng = np.random.default_rng(seed)
    bits = np.unpackbits(np.frombuffer(centre, np.uint8))
    found: dict[bytes, int] = {}
    while len(found) < n:
        flips = int(rng.integers(1, most + 1))
        b = bits.copy()
        b[rng.choice(bits.size, flips, replace=False)] ^= 1
        found.setdefault(np.packbits(b).tobytes(), flips)
    return list(found), list(found.values())


@pytest.fixture(scope="module")
def flooded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    """A server whose list 'flood' holds the centre and FLOOD near-identical entries around
    it (written straight to the store: the API refuses such a list), and whose list
    'other' holds one entry 10 bits from the centre."""
    work = tmp_path_factory.mktemp("flood")
    url = f"sqlite:///{work / 'store.db'}"
    store = open_store(url)
    hashes, _ = flipped(CENTRE, FLOOD, seed=1)
    store.add_entries("flood", [NewEntry("pdq", CENTRE)] + [NewEntry("pdq", h) for h in hashes])
    far = np.unpackbits(np.frombuffer(CENTRE, np.uint8))
    far[:10] ^= 1
    store.add_entries("other", [NewEntry("pdq", np.packbits(far).tobytes())])
    # Issued before the server starts, so that it knows them from the first call.
    keys = {
        "plain": store.create_key("t", ["check"])[1],
        "other": store.create_key("t", ["check"], ["other"])[1],
        "match-only": store.create_key("t", ["check"], match_only=True)[1],
    }
    store.close()
    with running_server(work / "index", "--store", url, "--poll-interval", "0.1") as proc:
        yield proc, keys


def metadata(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


def test_a_flood_of_near_identical_entries_costs_a_check_little_and_says_it_was_capped(
    flooded: tuple[ServerProcess, dict[str, str]],
) -> None:
    proc, keys = flooded
    meta = metadata(keys["plain"])
    request = match_pb2.CheckRequest(queries=[query("pdq", CENTRE)])
    with grpc.insecure_channel(proc.address) as ch:
        stub = match_pb2_grpc.MatchServiceStub(ch)
        stub.Check(request, metadata=meta, timeout=60)  # warm up the engine's compiled code
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            responses = list(
                pool.map(lambda _: stub.Check(request, metadata=meta, timeout=60), range(64))
            )
        took = time.monotonic() - started
    assert took < 5.0, f"64 checks of a flooded point took {took:.1f}s"
    for response in responses:
        [result] = response.results
        assert result.matched and result.capped
        assert len(result.matches) == MAX_MATCHES_PER_RESULT
        distances = [m.distance for m in result.matches]
        assert distances == sorted(distances) and distances[0] == 0
        # The closest: the centre, then every 1-bit neighbour before any 2-bit one.
        assert distances[1:] == [1] * (MAX_MATCHES_PER_RESULT - 1)


def test_a_flood_on_one_list_hides_no_match_of_another_from_a_key_scoped_to_it(
    flooded: tuple[ServerProcess, dict[str, str]],
) -> None:
    proc, keys = flooded
    meta = metadata(keys["other"])
    with grpc.insecure_channel(proc.address) as ch:
        stub = match_pb2_grpc.MatchServiceStub(ch)
        request = match_pb2.CheckRequest(queries=[query("pdq", CENTRE)])
        [result] = stub.Check(request, metadata=meta, timeout=60).results
    assert result.matched and not result.capped
    assert [(m.list, m.distance) for m in result.matches] == [("other", 10)]


def test_a_match_only_key_learns_no_distance_and_may_not_tighten_the_threshold(
    flooded: tuple[ServerProcess, dict[str, str]],
) -> None:
    proc, keys = flooded
    plain, blind = metadata(keys["plain"]), metadata(keys["match-only"])
    request = match_pb2.CheckRequest(queries=[query("pdq", CENTRE)])
    with grpc.insecure_channel(proc.address) as ch:
        stub = match_pb2_grpc.MatchServiceStub(ch)
        seen = stub.Check(request, metadata=plain, timeout=60).results[0].matches[0]
        assert seen.HasField("distance") and seen.distance == 0
        [result] = stub.Check(request, metadata=blind, timeout=60).results
        assert result.matched
        assert not any(m.HasField("distance") for m in result.matches)
        # Matching at 31, then 30, ... would tell the distance all the same.
        tightened = match_pb2.CheckRequest(queries=[query("pdq", CENTRE, max_distance=5)])
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(tightened, metadata=blind, timeout=60)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "max_distance" in (info.value.details() or "")
        batch = match_pb2.CheckRequest(
            batch=match_pb2.HashBatch(signal="pdq", hashes=CENTRE, max_distance=5)
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(batch, metadata=blind, timeout=60)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_engine_finds_each_entry_of_a_flood_once_and_exactly() -> None:
    hashes, distances = flipped(CENTRE, max(MIH_MIN_ENTRIES, 5_000), seed=3)
    table = np.frombuffer(b"".join(hashes), np.uint8).reshape(len(hashes), 32)
    engine = MihEngine(table, build_tables(table, plan_for(256, PDQ.threshold, len(hashes))))
    queries = np.frombuffer(CENTRE * 2, np.uint8).reshape(2, 32)
    hits = engine.search(queries, PDQ.threshold)
    for q in range(2):
        rows = hits.rows[hits.lims[q] : hits.lims[q + 1]]
        assert sorted(rows.tolist()) == list(range(len(hashes)))
        found = hits.distances[hits.lims[q] : hits.lims[q + 1]]
        assert found.tolist() == [distances[r] for r in rows.tolist()]
