"""Experiment behind the planner's cost constants (PROBE_COST, CANDIDATE_COST,
FINGERPRINT_CANDIDATE_COST, INLINE_CANDIDATE_COST in indexer/mih.py): the plan it
picks, timed beside the chunkings on either side of it.

    .venv/bin/python load_tests/experiments/plan_costs.py --n 30K,100K,300K,1M,3M --bits 256

One thread, misses; the pick should be the fastest or close to it.
"""

from __future__ import annotations

import argparse
from typing import Any

import batches  # noqa: F401  (puts load_tests/ on the path)
from engine_benchmark import print_head, print_row, single_thread_rate
from synthetic import SIGNAL_FOR_BITS, dataset, parse_n, queries


def timed_plans(n: int, bits: int, neighbours: int, count: int) -> list[dict[str, Any]]:
    """The planner's pick and `neighbours` chunkings on either side, each timed."""
    from hashmatch.signals import get_signal
    from indexer.mih import build_tables, plans
    from service.mih_engine import MihEngine

    threshold = get_signal(SIGNAL_FOR_BITS[bits]).threshold
    entries = dataset(n, bits)
    qs = queries(entries, count)["miss"]
    costed = plans(bits, threshold, n)  # in order of chunk count asked for
    pick = min(range(len(costed)), key=lambda i: costed[i][0])
    rows = []
    for cost, plan in costed[max(0, pick - neighbours) : pick + neighbours + 1]:
        engine = MihEngine(entries, build_tables(entries, plan))
        rows.append(
            {
                "chunks": len(plan.chunks),
                "bits": sorted({c.length for c in plan.chunks}),
                "probes": plan.probes(),
                "candidates": plan.candidates(n),
                "cost": cost,
                "picked": plan is costed[pick][1],
                "us": 1e6 / single_thread_rate(engine, qs, threshold),
            }
        )
        del engine
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", default="30K,100K,300K,1M,3M", help="list sizes")
    parser.add_argument("--bits", default="256", help="256 (PDQ) and/or 64 (pHash)")
    parser.add_argument("--neighbours", type=int, default=2, help="chunkings each side")
    parser.add_argument("--queries", type=int, default=3000)
    args = parser.parse_args()
    print("\nThe planner's pick beside other chunkings, misses, one thread:\n")
    print_head("list", "hash", "chunks", "probes", "candidates", "model cost", "µs per query")
    for n in (parse_n(x) for x in args.n.split(",")):
        for bits in (int(b) for b in args.bits.split(",")):
            for r in timed_plans(n, bits, args.neighbours, args.queries):
                mark = " (picked)" if r["picked"] else ""
                shortest, longest = r["bits"][0], r["bits"][-1]
                lengths = f"{shortest}" if shortest == longest else f"{shortest}-{longest}"
                print_row(
                    f"{n:,}",
                    f"{bits}-bit",
                    f"{r['chunks']} of {lengths} bits{mark}",
                    f"{r['probes']:,}",
                    f"{r['candidates']:,.0f}",
                    f"{r['cost']:,.0f}",
                    f"{r['us']:.1f}",
                )


if __name__ == "__main__":
    main()
