"""Engine benchmark: exact threshold search over N synthetic hashes, beside python-threatexchange.

    .venv/bin/pip install -q -e '.[bench]'
    .venv/bin/python load_tests/engine_benchmark.py --n 1M,10M

For each N: seeded uniform random hashes; queries that miss (uniform random)
and queries that hit (list entries with 20 of 256 bits flipped for PDQ, 5 of
64 for pHash); batches of 1,000 through the service's own batcher and
matcher on two worker threads (no gRPC). Every measurement runs in its own
process so peak RSS is that of one role: `build` (the indexer building and
writing the snapshot), `serve` (the service loading it and answering), and
`peer` (python-threatexchange's PDQIndex, FAISS IndexBinaryMultiHash inside,
answering the same queries in batches of 1,000 through its batch API).
Each throughput is the median of five runs. Recall is checked against a
brute-force popcount scan on a sample.

`--policies` instead measures what per-list policy costs a check, in one process and
one run: batches of 1,000 PDQ queries through the batcher, the matcher and the step that
decides what a caller sees (service.checking.visible), over the same list with no policy,
with the list narrowed to a distance of its own, and with a further 10,000 entries on a
negative list of the caller's tenant in the same index.

`--crossover` instead compares a FAISS IndexBinaryFlat scan with the
multi-index tables on small lists, the measurement behind MIH_MIN_ENTRIES.

The experiments behind the engine's other constants (prefetch distance, the
planner's costs, worker pinning, the batcher's gather limit) are in
load_tests/experiments/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from proc import rss_mb
from synthetic import (
    SEED,
    SIGNAL_FOR_BITS,
    dataset,
    parse_n,
    perturb,
    queries,
    write_snapshot_of,
)

BATCH = 1000
ROUNDS = 5
SEED_NEGATIVE = SEED + 7


def brute_force(entries: npt.NDArray[np.uint8], q: npt.NDArray[np.uint8], radius: int) -> set[int]:
    words = entries.view("<u8")
    qw = q.view("<u8")
    found: set[int] = set()
    for start in range(0, len(words), 1_000_000):
        block = words[start : start + 1_000_000]
        d = np.bitwise_count(block ^ qw).sum(axis=1)
        found.update((np.flatnonzero(d <= radius) + start).tolist())
    return found


def worker_build(n: int, bits: int, out: Path) -> dict[str, Any]:
    from hashmatch.signals import get_signal
    from indexer.mih import MIH_MIN_ENTRIES, build_tables, plan_for

    signal = get_signal(SIGNAL_FOR_BITS[bits])
    entries = dataset(n, bits)
    started = time.perf_counter()
    plan = plan_for(bits, signal.threshold, n)
    tables = build_tables(entries, plan) if n >= MIH_MIN_ENTRIES else None
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    write_snapshot_of(entries, out, tables)
    return {
        "build_s": build_s,
        "write_s": time.perf_counter() - started,
        "plan": [(c.length, c.radius) for c in plan.chunks],
        "probes": plan.probes(),
        "candidates": round(plan.candidates(n)),
        "peak_rss_mb": rss_mb(key="VmHWM"),
    }


def run_batches(check: Any, batches: list[Any], threads: int = 2) -> tuple[float, list[float]]:
    """Closed loop: `threads` callers each submit their share of batches.

    Returns the wall time and each batch's latency."""
    latencies: list[float] = []
    lock = threading.Lock()

    def caller(mine: list[Any]) -> None:
        for b in mine:
            t = time.perf_counter()
            check(b)
            with lock:
                latencies.append(time.perf_counter() - t)

    workers = [threading.Thread(target=caller, args=(batches[i::threads],)) for i in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - started, latencies


def measure(check: Any, batches: list[Any], threads: int = 2) -> dict[str, Any]:
    """The median of ROUNDS closed-loop runs: memory bandwidth on this shared machine
    varies by a quarter from one run to the next, for us and the peer alike."""
    count = sum(len(b) for b in batches)
    runs = [summarize(count, *run_batches(check, batches, threads)) for _ in range(ROUNDS)]
    runs.sort(key=lambda r: r["checks_per_s"])
    return runs[len(runs) // 2] | {"rounds": [round(r["checks_per_s"]) for r in runs]}


def summarize(count: int, wall: float, latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "checks_per_s": count / wall,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


def worker_serve(n: int, bits: int, root: Path, count: int, sample: int) -> dict[str, Any]:
    from indexer.snapshot import read_snapshot
    from service.batcher import Batcher
    from service.matcher import Matcher, make_engine
    from service.queries import ParsedQuery
    from service.warmup import warm_up

    started = time.perf_counter()
    snapshot = read_snapshot(root)
    matcher = Matcher.of(snapshot)
    signal = SIGNAL_FOR_BITS[bits]
    table = snapshot.tables[signal]
    threshold = table.threshold
    warm_up(matcher)  # as `hashmatch serve` does
    load_s = time.perf_counter() - started
    engine = type(make_engine(table)).__name__
    batcher = Batcher(lambda: matcher, workers=2, pin=True)  # as `hashmatch serve` does
    entries = table.hashes
    result: dict[str, Any] = {"load_s": load_s, "engine": engine}
    recall_ok = True
    for kind, qs in queries(entries, count).items():
        parsed = [ParsedQuery(signal, row.tobytes(), threshold) for row in qs]
        batches = [parsed[i : i + BATCH] for i in range(0, len(parsed), BATCH)]
        answers: dict[int, list[Any]] = {}

        def check(batch: list[ParsedQuery], answers: dict[int, list[Any]] = answers) -> None:
            answers[id(batch)] = batcher.check(batch)[1]

        result[kind] = measure(check, batches)
        found = [hits for b in batches for hits in answers[id(b)]]
        result[kind]["matched"] = sum(bool(h) for h in found)
        result[f"{kind}_found"] = found
    result["peak_rss_mb"] = rss_mb(key="VmHWM")
    # Recall against brute force, on a sample (after the RSS reading: the scan needs memory).
    index_of = {bytes(m): i for i, m in enumerate(table.match_ids)}
    checked = 0
    for kind, qs in queries(entries, count).items():
        for i in range(0, count, max(1, count // sample)):
            want = brute_force(entries, qs[i : i + 1], threshold)
            got = {index_of[bytes.fromhex(h.match_id)] for h in result[f"{kind}_found"][i]}
            recall_ok &= want == got
            checked += 1
        del result[f"{kind}_found"]
    result["recall_sample"] = checked
    result["recall_exact"] = recall_ok
    batcher.close()
    return result


NEGATIVE_ENTRIES = 10_000


def worker_policies(n: int, count: int) -> list[dict[str, Any]]:
    """Checks/s of the check path (search and visible()) without and with list policies."""
    from hashmatch.signals import get_signal
    from indexer.mih import build_tables, plan_for
    from indexer.snapshot import SignalTable
    from indexer.store import MATCH_ID_BYTES, ListPolicy
    from service.auth import Caller
    from service.batcher import Batcher
    from service.checking import visible
    from service.list_policy import Policies, PolicyWatch, widened
    from service.matcher import Matcher
    from service.queries import ParsedQuery

    pdq = get_signal("pdq")
    listed = dataset(n, 256)
    qs = queries(listed, count)
    rng = np.random.default_rng(SEED_NEGATIVE)
    benign = rng.integers(0, 256, (NEGATIVE_ENTRIES, 32), dtype=np.uint8)
    # 1% of the hits are also within 4 bits of a negative entry: suppressed where it applies.
    hits = qs["hit"]
    near = hits[::100]
    benign[: len(near)] = perturb(near, 4, rng)

    def matcher(entries: npt.NDArray[np.uint8], positions: npt.NDArray[np.uint32]) -> Matcher:
        m = len(entries)
        table = SignalTable(
            "pdq",
            256,
            pdq.threshold,
            False,
            entries,
            positions,
            np.random.default_rng(3).integers(0, 256, (m, MATCH_ID_BYTES), dtype=np.uint8),
            np.arange(1, m + 1, dtype=np.int64),
            build_tables(entries, plan_for(256, pdq.threshold, m)),
        )
        return Matcher(("synthetic", "benign"), {"pdq": table}, 1)

    plain = matcher(listed, np.zeros(n, np.uint32))
    both = np.concatenate([listed, benign])
    with_negative = matcher(
        both, np.concatenate([np.zeros(n, np.uint32), np.ones(NEGATIVE_ENTRIES, np.uint32)])
    )
    caller = Caller("t/key", frozenset({"check"}), None, "key", None, tenant="t")
    narrowed = {"synthetic": ListPolicy("synthetic", max_distances={"pdq": 24})}

    def watch(policies: dict[str, ListPolicy] | None) -> PolicyWatch:
        w = PolicyWatch(None)
        if policies is not None:
            w.current = Policies(policies, complete=True)
        return w

    cases = [
        ("no policy", plain, watch(None)),
        ("list narrowed to 24", plain, watch(narrowed)),
        (
            "+ 10,000 negative entries, another tenant's",
            with_negative,
            watch({**narrowed, "benign": ListPolicy("benign", "negative", "other")}),
        ),
        (
            "+ 10,000 negative entries, the caller's",
            with_negative,
            watch({**narrowed, "benign": ListPolicy("benign", "negative", "t")}),
        ),
    ]
    batchers = [Batcher(lambda m=m: m, workers=2, pin=True) for _, m, _ in cases]
    runs: dict[tuple[int, str], list[dict[str, float]]] = {}
    shown: dict[tuple[int, str], int] = {}
    for kind, rows_of in (("miss", qs["miss"]), ("hit", hits)):
        parsed = [ParsedQuery("pdq", r.tobytes(), pdq.threshold) for r in rows_of]
        batches = [parsed[i : i + BATCH] for i in range(0, len(parsed), BATCH)]
        # The cases in turn, round after round: this shared machine's speed drifts.
        for _ in range(ROUNDS):
            for k, (_, _, watch) in enumerate(cases):
                tally = [0]
                lock = threading.Lock()  # two callers add to the tally

                def check(
                    batch: list[ParsedQuery],
                    watch: PolicyWatch = watch,
                    batcher: Batcher = batchers[k],
                    tally: list[int] = tally,
                    lock: threading.Lock = lock,
                ) -> None:
                    negative_applies = watch.current.negative_for(caller.tenant)
                    found = batcher.check(widened(batch) if negative_applies else batch)[1]
                    shown = len(visible(caller, batch, found, frozenset(), watch))
                    with lock:
                        tally[0] += shown

                runs.setdefault((k, kind), []).append(
                    summarize(len(parsed), *run_batches(check, batches))
                )
                shown[k, kind] = tally[0]
    for b in batchers:
        b.close()
    rows = []
    for k, (label, _, _) in enumerate(cases):
        row: dict[str, Any] = {"case": label}
        for kind in ("miss", "hit"):
            ordered = sorted(runs[k, kind], key=lambda r: r["checks_per_s"])
            row[kind] = ordered[len(ordered) // 2] | {"shown": shown[k, kind]}
        rows.append(row)
    return rows


def first_check_seconds(root: Path, bits: int) -> float:
    """Seconds from starting `hashmatch serve` on the snapshot to its first answered Check."""
    import grpc

    from hashmatch.demo.serve_process import running_server
    from hashmatch.v1 import match_pb2, match_pb2_grpc

    query = match_pb2.Query(signal=SIGNAL_FOR_BITS[bits], hash=bytes(bits // 8))
    started = time.perf_counter()
    with (
        running_server(root, "--no-auth", start_timeout=120) as server,
        grpc.insecure_channel(server.address) as ch,
    ):
        stub = match_pb2_grpc.MatchServiceStub(ch)
        stub.Check(match_pb2.CheckRequest(queries=[query]), timeout=60, wait_for_ready=True)
        return time.perf_counter() - started


def worker_peer(n: int, count: int) -> dict[str, Any]:
    from threatexchange.signal_type.pdq.pdq_index import PDQIndex

    entries = dataset(n, 256)
    started = time.perf_counter()
    index = PDQIndex((entries[i].tobytes().hex(), i) for i in range(n))
    build_s = time.perf_counter() - started
    result: dict[str, Any] = {"build_s": build_s}
    threshold = PDQIndex.get_match_threshold()  # type: ignore[no-untyped-call]
    for kind, qs in queries(entries, count).items():
        hexes = [row.tobytes().hex() for row in qs]
        batches = [hexes[i : i + BATCH] for i in range(0, len(hexes), BATCH)]
        matched: dict[str, dict[int, int]] = {"query": {}, "batch": {}}

        def per_hash(batch: list[str], matched: dict[int, int] = matched["query"]) -> None:
            matched[id(batch)] = sum(bool(index.query(h)) for h in batch)

        def batched(batch: list[str], matched: dict[int, int] = matched["batch"]) -> None:
            found = index.index.search_with_distance_in_result(batch, threshold)
            matched[id(batch)] = sum(bool(found[h]) for h in batch)

        # PDQIndex.query(), one hash a call, is its public API (what HMA calls), from two
        # threads like ours; the batch call underneath is FAISS-parallel already.
        result[f"query_{kind}"] = measure(per_hash, batches, threads=2)
        result[f"batch_{kind}"] = measure(batched, batches, threads=1)
        for path in ("query", "batch"):
            result[f"{path}_{kind}"]["matched"] = sum(matched[path].values())
    result["peak_rss_mb"] = rss_mb(key="VmHWM")
    return result


def single_thread_rate(engine: Any, qs: npt.NDArray[np.uint8], threshold: int) -> float:
    """Checks/s of the best of three passes over `qs` in batches, in this thread."""
    engine.search(qs[:10], threshold)
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        for i in range(0, len(qs), BATCH):
            engine.search(qs[i : i + BATCH], threshold)
        best = max(best, len(qs) / (time.perf_counter() - started))
    return best


def worker_crossover(bits: int) -> list[dict[str, Any]]:
    from hashmatch.signals import get_signal
    from indexer.mih import build_tables, plan_for
    from service.engine import FaissRangeEngine
    from service.mih_engine import MihEngine

    threshold = get_signal(SIGNAL_FOR_BITS[bits]).threshold
    rows = []
    for n in (500, 1000, 2000, 4000, 8000, 16000, 64000):
        entries = dataset(n, bits)
        qs = queries(entries, 2000)["miss"]
        engines = {
            "faiss_flat": FaissRangeEngine.from_hashes(bits, entries),
            "mih": MihEngine(entries, build_tables(entries, plan_for(bits, threshold, n))),
        }
        row: dict[str, Any] = {"n": n}
        for name, engine in engines.items():
            row[name] = single_thread_rate(engine, qs, threshold)
        rows.append(row)
    return rows


def print_row(*cells: str) -> None:
    print("| " + " | ".join(cells) + " |")


def print_head(*columns: str) -> None:
    """A Markdown table's header row and its separator."""
    print_row(*columns)
    print("|---" * len(columns) + "|")


def spawn(*args: str) -> Any:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", default="1M,10M", help="list sizes, e.g. 1M,10M")
    parser.add_argument(
        "--bits", default="256,64", help="256 (PDQ, threshold 31) and/or 64 (pHash)"
    )
    parser.add_argument("--queries", type=int, default=20_000, help="queries of each kind")
    parser.add_argument("--peer-queries", type=int, default=2_000)
    parser.add_argument(
        "--sample", type=int, default=100, help="queries of each kind checked by brute force"
    )
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument(
        "--crossover",
        action="store_true",
        help="FAISS flat scan vs multi-index tables on small lists (behind MIH_MIN_ENTRIES)",
    )
    parser.add_argument(
        "--policies",
        action="store_true",
        help="the check path without and with per-list distances and a negative list (PDQ)",
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        role, *rest = args.worker
        out: Any
        if role == "build":
            out = worker_build(int(rest[0]), int(rest[1]), Path(rest[2]))
        elif role == "serve":
            out = worker_serve(
                int(rest[0]), int(rest[1]), Path(rest[2]), int(rest[3]), int(rest[4])
            )
        elif role == "peer":
            out = worker_peer(int(rest[0]), int(rest[1]))
        elif role == "policies":
            out = worker_policies(int(rest[0]), int(rest[1]))
        else:
            out = worker_crossover(int(rest[0]))
        print(json.dumps(out))
        return

    bits_list = [int(b) for b in args.bits.split(",")]
    if args.crossover:
        for bits in bits_list:
            print(
                f"\nFAISS IndexBinaryFlat scan vs multi-index tables, {bits}-bit misses, "
                "one thread:\n"
            )
            print_head("entries", "FAISS flat checks/s", "multi-index checks/s")
            for row in spawn("crossover", str(bits)):
                print_row(f"{row['n']:,}", f"{row['faiss_flat']:,.0f}", f"{row['mih']:,.0f}")
        return

    if args.policies:
        for n in (parse_n(x) for x in args.n.split(",")):
            print(f"\n{n:,} PDQ entries, batches of {BATCH:,}, search and visible():\n")
            print_head(
                "case", "checks/s miss", "checks/s hit", "ratio miss", "ratio hit", "hits shown"
            )
            result = spawn("policies", str(n), str(args.queries))
            base = result[0]
            for row in result:
                print_row(
                    row["case"],
                    f"{row['miss']['checks_per_s']:,.0f}",
                    f"{row['hit']['checks_per_s']:,.0f}",
                    f"{row['miss']['checks_per_s'] / base['miss']['checks_per_s']:.2f}",
                    f"{row['hit']['checks_per_s'] / base['hit']['checks_per_s']:.2f}",
                    f"{row['hit']['shown']:,} of {args.queries:,}",
                )
        return

    rows = []
    for n in (parse_n(x) for x in args.n.split(",")):
        for bits in bits_list:
            with tempfile.TemporaryDirectory(prefix="hashmatch-bench-") as tmp:
                print(f"[{n:,} x {bits}-bit] building ...", file=sys.stderr, flush=True)
                build = spawn("build", str(n), str(bits), tmp)
                print(f"[{n:,} x {bits}-bit] serving ...", file=sys.stderr, flush=True)
                serve = spawn("serve", str(n), str(bits), tmp, str(args.queries), str(args.sample))
                serve["first_check_s"] = first_check_seconds(Path(tmp), bits)
            peer = None
            if bits == 256 and not args.no_peer:
                print(f"[{n:,} x {bits}-bit] peer ...", file=sys.stderr, flush=True)
                peer = spawn("peer", str(n), str(args.peer_queries))
            rows.append((n, bits, build, serve, peer))
            print(
                json.dumps({"n": n, "bits": bits, "build": build, "serve": serve, "peer": peer}),
                file=sys.stderr,
            )

    print(
        "\n| list | engine | checks/s miss | checks/s hit | batch p50 / p99 ms (miss) "
        "| peak RSS MB | build s | load s (serve start → first check) | recall vs brute force |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n, bits, build, serve, peer in rows:
        name = f"{n / 1e6:g}M x {SIGNAL_FOR_BITS[bits]}"
        recall = f"{'100%' if serve['recall_exact'] else 'NOT EXACT'} of {serve['recall_sample']}"
        print(
            f"| {name} | hashmatch ({serve['engine']}) | {serve['miss']['checks_per_s']:,.0f} "
            f"| {serve['hit']['checks_per_s']:,.0f} "
            f"| {serve['miss']['p50_ms']:.1f} / {serve['miss']['p99_ms']:.1f} "
            f"| serve {serve['peak_rss_mb']:,.0f}, build {build['peak_rss_mb']:,.0f} "
            f"| {build['build_s']:.1f} (+{build['write_s']:.1f} write) "
            f"| {serve['load_s']:.1f} ({serve['first_check_s']:.1f}) | {recall} |"
        )
        if peer:
            for path, label in (
                ("query", "python-threatexchange PDQIndex.query() per hash"),
                ("batch", "python-threatexchange PDQIndex batch search (1,000)"),
            ):
                miss, hit = peer[f"{path}_miss"], peer[f"{path}_hit"]
                print(
                    f"| {name} | {label} "
                    f"| {miss['checks_per_s']:,.0f} | {hit['checks_per_s']:,.0f} "
                    f"| {miss['p50_ms']:.1f} / {miss['p99_ms']:.1f} "
                    f"| {peer['peak_rss_mb']:,.0f} | {peer['build_s']:.1f} | — | — |"
                )
                ratio_miss = serve["miss"]["checks_per_s"] / miss["checks_per_s"]
                ratio_hit = serve["hit"]["checks_per_s"] / hit["checks_per_s"]
                print(
                    f"| {name} | **hashmatch / {path} ratio** | **{ratio_miss:.1f}x** "
                    f"| **{ratio_hit:.1f}x** | | | | | |"
                )


if __name__ == "__main__":
    main()
