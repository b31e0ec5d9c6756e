"""gRPC load test: a real `hashmatch serve` on loopback, driven by several client processes.

    .venv/bin/pip install -q -e '.[bench]'
    .venv/bin/python load_tests/grpc_load.py --n 1M

Builds a snapshot of N seeded synthetic PDQ hashes, starts `hashmatch serve`
on 127.0.0.1, and runs the standard scenarios: unary single-hash `Check`,
batched `Check` of 100 and 1,000 hashes, and `CheckStream` of 1,000-hash
batches, each first closed-loop (as fast as the clients go) and then open-loop
at half of that maximum, where latency is measured from each request's
scheduled send time so queueing is not hidden (no coordinated omission).
1% of the hashes are hits. Clients and server share this machine's cores.
Every scenario is bounded in time; traffic goes to loopback only.

Writes load_tests/results/grpc_load_<N>.md (table) and .png (latency plot).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from proc import cpu_seconds, rss_mb
from synthetic import dataset, parse_n, perturb

# "health" is grpcio's own health Check, which does no work: the RPC rate this
# machine allows before any checking, measured in the same run as the rest.
MODES = {"health": 0, "unary": 1, "batch100": 100, "batch1000": 1000, "stream1000": 1000}
HIT_RATE = 0.01
RESULTS = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------- client process


def client(
    mode: str, target: str, seconds: float, concurrency: int, rate: float, seed: int
) -> None:
    """One load process: `concurrency` closed-loop callers, or an open-loop schedule at
    `rate` requests/s. Prints its latencies and status counts as JSON."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from hashmatch.v1 import match_pb2, match_pb2_grpc

    size = MODES[mode]
    rng = np.random.default_rng(seed)
    known = dataset(1000, 256)  # the first rows of the served list: hits

    def request() -> Any:
        hashes = rng.integers(0, 256, size=(size, 32), dtype=np.uint8)
        hit = rng.random(size) < HIT_RATE
        if hit.any():
            hashes[hit] = perturb(known[rng.integers(0, 1000, int(hit.sum()))], 20, rng)
        return match_pb2.CheckRequest(
            queries=[match_pb2.Query(signal="pdq", hash=h.tobytes()) for h in hashes]
        )

    pool = [request() for _ in range(64)] if size else []
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    lock = threading.Lock()
    channel = grpc.insecure_channel(target)
    stub = match_pb2_grpc.MatchServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    probe = health_pb2.HealthCheckRequest(service="")
    stop_at = time.perf_counter() + seconds

    def record(started: float, code: str) -> None:
        with lock:
            latencies.append(time.perf_counter() - started)
            codes[code] += 1

    def call(i: int, started: float) -> None:
        try:
            if mode == "health":
                health.Check(probe, timeout=10)
            elif mode.startswith("stream"):
                list(stub.CheckStream(iter([pool[i % len(pool)]]), timeout=10))
            else:
                stub.Check(pool[i % len(pool)], timeout=10)
            record(started, "OK")
        except grpc.RpcError as exc:
            record(started, exc.code().name)

    if rate <= 0:

        def loop(k: int) -> None:
            i = k
            if mode.startswith("stream"):
                # One long-lived stream per caller, one batch in flight: the next is
                # sent when the previous answer arrives.
                answered = threading.Semaphore(1)
                sent = [time.perf_counter()]

                def gen() -> Any:
                    nonlocal i
                    while True:
                        answered.acquire()
                        if time.perf_counter() >= stop_at:
                            return
                        i += concurrency
                        sent[0] = time.perf_counter()
                        yield pool[i % len(pool)]

                try:
                    for _ in stub.CheckStream(gen(), timeout=seconds + 10):
                        record(sent[0], "OK")
                        answered.release()
                except grpc.RpcError as exc:
                    record(sent[0], exc.code().name)
                return
            while time.perf_counter() < stop_at:
                call(i, time.perf_counter())
                i += concurrency

        threads = [threading.Thread(target=loop, args=(k,)) for k in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        # Open loop: request i is due at start + i / rate, whether or not earlier ones are done.
        from concurrent.futures import ThreadPoolExecutor

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=256) as executor:
            i = 0
            while True:
                due = start + i / rate
                if due >= stop_at:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                executor.submit(call, i, due)
                i += 1
    channel.close()
    print(json.dumps({"latencies": latencies, "codes": dict(codes), "size": size}))


# ---------------------------------------------------------------- orchestration


