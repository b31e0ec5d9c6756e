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

`--crossover` instead compares a FAISS IndexBinaryFlat scan with the
multi-index tables on small lists, the measurement behind MIH_MIN_ENTRIES;
`--prefetch` measures the kernel's prefetch distance, warm and after the core
idled, the measurement behind PREFETCH and PREFETCH_FINGERPRINTED; `--plans` times
the planner's pick beside the chunkings next to it, the measurement behind its cost
constants; `--idle` times a 1,000-hash batch after the cores have idled, with the
workers pinned to a CPU each or not, beside arithmetic and L2-sized reads after the
same idle time; `--overlap` times two overlapping batches by how many queries a
worker gathers into one run; `--cadence` times 1,000-hash batches at the half-load
cadence beside controls that never touch the service's code, which tell whether a
batch's tail is the host's. `--memory` measures the machine: what one random 8-byte
read costs, with the kernel's prefetch, from arrays that fit in cache and from
arrays that do not (the engine's speed follows it).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from proc import rss_mb
from synthetic import SIGNAL_FOR_BITS, dataset, parse_n, queries, write_snapshot_of

BATCH = 1000
ROUNDS = 5
PREFETCH_DISTANCES = (0, 12, 32, 64, 128, 256, 512)
PREFETCH_ROUNDS = 16
# Chunkings timed on either side of the planner's pick by --plans.
PLAN_NEIGHBOURS = 2
# Idle time before each batch timed by --idle.
IDLE_GAPS_MS = (0, 5, 20, 50, 100)
# Pairs of overlapping batches timed by --overlap, per gather limit.
OVERLAP_ROUNDS = 40
# --cadence: one slot per 1,000-hash batch at half load (38 RPC/s on the Xeon of 12-01).
CADENCE_GAP_MS = 26.0
CADENCE_ROUNDS = 700
# Slots per block: batches and controls take turns block by block (see worker_cadence).
CADENCE_BLOCK = 25
CADENCE_ARRAY_BYTES = 192 * 2**20


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


def first_check_seconds(root: Path, bits: int) -> float:
    """Seconds from starting `hashmatch serve` on the snapshot to its first answered Check."""
    import grpc

    from hashmatch.serve_process import running_server
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


def worker_prefetch(n: int, bits: int) -> dict[str, float]:
    """µs per query by prefetch distance, warm and after the core idled 50 ms. The
    distances take turns within each round (in alternating order), so that the host's
    speed drifting during the run weighs on all of them alike; medians of the rounds.
    Every search has queries of its own, so none finds buckets an earlier one left in
    cache."""
    from hashmatch.signals import get_signal
    from indexer.mih import build_tables, plan_for
    from service.mih_engine import MihEngine

    threshold = get_signal(SIGNAL_FOR_BITS[bits]).threshold
    entries = dataset(n, bits)
    engine = MihEngine(entries, build_tables(entries, plan_for(bits, threshold, n)))
    per_search = (500, 200)  # warm, then after idle
    fresh = iter(
        queries(entries, PREFETCH_ROUNDS * len(PREFETCH_DISTANCES) * sum(per_search))[
            "miss"
        ].reshape(-1, sum(per_search), entries.shape[1])
    )
    engine.search(entries[:10], threshold)
    warm: dict[int, list[float]] = {d: [] for d in PREFETCH_DISTANCES}
    cold: dict[int, list[float]] = {d: [] for d in PREFETCH_DISTANCES}
    for r in range(PREFETCH_ROUNDS):
        for distance in PREFETCH_DISTANCES[:: 1 if r % 2 else -1]:
            engine.prefetch = distance
            qs = next(fresh)
            batch, after_idle = qs[: per_search[0]], qs[per_search[0] :]
            warm[distance].append(_timed(partial(engine.search, batch, threshold)) / len(batch))
            time.sleep(0.05)
            cold[distance].append(
                _timed(partial(engine.search, after_idle, threshold)) / len(after_idle)
            )
    row = {}
    for distance in PREFETCH_DISTANCES:
        row[str(distance)] = 1e6 * float(np.median(warm[distance]))
        row[f"cold {distance}"] = 1e6 * float(np.median(cold[distance]))
    return row


def worker_plans(n: int, bits: int) -> list[dict[str, Any]]:
    """The planner's pick and the chunkings next to it, each timed (one thread, misses)."""
    from hashmatch.signals import get_signal
    from indexer.mih import build_tables, plans
    from service.mih_engine import MihEngine

    threshold = get_signal(SIGNAL_FOR_BITS[bits]).threshold
    entries = dataset(n, bits)
    qs = queries(entries, 3000)["miss"]
    costed = plans(bits, threshold, n)  # in order of chunk count asked for
    pick = min(range(len(costed)), key=lambda i: costed[i][0])
    rows = []
    for cost, plan in costed[max(0, pick - PLAN_NEIGHBOURS) : pick + PLAN_NEIGHBOURS + 1]:
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


@functools.cache
def control_kernels() -> tuple[Callable[[int], int], Callable[[Any, int], int], Any]:
    """Work that never touches the service's code, to tell the host from the engine:
    `arithmetic(steps)` needs no memory, `chase(chain, steps)` follows dependent reads,
    `gather(array, at, distance)` makes random reads with the engine's prefetch."""
    import numba as nb

    from service.mih_engine import _prefetch

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

    @nb.njit(nogil=True)
    def gather(array: Any, at: Any, distance: int) -> int:
        total = 0
        for k in range(at.shape[0]):
            if k + distance < at.shape[0]:
                _prefetch(array, at[k + distance])
            total += array[at[k]]
        return total

    return arithmetic, chase, gather


def served_batches(n: int) -> tuple[Any, list[list[Any]]]:
    """A warmed-up matcher over a snapshot of n PDQ hashes, and eight 1,000-hash batches
    of parsed queries that miss, as the server's batcher receives them."""
    from indexer.snapshot import read_snapshot
    from service.matcher import Matcher
    from service.queries import ParsedQuery
    from service.warmup import warm_up

    entries = dataset(n, 256)
    with tempfile.TemporaryDirectory(prefix="hashmatch-served-") as tmp:
        write_snapshot_of(entries, Path(tmp))
        matcher = Matcher.of(read_snapshot(Path(tmp)))
    warm_up(matcher)
    miss = queries(entries, 8 * BATCH)["miss"]
    batches = [
        [ParsedQuery("pdq", row.tobytes(), 31) for row in miss[i : i + BATCH]]
        for i in range(0, len(miss), BATCH)
    ]
    return matcher, batches


def worker_idle(n: int) -> list[dict[str, Any]]:
    """A 1,000-hash PDQ batch through the batcher (two workers, left to the scheduler or
    pinned), timed after the cores have idled for a while: a virtual machine's idle vCPUs
    may halt and be descheduled, and the woken workers may share one. Two controls after
    the same idle time tell the clock from the caches: a loop of arithmetic, and a chain
    of dependent reads within 2 MB (a core's L2 holds it)."""
    from service.batcher import Batcher

    arithmetic, chase, _ = control_kernels()
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
    for gap_ms in IDLE_GAPS_MS:
        ms = {}
        for name, work in works.items():
            work(0)
            took = []
            for i in range(40):
                time.sleep(gap_ms / 1000)
                took.append(_timed(partial(work, i)))
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
    return rows


def worker_cadence(n: int, gap_ms: float, rounds: int) -> dict[str, Any]:
    """At the cadence of 1,000-hash batches at half load, one slot every `gap_ms`: a batch
    through the pinned batcher, or the two controls, 3M steps of arithmetic and 400,000
    random reads from 192 MB (the size of the 1M PDQ fingerprint tables). Where the
    controls' p99 is a multiple of their p50 too, the host took the cores away for a
    while, and the batch's tail is the host's rather than the engine's.

    Batches and controls run in alternating blocks of CADENCE_BLOCK slots, each block's
    first slot untimed: the reads sweep more than the caches hold, and batches timed
    straight after them (as this benchmark did until 12-01 10:30 UTC) measured p50 15.6
    ms where batches following batches took 13.2."""
    from service.batcher import Batcher

    arithmetic, _, gather = control_kernels()
    matcher, batches = served_batches(n)
    batcher = Batcher(lambda: matcher, workers=2, pin=True)
    rng = np.random.default_rng(3)
    array = np.ones(CADENCE_ARRAY_BYTES // 8, np.uint64)
    reads = [rng.integers(0, len(array), 400_000) for _ in range(8)]
    works: dict[str, Callable[[int], object]] = {
        "batch": lambda i: batcher.check(batches[i % len(batches)]),
        "arithmetic": lambda i: arithmetic(3_000_000),
        "reads": lambda i: gather(array, reads[i % len(reads)], 32),
    }
    phases = (("batch",), ("arithmetic", "reads"))
    for work in works.values():
        work(0)
    took: dict[str, list[float]] = {name: [] for name in works}
    blocks = 2 * -(-rounds // CADENCE_BLOCK)
    start = time.perf_counter()
    for slot in range(blocks * (CADENCE_BLOCK + 1)):
        block, at = divmod(slot, CADENCE_BLOCK + 1)
        time.sleep(max(0.0, start + slot * gap_ms / 1000 - time.perf_counter()))
        for name in phases[block % 2]:
            elapsed = _timed(partial(works[name], slot))
            if at:
                took[name].append(elapsed * 1000)
    out: dict[str, Any] = {"gap_ms": gap_ms, "rounds": rounds}
    for name, ms in took.items():
        out[name] = {f"p{p:g}": float(np.percentile(ms, p)) for p in (50, 90, 99)}
        out[name]["max"] = max(ms)
    return out


def _send_after(batcher: Any, batch: Any, after: float, times: dict[str, float], name: str) -> None:
    time.sleep(after)
    times[name] = _timed(partial(batcher.check, batch))


def worker_overlap(n: int) -> list[dict[str, Any]]:
    """Two 1,000-hash PDQ batches, the second sent 3 ms after the first, through batchers
    that gather at most GATHER queries a run and at most 4,096 (as before), alternating."""
    from service.batcher import GATHER, Batcher

    matcher, batches = served_batches(n)
    batchers = {g: Batcher(lambda: matcher, workers=2, gather=g) for g in (GATHER, 4096)}
    took: dict[int, list[tuple[float, float]]] = {g: [] for g in batchers}
    for i in range(-2, OVERLAP_ROUNDS):
        for gather, batcher in batchers.items():
            times: dict[str, float] = {}
            pair = [
                threading.Thread(
                    target=_send_after, args=(batcher, batches[i % 8], 0.0, times, "first")
                ),
                threading.Thread(
                    target=_send_after,
                    args=(batcher, batches[(i + 1) % 8], 0.003, times, "second"),
                ),
            ]
            for t in pair:
                t.start()
            for t in pair:
                t.join()
            if i >= 0:
                took[gather].append((times["first"], times["second"]))
            time.sleep(0.005)
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


def worker_memory() -> list[dict[str, Any]]:
    _, _, gather = control_kernels()
    rows = []
    rng = np.random.default_rng(1)
    for mb in (1, 16, 256, 1024):
        array = np.ones(mb * 2**20 // 8, np.uint64)
        at = rng.integers(0, len(array), 4_000_000)
        gather(array, at[:1000], 32)
        for distance in (0, 32):
            best = min(_timed(lambda a=array, i=at, d=distance: gather(a, i, d)) for _ in range(3))
            rows.append({"mb": mb, "prefetch": distance, "ns": best / len(at) * 1e9})
    return rows


def _timed(work: Any) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


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
    parser.add_argument("--crossover", action="store_true")
    parser.add_argument(
        "--prefetch",
        action="store_true",
        help="the kernel's speed by prefetch distance (first --n, one thread)",
    )
    parser.add_argument(
        "--memory", action="store_true", help="ns per random read by array size (one thread)"
    )
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="two overlapping 1,000-hash batches by the batcher's gather limit (first --n)",
    )
    parser.add_argument(
        "--idle",
        action="store_true",
        help="a 1,000-hash batch's time after the cores idled 0-100 ms (first --n)",
    )
    parser.add_argument(
        "--plans",
        action="store_true",
        help="the planner's pick beside neighbouring chunkings, timed (each --n, one thread)",
    )
    parser.add_argument(
        "--cadence",
        action="store_true",
        help="1,000-hash batches at the half-load cadence beside host controls (first --n)",
    )
    parser.add_argument(
        "--cadence-ms", type=float, default=CADENCE_GAP_MS, help="--cadence: ms between slots"
    )
    parser.add_argument(
        "--cadence-rounds", type=int, default=CADENCE_ROUNDS, help="--cadence: slots timed"
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
        elif role == "prefetch":
            out = worker_prefetch(int(rest[0]), int(rest[1]))
        elif role == "memory":
            out = worker_memory()
        elif role == "plans":
            out = worker_plans(int(rest[0]), int(rest[1]))
        elif role == "idle":
            out = worker_idle(int(rest[0]))
        elif role == "overlap":
            out = worker_overlap(int(rest[0]))
        elif role == "cadence":
            out = worker_cadence(int(rest[0]), float(rest[1]), int(rest[2]))
        else:
            out = worker_crossover(int(rest[0]))
        print(json.dumps(out))
        return

    if args.memory:
        print("\nns per random 8-byte read, one thread:\n")
        print_head("array", "no prefetch", "prefetch 32 ahead")
        rows = spawn("memory")
        for mb in sorted({r["mb"] for r in rows}):
            print_row(f"{mb:,} MB", *(f"{r['ns']:.1f}" for r in rows if r["mb"] == mb))
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

    if args.idle:
        n = parse_n(args.n.split(",")[0])
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
        for r in spawn("idle", str(n)):
            print_row(f"{r['gap_ms']} ms", *(f"{r[k]:.2f}" for k in keys))
        return

    if args.cadence:
        n = parse_n(args.n.split(",")[0])
        r = spawn("cadence", str(n), str(args.cadence_ms), str(args.cadence_rounds))
        print(f"\n{n:,} PDQ hashes, slots {r['gap_ms']:g} ms apart, {r['rounds']} timed for")
        print("each work: a 1,000-hash batch (two pinned workers), or 3M steps of arithmetic")
        print("and 400,000 random reads from 192 MB (one thread), in alternating blocks of")
        print(f"{CADENCE_BLOCK} slots. A control's p99 far above its p50 is the host's doing:\n")
        print_head("work", "p50 ms", "p90 ms", "p99 ms", "max ms", "p99 / p50")
        for name in ("batch", "arithmetic", "reads"):
            t = r[name]
            print_row(
                name,
                *(f"{t[k]:.2f}" for k in ("p50", "p90", "p99", "max")),
                f"{t['p99'] / t['p50']:.1f}",
            )
        return

    if args.overlap:
        n = parse_n(args.n.split(",")[0])
        print(f"\n{n:,} PDQ hashes, two 1,000-hash batches 3 ms apart, two workers:\n")
        print_head(
            "queries a run gathers, at most",
            "first p50 ms",
            "first p90 ms",
            "second p50 ms",
            "second p90 ms",
        )
        for r in spawn("overlap", str(n)):
            print_row(
                f"{r['gather']:,}",
                *(f"{r[k]:.2f}" for k in ("first_p50", "first_p90", "second_p50", "second_p90")),
            )
        return

    if args.plans:
        print("\nThe planner's pick beside other chunkings, misses, one thread:\n")
        print_head("list", "hash", "chunks", "probes", "candidates", "model cost", "µs per query")
        for n in (parse_n(x) for x in args.n.split(",")):
            for bits in bits_list:
                for r in spawn("plans", str(n), str(bits)):
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
        return

    if args.prefetch:
        n = parse_n(args.n.split(",")[0])
        print(f"\n{n:,} hashes, misses, one thread, by prefetch distance: µs per query of")
        print("500 searched back to back, and of 200 searched after the core idled 50 ms")
        print(f"(medians of {PREFETCH_ROUNDS} rounds, the distances taking turns in each):\n")
        print_head("hash", *map(str, PREFETCH_DISTANCES))
        for bits in bits_list:
            row = spawn("prefetch", str(n), str(bits))
            for label, key in (("", "{}"), (", after idle", "cold {}")):
                print_row(
                    f"{bits}-bit{label}",
                    *(f"{row[key.format(d)]:.1f}" for d in PREFETCH_DISTANCES),
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
