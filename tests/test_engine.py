"""The engines return exactly the entries brute force returns, with their distances."""

from __future__ import annotations

import faiss
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.mih import FINGERPRINT_LANES, MAX_BOUNDS_SHIFT, Chunk, Plan, build_tables, plan_for
from service.engine import FaissRangeEngine, Hits, SortedExactEngine
from service.mih_engine import MihEngine
from service.prefetch_tuning import DISTANCES, tune_prefetch


def brute_force(
    entries: npt.NDArray[np.uint8], queries: npt.NDArray[np.uint8], radius: int
) -> list[set[tuple[int, int]]]:
    found = []
    for q in queries:
        d = np.unpackbits(entries ^ q, axis=1).sum(axis=1)
        found.append({(int(r), int(d[r])) for r in np.flatnonzero(d <= radius)})
    return found


def as_sets(hits: Hits, n: int) -> list[set[tuple[int, int]]]:
    return [
        {
            (int(r), int(d))
            for r, d in zip(
                hits.rows[hits.lims[i] : hits.lims[i + 1]],
                hits.distances[hits.lims[i] : hits.lims[i + 1]],
                strict=True,
            )
        }
        for i in range(n)
    ]


def flip(row: npt.NDArray[np.uint8], bits: list[int]) -> npt.NDArray[np.uint8]:
    out = np.unpackbits(row)
    out[bits] ^= 1
    return np.packbits(out)


