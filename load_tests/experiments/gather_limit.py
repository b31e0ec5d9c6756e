"""Experiment behind GATHER (service/batcher.py): two 1,000-hash PDQ batches, the second
sent 3 ms after the first, through batchers whose workers gather at most GATHER queries
a run and at most 4,096, in turns.

    .venv/bin/python load_tests/experiments/gather_limit.py --n 1M

With a large limit one worker takes most of the first batch and the second waits
behind it; with GATHER, each request is cut into pieces that run on their own.
"""

from __future__ import annotations

import argparse
import threading
import time
from functools import partial
from typing import Any

import numpy as np
from batches import served_batches, timed
from engine_benchmark import print_head, print_row
from synthetic import parse_n

LARGE = 4096
SECOND_AFTER_S = 0.003


def _send_after(batcher: Any, batch: Any, after: float, times: dict[str, float], name: str) -> None:
    time.sleep(after)
    times[name] = timed(partial(batcher.check, batch))


def overlapping(n: int, rounds: int) -> list[dict[str, Any]]:
    from service.batcher import GATHER, Batcher

    matcher, batches = served_batches(n)
    batchers = {g: Batcher(lambda: matcher, workers=2, gather=g) for g in (GATHER, LARGE)}
    took: dict[int, list[tuple[float, float]]] = {g: [] for g in batchers}
    for i in range(-2, rounds):  # two rounds of warm-up
        for gather, batcher in batchers.items():
            times: dict[str, float] = {}
            pair = [
                threading.Thread(
                    target=_send_after, args=(batcher, batches[i % 8], 0.0, times, "first")
                ),
                threading.Thread(
                    target=_send_after,
                    args=(batcher, batches[(i + 1) % 8], SECOND_AFTER_S, times, "second"),
                ),
            ]
            for t in pair:
                t.start()
            for t in pair:
                t.join()
            if i >= 0:
                took[gather].append((times["first"], times["second"]))
            time.sleep(0.005)
    for batcher in batchers.values():
        batcher.close()
    rows = []
    for gather, pairs in took.items():
        ms = np.array(pairs) * 1000
        rows.append(
            {
                "gather": gather,
                "first_p50": float(np.median(ms[:, 0])),
                "first_p90": float(np.percentile(ms[:, 0], 90)),
                "second_p50": float(np.median(ms[:, 1])),
                "second_p90": float(np.percentile(ms[:, 1], 90)),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", default="1M", help="list size, e.g. 1M")
    parser.add_argument("--rounds", type=int, default=40, help="pairs timed per limit")
    args = parser.parse_args()
    n = parse_n(args.n)
    print(f"\n{n:,} PDQ hashes, two 1,000-hash batches 3 ms apart, two workers:\n")
    print_head(
        "queries a run gathers, at most",
        "first p50 ms",
        "first p90 ms",
        "second p50 ms",
        "second p90 ms",
    )
    for r in overlapping(n, args.rounds):
        print_row(
            f"{r['gather']:,}",
            *(f"{r[k]:.2f}" for k in ("first_p50", "first_p90", "second_p50", "second_p90")),
        )


if __name__ == "__main__":
    main()
