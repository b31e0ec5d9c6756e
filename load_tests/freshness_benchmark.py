"""Freshness benchmark: how soon a running server matches a new entry and stops matching a
removed one, while it serves a steady check load.

    .venv/bin/pip install -q -e '.[bench]'
    .venv/bin/python load_tests/freshness_benchmark.py --n 1M

Fills a SQLite store with N seeded synthetic PDQ hashes, builds a snapshot (timed:
a full rebuild is what a system without deltas pays for every change), starts
`hashmatch serve --store` and, from separate processes, an open-loop load of
100-hash Check batches. Then, trial by trial:

- add (store): an entry written to the store by another process (as `hashmatch
  import` would), from its commit until a Check matches it;
- remove (store): the same entry removed, until a Check no longer matches it;
- SubmitCase / Withdraw / RemoveEntries (gRPC): the RPC's own latency; each
  returns only once in effect, which the next Check confirms.

Targets: new entries matched within 5 s, removals within 1 s. Writes
load_tests/results/freshness_<N>_<backend>.md. With --postgres URL the store is
PostgreSQL instead of SQLite.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from grpc_load import LoadClients
from synthetic import dataset, parse_n

RESULTS = Path(__file__).resolve().parent / "results"


@contextmanager
def store_url(postgres: str | None, tmp: str) -> Iterator[str]:
    if postgres is None:
        yield f"sqlite:///{tmp}/store.db"
        return
    from indexer.store.postgresql import temporary_schema

    with temporary_schema(postgres, "hm_fresh") as url:
        yield url


def fill_store(url: str, n: int) -> float:
    from hashmatch.list_formats import NewEntry
    from indexer.store import open_store

    started = time.perf_counter()
    store = open_store(url)
    entries = dataset(n, 256)
    store.add_entries("synthetic", (NewEntry("pdq", bytes(h)) for h in entries))
    store.close()
    return time.perf_counter() - started


def full_build(url: str, root: Path) -> float:
    from indexer.build import build_snapshot
    from indexer.store import open_store

    started = time.perf_counter()
    store = open_store(url)
    build_snapshot(store, root)
    store.close()
    return time.perf_counter() - started


def until(condition: Callable[[], bool], limit: float = 30.0) -> float:
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > limit:
            return float("inf")
        time.sleep(0.005)
    return time.perf_counter() - started


def summary(values: list[float]) -> dict[str, float]:
    a = np.array(values) * 1000
    return {"p50": float(np.median(a)), "p95": float(np.percentile(a, 95)), "max": float(a.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=parse_n, default=parse_n("1M"))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--load-rate", type=float, default=80.0, help="100-hash RPCs/s")
    parser.add_argument("--load-procs", type=int, default=2)
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the table")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=None,
        help="Use this PostgreSQL database (in a schema of its own, dropped afterwards) "
        "instead of a SQLite file, e.g. postgresql://postgres@127.0.0.1:5432/test",
    )
    args = parser.parse_args()

    from hashmatch.client import MatchClient
    from hashmatch.demo.serve_process import running_server
    from hashmatch.list_formats import NewEntry
    from hashmatch.submission import SubmissionClient
    from indexer.store import open_store

    rng = np.random.default_rng(99)
    with (
        tempfile.TemporaryDirectory(prefix="hm-fresh-") as tmp,
        store_url(args.postgres, tmp) as url,
    ):
        fill_seconds = fill_store(url, args.n)
        print(f"store filled with {args.n:,} PDQ hashes in {fill_seconds:.1f}s", flush=True)
        rebuild = full_build(url, Path(tmp) / "index")
        print(f"full snapshot rebuild: {rebuild:.1f}s", flush=True)
        with running_server(
            Path(tmp) / "index", "--store", url, "--no-auth", "--log-format", "text"
        ) as server:
            seconds = 10 + 2 * args.trials  # the trials take well under 2 s each
            load = LoadClients(
                "batch100", server.address, seconds, args.load_procs, 8, args.load_rate, seed=50
            )
            load.start()
            time.sleep(3)
            timings: dict[str, list[float]] = {
                "add (store, another process)": [],
                "remove (store, another process)": [],
                "SubmitCase (gRPC)": [],
                "Withdraw (gRPC)": [],
                "RemoveEntries (gRPC)": [],
            }
            store = open_store(url)
            with MatchClient(server.address) as check, SubmissionClient(server.address) as sub:
                sub.create_list("hotline")

                def hit(h: bytes) -> bool:
                    return check.check([("pdq", h)])[0].matched

                def listed(h: bytes) -> Callable[[], bool]:
                    return lambda: hit(h)

                def unlisted(h: bytes) -> Callable[[], bool]:
                    return lambda: not hit(h)

                for _ in range(args.trials):
                    h = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
                    store.add_entries("fresh", [NewEntry("pdq", h)])
                    timings["add (store, another process)"].append(until(listed(h)))
                    store.remove_entries("fresh", [("pdq", h)])
                    timings["remove (store, another process)"].append(until(unlisted(h)))
                    started = time.perf_counter()
                    receipt = sub.submit_case([NewEntry("pdq", h, 100)])
                    timings["SubmitCase (gRPC)"].append(time.perf_counter() - started)
                    assert hit(h), "SubmitCase returned before the case matched"
                    started = time.perf_counter()
                    sub.withdraw(receipt.case_id, receipt.withdrawal_secret)
                    timings["Withdraw (gRPC)"].append(time.perf_counter() - started)
                    assert not hit(h), "Withdraw returned before the case stopped matching"
                    sub.upload("hotline", [NewEntry("pdq", h)])
                    until(listed(h))
                    started = time.perf_counter()
                    sub.remove("hotline", [("pdq", h)])
                    timings["RemoveEntries (gRPC)"].append(time.perf_counter() - started)
                    assert not hit(h), "RemoveEntries returned before the entry stopped matching"
            store.close()
            outputs = load.results()
            load.close()
        ok = sum(o["codes"].get("OK", 0) for o in outputs)
        errors = {k: v for o in outputs for k, v in o["codes"].items() if k != "OK"}
        latencies = np.concatenate([o["latencies"] for o in outputs]) * 1000
        load_line = (
            f"check load during the trials: {ok * 100 / seconds:,.0f} hash checks/s, open loop "
            f"in 100-hash batches, p99 {np.percentile(latencies, 99):.1f} ms, "
            f"errors {errors or 'none'}"
        )

    backend = "SQLite" if args.postgres is None else "PostgreSQL"
    rows: list[dict[str, Any]] = []
    for name, values in timings.items():
        s = summary(values)
        target = 5000 if name.startswith(("add", "SubmitCase")) else 1000
        rows.append({"path": name, **s, "target": target, "met": s["max"] <= target})
    add_p50 = rows[0]["p50"] / 1000
    lines = [
        f"# Freshness, {args.n:,} PDQ entries, {backend} store ({date.today().isoformat()})",
        "",
        "Command: `.venv/bin/python load_tests/freshness_benchmark.py "
        f"--n {args.n}{' --postgres URL' if args.postgres else ''}` — {args.trials} trials; "
        "server, load clients, benchmark and database share "
        "this 2-core machine.",
        "",
        "| path | p50 ms | p95 ms | max ms | target ms | met |",
        "|---|---:|---:|---:|---:|---|",
        *(
            f"| {r['path']} | {r['p50']:.0f} | {r['p95']:.0f} | {r['max']:.0f} | "
            f"{r['target']} | {'yes' if r['met'] else 'NO'} |"
            for r in rows
        ),
        "",
        load_line,
        "",
        f"Peer, same run: a full snapshot rebuild of the store takes {rebuild:.1f} s, "
        f"{rebuild / add_p50:,.0f}x the median time for a new entry to match here.",
    ]
    text = "\n".join(lines)
    print(text)
    args.results.mkdir(exist_ok=True)
    suffix = f"{args.n // 1_000_000}M" if args.n % 1_000_000 == 0 else str(args.n)
    (args.results / f"freshness_{suffix}_{backend.lower()}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
