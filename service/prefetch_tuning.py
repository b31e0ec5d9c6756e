"""Choosing the kernel's prefetch distance on the host that serves, when a snapshot loads.

The best distance is the machine's, not the code's: at 1M PDQ, prefetching every bucket of
a query at once (512 ahead) was 20% faster than 128 on one AMD EPYC host and 2.3x slower
than 12 ahead on another (Zen 3 without AVX-512: 44 against 19 us a query,
load_tests/experiments/prefetch_distance.py). A fixed constant is wrong somewhere, so the
service times the candidates on its own tables with random hashes (misses, like most
traffic; never list contents) and keeps the fastest.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from service.mih_engine import MihEngine

log = logging.getLogger(__name__)

DISTANCES = (8, 16, 32, 64, 128, 256, 512)
# Below this many entries the tables sit in cache and the distance hardly matters.
TUNED_MIN_ENTRIES = 100_000
ROUNDS = 5
QUERIES_PER_SEARCH = 100


def tune_prefetch(
    engine: MihEngine,
    bits: int,
    distances: tuple[int, ...] = DISTANCES,
    rounds: int = ROUNDS,
    per_search: int = QUERIES_PER_SEARCH,
    seed: int = 0,
) -> dict[int, float]:
    """Set `engine.prefetch` to the fastest of `distances`; returns µs per query by
    distance. The distances take turns within each round, in alternating order, so the
    host's drift weighs on all alike, and every search gets queries of its own, so none
    finds buckets an earlier one left in cache; medians of the rounds."""
    rng = np.random.default_rng(seed)
    fresh = iter(
        rng.integers(0, 256, (rounds * len(distances) + 1, per_search, bits // 8), np.uint8)
    )
    limit = engine.max_distance
    engine.search(next(fresh), limit)
    times: dict[int, list[float]] = {d: [] for d in distances}
    for r in range(rounds):
        for distance in distances[:: 1 if r % 2 else -1]:
            engine.prefetch = distance
            batch = next(fresh)
            start = time.perf_counter()
            engine.search(batch, limit)
            times[distance].append((time.perf_counter() - start) / per_search)
    per_query = {d: 1e6 * float(np.median(t)) for d, t in times.items()}
    engine.prefetch = min(per_query, key=per_query.__getitem__)
    return per_query


def tuned(engine: MihEngine, signal: str, bits: int, entries: int) -> MihEngine:
    """The engine with its prefetch distance chosen here, for lists large enough to care."""
    if entries >= TUNED_MIN_ENTRIES:
        per_query = tune_prefetch(engine, bits)
        log.info(
            "%s: prefetching %d ahead (µs per query by distance: %s)",
            signal,
            engine.prefetch,
            ", ".join(f"{d} {us:.1f}" for d, us in per_query.items()),
        )
    return engine
