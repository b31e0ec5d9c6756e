"""Experiment behind `serve --pin-workers` (the default; service/batcher.py): a 1,000-hash
PDQ batch through the batcher, its two workers left to the scheduler or pinned to a CPU
each, timed after the cores idled.

    .venv/bin/python load_tests/experiments/worker_pinning.py --n 1M

A virtual machine's idle vCPUs may halt and be descheduled, and the woken workers may
share one. Two controls after the same idle time tell the clock from the caches: a loop
of arithmetic, and a chain of dependent reads within 2 MB (a core's L2 holds it).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from batches import served_batches, timed
from engine_benchmark import print_head, print_row
from synthetic import parse_n

GAPS_MS = (0, 5, 20, 50, 100)


def control_kernels() -> tuple[Callable[[int], int], Callable[[Any, int], int]]:
    """`arithmetic(steps)` needs no memory; `chase(chain, steps)` follows dependent reads."""
    import numba as nb

    @nb.njit(nogil=True)
    def arithmetic(steps: int) -> int:
        x = 1
        for _ in range(steps):
            x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFF
        return x

    @nb.njit(nogil=True)
    def chase(chain: Any, steps: int) -> int:
        at = 0
        for _ in range(steps):
            at = chain[at]
        return int(at)

    return arithmetic, chase


def after_idle(n: int, gaps_ms: tuple[int, ...], rounds: int) -> list[dict[str, Any]]:
    from service.batcher import Batcher

    arithmetic, chase = control_kernels()
    matcher, batches = served_batches(n)
    batchers = {pin: Batcher(lambda: matcher, workers=2, pin=pin) for pin in (False, True)}
    for batcher in batchers.values():
        for batch in batches:
            batcher.check(batch)
    order = np.random.default_rng(2).permutation(2**20 // 8)
    chain = np.empty(len(order), np.int64)
    chain[order] = np.roll(order, 1)  # one cycle through every slot, in random order
    # Each is timed after idling from a run of itself, so what it finds in cache is its own.
    works: dict[str, Callable[[int], object]] = {
        "batch": lambda i: batchers[False].check(batches[i % len(batches)]),
        "pinned": lambda i: batchers[True].check(batches[i % len(batches)]),
        "arithmetic": lambda i: arithmetic(2_000_000),
        "chase": lambda i: chase(chain, 50_000),
    }
    rows = []
    for gap_ms in gaps_ms:
        ms = {}
        for name, work in works.items():
            work(0)
            took = []
            for i in range(rounds):
                time.sleep(gap_ms / 1000)
                took.append(timed(partial(work, i)))
            ms[name] = np.array(took) * 1000
        rows.append(
            {
                "gap_ms": gap_ms,
                "p50": float(np.median(ms["batch"])),
                "p90": float(np.percentile(ms["batch"], 90)),
                "pinned p50": float(np.median(ms["pinned"])),
                "pinned p90": float(np.percentile(ms["pinned"], 90)),
                "arithmetic": float(np.median(ms["arithmetic"])),
                "chase": float(np.median(ms["chase"])),
            }
        )
    for batcher in batchers.values():
        batcher.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", default="1M", help="list size, e.g. 1M")
    parser.add_argument(
        "--gaps-ms", default=",".join(map(str, GAPS_MS)), help="idle times before each"
    )
    parser.add_argument("--rounds", type=int, default=40, help="timings per work and gap")
    args = parser.parse_args()
    n = parse_n(args.n)
    gaps = tuple(int(g) for g in args.gaps_ms.split(","))
    print(f"\n{n:,} PDQ hashes, one 1,000-hash batch after the cores idled, two workers")
    print("left to the scheduler or pinned to a CPU each; controls after the same idle")
    print("time, one thread: 2M steps of arithmetic, and 50,000 dependent reads within 2 MB:\n")
    print_head(
        "idle before each",
        "batch p50 ms",
        "batch p90 ms",
        "pinned p50 ms",
        "pinned p90 ms",
        "arithmetic p50 ms",
        "2 MB reads p50 ms",
    )
    keys = ("p50", "p90", "pinned p50", "pinned p90", "arithmetic", "chase")
    for r in after_idle(n, gaps, args.rounds):
        print_row(f"{r['gap_ms']} ms", *(f"{r[k]:.2f}" for k in keys))


if __name__ == "__main__":
    main()