@st.composite
def search_case(draw: st.DrawFn) -> tuple[int, npt.NDArray[np.uint8], npt.NDArray[np.uint8], int]:
    nbits = draw(st.sampled_from([64, 256]))
    radius = draw(st.sampled_from([2, 10, 31] if nbits == 256 else [2, 4, 10]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 300))
    entries = rng.integers(0, 256, size=(n, nbits // 8), dtype=np.uint8)
    # Near-duplicates in the list, so one query can hit several entries.
    for _ in range(draw(st.integers(0, 5))):
        src = entries[int(rng.integers(n))]
        k = int(rng.integers(0, radius + 2))
        entries = np.vstack([entries, flip(src, list(rng.choice(nbits, k, replace=False)))])
    queries = []
    for _ in range(draw(st.integers(1, 40))):
        src = entries[int(rng.integers(len(entries)))]
        # Exactly at the threshold, one bit beyond, anything in between, or far away.
        k = draw(st.sampled_from([0, radius, radius + 1, int(rng.integers(0, nbits // 2))]))
        queries.append(flip(src, list(rng.choice(nbits, k, replace=False))))
    return nbits, entries, np.array(queries, dtype=np.uint8), radius


@settings(max_examples=150, deadline=None)
@given(search_case())
def test_faiss_range_engine_equals_brute_force(
    case: tuple[int, npt.NDArray[np.uint8], npt.NDArray[np.uint8], int],
) -> None:
    nbits, entries, queries, radius = case
    index = faiss.IndexBinaryFlat(nbits)
    index.add(entries)
    hits = FaissRangeEngine(index).search(queries, radius)
    assert as_sets(hits, len(queries)) == brute_force(entries, queries, radius)


@settings(max_examples=200, deadline=None)
@given(
    search_case(),
    st.integers(0, 3),
    st.sampled_from([None, 0, 1, 2, 3, 4]),
    st.sampled_from((0, 1, *DISTANCES)),
)
def test_multi_index_engine_equals_brute_force(
    case: tuple[int, npt.NDArray[np.uint8], npt.NDArray[np.uint8], int],
    tighten: int,
    fingerprint_lanes: int | None,
    prefetch: int,
) -> None:
    """Every bucket layout: the planner's choice, ids only, one to four fingerprint lanes
    (64-bit hashes take none or both: their chunks may touch both lanes); and every
    prefetch distance the service may choose on its host."""
    nbits, entries, queries, radius = case
    lanes = fingerprint_lanes
    if nbits == 64 and lanes:
        lanes = 2
    plan = plan_for(nbits, radius, len(entries), lanes)
    engine = MihEngine(entries, build_tables(entries, plan))
    engine.prefetch = prefetch
    assert as_sets(engine.search(queries, radius), len(queries)) == brute_force(
        entries, queries, radius
    )
    tighter = max(0, radius - tighten)
    assert as_sets(engine.search(queries, tighter), len(queries)) == brute_force(
        entries, queries, tighter
    )
    # One query a call takes its own path (a unary lookup's): the same answers.
    expected = brute_force(entries, queries, radius)
    for i in range(min(len(queries), 5)):
        assert as_sets(engine.search(queries[i : i + 1], radius), 1) == expected[i : i + 1]


@settings(max_examples=100, deadline=None)
@given(search_case(), st.integers(0, 3))
def test_multi_index_engine_with_crowded_buckets(
    case: tuple[int, npt.NDArray[np.uint8], npt.NDArray[np.uint8], int],
    tighten: int,
) -> None:
    """Chunks of 4 bits, so buckets hold dozens of entries: three-lane fingerprints are
    scanned eight at a time, with hits in every position of a block and at bucket ends."""
    nbits, entries, queries, radius = case
    chunks = tuple(Chunk(4 * i, 4, 0) for i in range(nbits // 4))
    for lanes in {0, nbits // 32, FINGERPRINT_LANES if nbits > 64 else 1}:
        plan = Plan(nbits, nbits // 4 - 1, chunks, lanes)
        engine = MihEngine(entries, build_tables(entries, plan))
        for r in (radius, max(0, radius - tighten)):
            assert as_sets(engine.search(queries, r), len(queries)) == brute_force(
                entries, queries, r
            )


@settings(max_examples=40, deadline=None)
@given(search_case())
def test_multi_index_engine_with_wide_chunk_radii(
    case: tuple[int, npt.NDArray[np.uint8], npt.NDArray[np.uint8], int],
) -> None:
    """Radius 5 per chunk, in every bucket layout."""
    nbits, entries, queries, _ = case
    for lanes in {0, nbits // 32, FINGERPRINT_LANES if nbits > 64 else 1}:
        plan = Plan(nbits, 11, (Chunk(0, 12, 5), Chunk(20, 12, 5)), lanes)
        engine = MihEngine(entries, build_tables(entries, plan))
        found = engine.search(queries, 11)
        assert as_sets(found, len(queries)) == brute_force(entries, queries, 11)


def test_multi_index_engine_reports_every_hit_of_a_crowded_query() -> None:
    """More hits for one query than the kernel's first guess: all are returned."""
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, size=32, dtype=np.uint8)
    entries = np.vstack([flip(base, list(rng.choice(256, 3, replace=False))) for _ in range(500)])
    entries = np.vstack([entries, rng.integers(0, 256, size=(5000, 32), dtype=np.uint8)])
    engine = MihEngine(entries, build_tables(entries, plan_for(256, 31, len(entries))))
    hits = engine.search(base[None, :], 31)
    assert as_sets(hits, 1) == brute_force(entries, base[None, :], 31)
    assert len(hits.rows) >= 500


def test_crowded_buckets_narrow_the_bound_blocks_and_stay_exact() -> None:
    """Thousands of entries sharing chunk values overflow a byte of relative bucket start:
    those chunks fall back to smaller blocks (down to one value a block), and search
    still returns exactly what brute force does."""
    rng = np.random.default_rng(11)
    base = rng.integers(0, 256, size=32, dtype=np.uint8)
    crowd = np.vstack([flip(base, list(rng.choice(256, 4, replace=False))) for _ in range(3000)])
    entries = np.vstack([crowd, rng.integers(0, 256, size=(4000, 32), dtype=np.uint8)])
    for lanes in (0, FINGERPRINT_LANES):
        tables = build_tables(entries, plan_for(256, 31, len(entries), lanes))
        assert int(tables.shifts.min()) < MAX_BOUNDS_SHIFT
        engine = MihEngine(entries, tables)
        queries = np.vstack([base, crowd[:3], entries[-3:], flip(base, list(range(40)))])
        assert as_sets(engine.search(queries, 31), len(queries)) == brute_force(
            entries, queries, 31
        )


def test_chunks_shorter_than_a_bound_block_keep_later_chunks_in_place() -> None:
    """Small lists' plans have chunks of fewer values than a block of bucket bounds: every
    chunk's bases still sit where the kernel looks (an off-by-one here read the next
    chunk's bases, and past the end of the last)."""
    rng = np.random.default_rng(5)
    entries = rng.integers(0, 256, size=(40, 8), dtype=np.uint8)
    chunks = (Chunk(0, 3, 0), Chunk(3, 5, 1), Chunk(8, 4, 0), Chunk(12, 9, 1))
    queries = np.vstack([entries[:5], flip(entries[0], [1, 5, 30]), flip(entries[1], [2, 9])])
    for lanes in (0, 1, 2):
        tables = build_tables(entries, Plan(64, 4, chunks, lanes))
        base_at, _ = tables.bound_positions()
        last = chunks[-1].length
        assert len(tables.bases) == base_at[-1] + ((1 << last) >> int(tables.shifts[-1])) + 1
        engine = MihEngine(entries, tables)
        assert as_sets(engine.search(queries, 4), len(queries)) == brute_force(entries, queries, 4)


def test_a_plan_refuses_fingerprints_its_chunks_leave_no_room_for() -> None:
    """A partial fingerprint must be disjoint from every chunk for its bound to hold."""
    with pytest.raises(ValueError, match="chunk at bit 28"):
        Plan(64, 4, (Chunk(0, 8, 0), Chunk(28, 8, 0)), 1)
    assert Plan(64, 4, (Chunk(28, 8, 0),), 2).exact_in_bucket


def test_planner_keeps_fingerprints_within_the_memory_budget() -> None:
    """A 1M PDQ list gets fingerprints; a 10M one (1.9 GB of them) does not; pHash buckets
    always hold the whole code."""
    assert plan_for(256, 31, 1_000_000).fingerprint_lanes == FINGERPRINT_LANES
    assert plan_for(256, 31, 10_000_000).fingerprint_lanes == 0
    assert plan_for(64, 7, 10_000_000).exact_in_bucket


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_sorted_exact_engine_equals_brute_force(data: st.DataObject) -> None:
    nbytes = data.draw(st.sampled_from([16, 32]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    # Few distinct byte values: many zero bytes and many duplicate entries.
    entries = rng.integers(
        0,
        data.draw(st.integers(1, 3)),
        size=(data.draw(st.integers(1, 200)), nbytes),
        dtype=np.uint8,
    )
    entries = entries[np.argsort(entries.view(f"S{nbytes}").ravel(), kind="stable")]
    queries = np.vstack(
        [
            entries[rng.integers(0, len(entries), 10)],
            rng.integers(0, 3, size=(10, nbytes), dtype=np.uint8),
        ]
    )
    hits = SortedExactEngine(entries).search(queries, 0)
    assert as_sets(hits, len(queries)) == brute_force(entries, queries, 0)


def test_empty_index_finds_nothing() -> None:
    hits = FaissRangeEngine(faiss.IndexBinaryFlat(256)).search(np.zeros((3, 32), np.uint8), 31)
    assert hits.lims.tolist() == [0, 0, 0, 0] and len(hits.rows) == 0


def test_prefetch_tuning_keeps_the_fastest_distance_and_the_answers() -> None:
    rng = np.random.default_rng(5)
    entries = rng.integers(0, 256, size=(3000, 32), dtype=np.uint8)
    engine = MihEngine(entries, build_tables(entries, plan_for(256, 31, len(entries))))
    per_query = tune_prefetch(engine, 256, rounds=3, per_search=20)
    assert list(per_query) == list(DISTANCES)
    assert all(us > 0 for us in per_query.values())
    assert engine.prefetch == min(per_query, key=per_query.__getitem__)
    queries = np.vstack([flip(entries[i], list(range(i % 33))) for i in range(40)])
    assert as_sets(engine.search(queries, 31), 40) == brute_force(entries, queries, 31)