def run_scenario(
    target: str,
    server_pid: int,
    mode: str,
    seconds: float,
    procs: int,
    concurrency: int,
    rate: float,
) -> dict[str, Any]:
    cpu_before = cpu_seconds(server_pid)
    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                mode,
                target,
                str(seconds),
                str(concurrency),
                str(rate / procs),
                str(1000 + k),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(procs)
    ]
    outputs = [json.loads(c.communicate(timeout=seconds + 120)[0]) for c in children]
    wall = time.perf_counter() - started
    cpu = (cpu_seconds(server_pid) - cpu_before) / wall
    latencies = np.sort(np.concatenate([o["latencies"] for o in outputs])) * 1000
    codes: Counter[str] = Counter()
    for o in outputs:
        codes.update(o["codes"])
    ok = codes.get("OK", 0)
    pct = {
        p: float(np.percentile(latencies, p)) if len(latencies) else float("nan")
        for p in (50, 90, 99, 99.9)
    }
    return {
        "mode": mode,
        "offered": "max (closed loop)" if rate <= 0 else f"{rate:,.0f} RPC/s (open loop)",
        "rpcs_per_s": ok / seconds,
        "checks_per_s": ok * MODES[mode] / seconds,
        "p50": pct[50],
        "p90": pct[90],
        "p99": pct[99],
        "p999": pct[99.9],
        "errors": {k: v for k, v in codes.items() if k != "OK"},
        "server_cpu": cpu,
        "server_rss_mb": rss_mb(server_pid),
    }


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['mode']}\n{'closed' if 'closed' in r['offered'] else 'open ½'}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 1.2), 5))
    for k, (key, name) in enumerate(
        (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"))
    ):
        ax.bar(x + (k - 1.5) * 0.2, [r[key] for r in rows], 0.2, label=name)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("latency, ms (log)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", default="1M", help="list size, e.g. 1M or 10M")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each scenario")
    parser.add_argument("--procs", type=int, default=3, help="client processes")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="closed-loop callers per process"
    )
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--client", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        mode, target, seconds, concurrency, rate, seed = args.client
        client(mode, target, float(seconds), int(concurrency), float(rate), int(seed))
        return

    from hashmatch.serve_process import running_server

    n = parse_n(args.n)
    RESULTS.mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hashmatch-load-") as tmp:
        print(f"building a snapshot of {n:,} PDQ hashes ...", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, str(Path(__file__).with_name("synthetic.py")), str(n), "256", tmp],
            check=True,
        )
        with running_server(Path(tmp), "--no-auth", start_timeout=300) as server:
            pid = server.process.pid
            for mode in args.modes.split(","):
                print(f"{mode}: closed loop ...", file=sys.stderr, flush=True)
                best = run_scenario(
                    server.address, pid, mode, args.seconds, args.procs, args.concurrency, 0
                )
                rows.append(best)
                half = best["rpcs_per_s"] / 2
                print(f"{mode}: open loop at {half:,.0f} RPC/s ...", file=sys.stderr, flush=True)
                rows.append(
                    run_scenario(
                        server.address, pid, mode, args.seconds, args.procs, args.concurrency, half
                    )
                )
            peak = rss_mb(pid, "VmHWM")
    title = (
        f"hashmatch gRPC load, {n / 1e6:g}M PDQ list, {date.today()}, "
        f"{os.cpu_count()} cores shared by server and {args.procs} client processes"
    )
    lines = [
        f"### {title}",
        "",
        "| scenario | offered load | hash checks/s | RPCs/s | p50 ms | p90 ms | p99 ms | p99.9 ms "
        "| errors | server CPU | server RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items())) or "0"
        lines.append(
            f"| {r['mode']} | {r['offered']} | {r['checks_per_s']:,.0f} | {r['rpcs_per_s']:,.0f} "
            f"| {r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} | {r['p999']:.1f} | {errors} "
            f"| {r['server_cpu'] * 100:.0f}% | {r['server_rss_mb']:,.0f} |"
        )
    lines += [
        "",
        f"Server peak RSS {peak:,.0f} MB. Command: `.venv/bin/python load_tests/grpc_load.py "
        f"--n {args.n}`",
    ]
    modes = args.modes.split(",")
    subset = "" if set(modes) == set(MODES) else "_" + "-".join(modes)
    stem = RESULTS / f"grpc_load_{args.n}{subset}"
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(rows, stem.with_suffix(".png"), title)
    print("\n".join(lines))
    print(f"\nwrote {stem.with_suffix('.md')} and {stem.with_suffix('.png')}")


if __name__ == "__main__":
    main()
