"""Experiment behind PREFETCH and PREFETCH_FINGERPRINTED (service/mih_engine.py) and
the per-host tuning in service/prefetch_tuning.py: the kernel's µs per query by
prefetch distance, warm and after the core idled 50 ms.

    .venv/bin/python load_tests/experiments/prefetch_distance.py --n 1M
    .venv/bin/python load_tests/experiments/prefetch_distance.py --n 3M --bits 256

The distances take turns within each round (in alternating order), so that the
host's speed drifting during the run weighs on all of them alike; medians of the
rounds. Every search has queries of its own, so none finds buckets an earlier one
left in cache. One thread, misses.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np
from batches import timed
from engine_benchmark import print_head, print_row
from synthetic import SIGNAL_FOR_BITS, dataset, parse_n, queries

DISTANCES = (0, 12, 32, 64, 128, 256, 512)
PER_SEARCH = (500, 200)  # queries searched warm, then after the core idled
IDLE_S = 0.05


def per_query_us(n: int, bits: int, rounds: int) -> dict[str, float]:
    from hashmatch.signals import get_signal
    from indexer.mih import build_tables, plan_for
    from service.mih_engine import MihEngine

    threshold = get_signal(SIGNAL_FOR_BITS[bits]).threshold
    entries = dataset(n, bits)
    engine = MihEngine(entries, build_tables(entries, plan_for(bits, threshold, n)))
    fresh = iter(
        queries(entries, rounds * len(DISTANCES) * sum(PER_SEARCH))["miss"].reshape(
            -1, sum(PER_SEARCH), entries.shape[1]
        )
    )
    engine.search(entries[:10], threshold)
    warm: dict[int, list[float]] = {d: [] for d in DISTANCES}
    cold: dict[int, list[float]] = {d: [] for d in DISTANCES}
    for r in range(rounds):
        for distance in DISTANCES[:: 1 if r % 2 else -1]:
            engine.prefetch = distance
            qs = next(fresh)
            batch, after_idle = qs[: PER_SEARCH[0]], qs[PER_SEARCH[0] :]
            warm[distance].append(timed(partial(engine.search, batch, threshold)) / len(batch))
            time.sleep(IDLE_S)
            cold[distance].append(
                timed(partial(engine.search, after_idle, threshold)) / len(after_idle)
            )
    row = {}
    for distance in DISTANCES:
        row[str(distance)] = 1e6 * float(np.median(warm[distance]))
        row[f"cold {distance}"] = 1e6 * float(np.median(cold[distance]))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", default="1M", help="list size, e.g. 1M")
    parser.add_argument("--bits", default="256,64", help="256 (PDQ) and/or 64 (pHash)")
    parser.add_argument("--rounds", type=int, default=16)
    args = parser.parse_args()
    n = parse_n(args.n)
    print(f"\n{n:,} hashes, misses, one thread, by prefetch distance: µs per query of")
    print(f"{PER_SEARCH[0]} searched back to back, and of {PER_SEARCH[1]} searched after the")
    print(f"core idled {IDLE_S * 1000:g} ms (medians of {args.rounds} rounds, the distances")
    print("taking turns in each):\n")
    print_head("hash", *map(str, DISTANCES))
    for bits in (int(b) for b in args.bits.split(",")):
        row = per_query_us(n, bits, args.rounds)
        for label, key in (("", "{}"), (", after idle", "cold {}")):
            print_row(f"{bits}-bit{label}", *(f"{row[key.format(d)]:.1f}" for d in DISTANCES))


if __name__ == "__main__":
    main()
