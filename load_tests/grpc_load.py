"""gRPC load test: a real `hashmatch serve` on loopback, driven by several client processes.

    .venv/bin/pip install -q -e '.[bench]'
    .venv/bin/python load_tests/grpc_load.py --n 1M

Builds a snapshot of N seeded synthetic PDQ hashes, starts `hashmatch serve`
on 127.0.0.1, and runs the standard scenarios: unary single-hash `Check`,
batched `Check` of 100 and 1,000 hashes (the latter also packed in one HashBatch
field), and `CheckStream` of 1,000-hash batches, each first closed-loop (as
fast as the clients go, 10 s) and then open-loop at half of that maximum (30 s,
so that p99 rests on enough requests), where latency is measured from each
request's scheduled send time so queueing is not hidden (no coordinated omission),
and the share of sends the clients got out 2 ms or more behind schedule is reported
(many mean the clients, not the server, could not keep up). Each row also gives the
share of requests answered within 20 ms: p99 is within 20 ms where it is 99% or more,
and unlike p99 it adds up across runs.
The robust modes send whole images' default checks (15 hashes each, see
ROBUST_PROBES): one image per call (`robust1`) or 67 (`robust67`), and the table
gives images/s beside hash checks/s. For the robust figures at 1M and 10M:

    .venv/bin/python load_tests/grpc_load.py --n 1M --modes robust1,robust67,packed1000
    .venv/bin/python load_tests/grpc_load.py --n 10M --modes robust1,robust67,packed1000

1% of the hashes are hits. Clients and server share this machine's cores.
Every scenario is bounded in time; traffic goes to loopback only.

With `--driver h2load` (Debian: apt-get install nghttp2-client) the load comes
from nghttp2's C load generator instead of Python processes, which otherwise
take most of the two cores: the server's own throughput shows. It runs the
unary and batched Check scenarios and grpcio's health Check at their maximum, sending one message
over and over; gRPC statuses are read from the server's /metrics. The
open-loop runs at half that maximum still use the Python clients, whose
schedule is even (h2load's --rps sends every connection's requests at once).

`--server-processes N` starts `serve --processes N`: N processes on one port,
one GIL each, the kernel spreading connections over them.

Writes load_tests/results/grpc_load_<N>[_h2load][_xN].md (table) and .png (latency plot).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import queue
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from proc import cpu_seconds, rss_mb
from synthetic import dataset, parse_n, perturb

from service.metrics import SLO_SECONDS

# A default (robust) check of one image sends 14-16 hashes for pdq,phash
# (hashmatch.variants): the robust modes send 15 per image, all PDQ (the dearer search;
# pHash's go to a smaller index), packed as the SDK sends them.
ROBUST_PROBES = 15
# "health" is grpcio's own health Check, which does no work: the RPC rate this
# machine allows before any checking, measured in the same run as the rest.
# "packed1000" sends its 1,000 hashes as one HashBatch field rather than 1,000 Query messages.
# "robust1" is one image's robust check per call, as a platform checks each upload;
# "robust67" batches 67 images (1,005 hashes), as `hashmatch check` does a folder.
MODES = {
    "health": 0,
    "unary": 1,
    "batch100": 100,
    "batch1000": 1000,
    "packed1000": 1000,
    "stream1000": 1000,
    "robust1": ROBUST_PROBES,
    "robust67": 67 * ROBUST_PROBES,
}
HIT_RATE = 0.01
MAX_IN_FLIGHT_QUERIES = 8_000
# Long-lived CheckStreams per open-loop client process.
OPEN_LOOP_STREAMS = 4
# An open-loop send this far behind its schedule means the client processes, not the
# server, fell behind: a tenth of the 20 ms latency objective.
LATE_SECONDS = 0.002
READY = "ready"
RESULTS = Path(__file__).resolve().parent / "results"
T = TypeVar("T")


# ---------------------------------------------------------------- client process


def check_request(size: int, rng: np.random.Generator, packed: bool = False) -> Any:
    """A Check of `size` random PDQ hashes, HIT_RATE of them near a listed one: as Query
    messages, or `packed` in one HashBatch as the SDK sends them."""
    from hashmatch.v1 import match_pb2
    from hashmatch.wire import check_request as sdk_request

    known = dataset(1000, 256)  # the first rows of the served list
    hashes = rng.integers(0, 256, size=(size, 32), dtype=np.uint8)
    hit = rng.random(size) < HIT_RATE
    if hit.any():
        hashes[hit] = perturb(known[rng.integers(0, 1000, int(hit.sum()))], 20, rng)
    if packed:
        return sdk_request([("pdq", h.tobytes()) for h in hashes])
    return match_pb2.CheckRequest(
        queries=[match_pb2.Query(signal="pdq", hash=h.tobytes()) for h in hashes]
    )


def is_packed(mode: str) -> bool:
    return mode.startswith(("packed", "robust"))


def images_per_s(mode: str, checks_per_s: float) -> float | None:
    """Images checked per second, for the modes that send whole images' robust checks."""
    return checks_per_s / ROBUST_PROBES if mode.startswith("robust") else None


class _OpenStream:
    """One long-lived CheckStream of an open-loop client: batches are sent when due, and
    each answer (they come in order) is timed from its batch's due time."""

    def __init__(self, stub: Any, seconds: float, record: Callable[[float, str], None]) -> None:
        self._outgoing: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._due: deque[float] = deque()
        self._record = record
        self._responses = stub.CheckStream(self._requests(), timeout=seconds + 30)
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _requests(self) -> Iterator[Any]:
        while (request := self._outgoing.get()) is not None:
            yield request

    def _read(self) -> None:
        import grpc

        try:
            for _ in self._responses:
                self._record(self._due.popleft(), "OK")
        except grpc.RpcError as exc:
            while self._due:
                self._record(self._due.popleft(), exc.code().name)

    def send(self, request: Any, due: float) -> None:
        self._due.append(due)
        self._outgoing.put(request)

    def close(self) -> None:
        self._outgoing.put(None)
        self._reader.join()
        while self._due:  # sent after the stream had failed
            self._record(self._due.popleft(), "UNANSWERED")


def client(
    mode: str,
    target: str,
    seconds: float,
    concurrency: int,
    rate: float,
    seed: int,
    index: int,
    count: int,
) -> None:
    """Load process `index` of `count`: `concurrency` closed-loop callers, or its share of
    an open-loop schedule of `rate` requests/s in all. Prints "ready" once set up, starts
    at the time read from stdin, and prints its latencies and status counts as JSON."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from hashmatch.v1 import match_pb2_grpc

    size = MODES[mode]
    rng = np.random.default_rng(seed)
    packed = is_packed(mode)
    pool = [check_request(size, rng, packed) for _ in range(64)] if size else []
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    sends = late = 0
    lock = threading.Lock()
    channel = grpc.insecure_channel(target)
    stub = match_pb2_grpc.MatchServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    probe = health_pb2.HealthCheckRequest(service="")
    # Connected before the clock starts: the first request would otherwise carry the
    # TCP and HTTP/2 handshakes.
    grpc.channel_ready_future(channel).result(timeout=30)

    def record(started: float, code: str) -> None:
        with lock:
            latencies.append(time.perf_counter() - started)
            codes[code] += 1

    open_streams = (
        [_OpenStream(stub, seconds, record) for _ in range(OPEN_LOOP_STREAMS)]
        if rate > 0 and mode.startswith("stream")
        else []
    )
    # No collections while measuring: an open-loop client holds every future it sent, and
    # its full collections (13 and 28 ms, measured with gc.callbacks) delayed the sends
    # due meanwhile, which then counted as the server's latency. The run is bounded.
    gc.collect()
    gc.freeze()
    gc.disable()
    print(READY, flush=True)
    # The start time is read before either clock: reading perf_counter first, then waiting
    # for the line, shifted each process's schedule by its own wait (by up to 110 ms), so
    # requests meant to be evenly spaced came two at once.
    start_at = float(sys.stdin.readline())
    start = time.perf_counter() + start_at - time.time()
    time.sleep(max(0.0, start - time.perf_counter()))
    stop_at = start + seconds

    def call(i: int, started: float) -> None:
        try:
            if mode == "health":
                health.Check(probe, timeout=10)
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
        # Open loop: request i of the whole schedule is due at start + i / rate, whether or
        # not earlier ones are done; this process sends every count-th, from its index on, so
        # the processes together send evenly spaced requests rather than bursts.
        # Unary calls go out as grpcio futures, answered by a callback: a thread per request
        # (a pool of 256) cost the client enough CPU on two shared cores to show up in the
        # server's tail. Batches for streams go round-robin into a few long-lived streams, as
        # a platform keeps them; a stream per request measured its setup (a thread for its
        # request iterator in grpcio) more than the server.
        def answered(due: float, future: Any) -> None:
            record(due, future.code().name)

        unary = health.Check if mode == "health" else stub.Check
        sent: list[Any] = []
        i = index
        while True:
            due = start + i / rate
            if due >= stop_at:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sends += 1
            late += time.perf_counter() - due >= LATE_SECONDS
            if mode.startswith("stream"):
                stream = open_streams[(i // count) % len(open_streams)]
                stream.send(pool[i % len(pool)], due)
            else:
                request = probe if mode == "health" else pool[i % len(pool)]
                future = unary.future(request, timeout=10)
                future.add_done_callback(partial(answered, due))
                sent.append(future)
            i += count
        for future in sent:
            future.exception()  # waits for the answer; its callback has recorded it
        for stream in open_streams:
            stream.close()
    channel.close()
    report = {"latencies": latencies, "codes": dict(codes), "sends": sends, "late": late}
    print(json.dumps(report), flush=True)
    # Exit only once every client has reported: a process tearing down (about 0.1 s of CPU)
    # while the others still wait for answers counted as the server's latency.
    sys.stdin.read()


# ---------------------------------------------------------------- orchestration


def while_measuring_server(server_pids: list[int], work: Callable[[], T]) -> tuple[T, float]:
    """What `work` returns, and the server processes' CPU share (cores) meanwhile."""
    before = sum(cpu_seconds(pid) for pid in server_pids)
    started = time.perf_counter()
    out = work()
    wall = time.perf_counter() - started
    return out, (sum(cpu_seconds(pid) for pid in server_pids) - before) / wall


def result_row(
    label: str,
    size: int,
    offered: str,
    rpcs_per_s: float,
    latencies_ms: npt.NDArray[np.float64],
    errors: dict[str, int],
    cpu: float,
    server_pids: list[int],
    late: float | None = None,
) -> dict[str, Any]:
    """`late`: the share of an open loop's sends that went out LATE_SECONDS or more
    behind their schedule. `within_slo`, the share of requests answered within
    SLO_SECONDS, tells what p99 does (it meets the objective where the share is 99%
    or more) and, unlike p99, adds up across runs."""
    pct = {
        p: float(np.percentile(latencies_ms, p)) if len(latencies_ms) else float("nan")
        for p in (50, 90, 99, 99.9)
    }
    return {
        "mode": label,
        "offered": offered,
        "rpcs_per_s": rpcs_per_s,
        "checks_per_s": rpcs_per_s * size,
        "p50": pct[50],
        "p90": pct[90],
        "p99": pct[99],
        "p999": pct[99.9],
        "within_slo": float(np.mean(latencies_ms <= SLO_SECONDS * 1000))
        if len(latencies_ms)
        else float("nan"),
        "errors": errors,
        "late": late,
        "server_cpu": cpu,
        "server_rss_mb": sum(rss_mb(pid) for pid in server_pids),
    }


class LoadClients:
    """`procs` client processes (see `client`) on one schedule: started, they send for
    `seconds`; `results` collects what each measured."""

    def __init__(
        self,
        mode: str,
        target: str,
        seconds: float,
        procs: int,
        callers: int,
        rate: float,
        seed: int = 1000,
    ) -> None:
        self._children = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    mode,
                    target,
                    str(seconds),
                    str(callers),
                    str(rate),
                    str(seed + k),
                    str(k),
                    str(procs),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for k in range(procs)
        ]
        for c in self._children:
            assert c.stdout is not None
            if c.stdout.readline().strip() != READY:
                raise RuntimeError(f"load client {c.pid} did not start")

    def start(self) -> None:
        """One start time for all, a moment ahead, so their schedules interleave."""
        start = f"{time.time() + 0.2}\n"
        for c in self._children:
            assert c.stdin is not None
            c.stdin.write(start)
            c.stdin.flush()

    def results(self) -> list[dict[str, Any]]:
        """Each process's latencies and status counts; the processes then wait for `close`."""
        outputs = []
        for c in self._children:
            assert c.stdout is not None
            line = c.stdout.readline()
            if not line:
                raise RuntimeError(f"load client {c.pid} ended without reporting")
            outputs.append(json.loads(line))
        return outputs

    def close(self) -> None:
        for c in self._children:
            c.communicate(timeout=120)  # closes their stdin: now they exit


def run_scenario(
    target: str,
    server_pids: list[int],
    mode: str,
    seconds: float,
    procs: int,
    concurrency: int,
    rate: float,
) -> dict[str, Any]:
    # Closed loop: keep what is in flight within the server's queue bound, as with h2load,
    # so the maximum is measured rather than the shedding (24 callers of 1,000 hashes held
    # more than the 20,000 queries the server queues).
    callers = max(1, min(concurrency, MAX_IN_FLIGHT_QUERIES // (procs * max(MODES[mode], 1))))
    load = LoadClients(mode, target, seconds, procs, callers, rate)

    def clients() -> list[dict[str, Any]]:
        load.start()
        return load.results()

    outputs, cpu = while_measuring_server(server_pids, clients)
    load.close()
    latencies = np.sort(np.concatenate([o["latencies"] for o in outputs])) * 1000
    codes: Counter[str] = Counter()
    for o in outputs:
        codes.update(o["codes"])
    sends = sum(o["sends"] for o in outputs)
    return result_row(
        mode,
        MODES[mode],
        "max (closed loop)" if rate <= 0 else f"{rate:,.0f} RPC/s (open loop, Python)",
        codes.get("OK", 0) / seconds,
        latencies,
        {k: v for k, v in codes.items() if k != "OK"},
        cpu,
        server_pids,
        sum(o["late"] for o in outputs) / sends if rate > 0 and sends else None,
    )


GRPC_PATHS = {
    mode: "/grpc.health.v1.Health/Check" if mode == "health" else "/hashmatch.v1.MatchService/Check"
    for mode in MODES
    if not mode.startswith("stream")
}


def server_samples(metrics_urls: list[str]) -> list[Any]:
    """Every sample the server processes export at /metrics."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    samples = []
    for url in metrics_urls:
        with urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
        for family in text_string_to_metric_families(text):
            samples += family.samples
    return samples


def rpc_counts(metrics_urls: list[str]) -> Counter[str]:
    """The server processes' own count of MatchService.Check RPCs by status code."""
    counts: Counter[str] = Counter()
    for sample in server_samples(metrics_urls):
        if sample.name == "hashmatch_rpcs_total" and sample.labels["method"] == "Check":
            counts[sample.labels["code"]] += int(sample.value)
    return counts


def checks_within_slo(metrics_urls: list[str]) -> npt.NDArray[np.float64]:
    """Check RPCs the server's handlers finished within SLO_SECONDS, and all of them
    (cumulative): from its latency histogram, which times a call from the handler's
    start to its answer, so the clients' share of the cores and the transport are left
    out where the client-side percentiles include them."""
    counts = np.zeros(2)
    for sample in server_samples(metrics_urls):
        if sample.name == "hashmatch_rpc_duration_seconds_bucket" and (
            sample.labels["method"] == "Check"
        ):
            le = float(sample.labels["le"])
            counts += [sample.value * (le == SLO_SECONDS), sample.value * (le == float("inf"))]
    return counts


def h2load_scenario(
    target: str,
    server_pids: list[int],
    metrics_urls: list[str],
    mode: str,
    seconds: float,
    connections: int,
    streams: int,
) -> dict[str, Any]:
    """The scenario at its maximum, driven by h2load, nghttp2's load generator in C, so
    the clients take little of the cores the server needs. It sends one message over
    and over (the Python driver varies them). Throughput and statuses come from the
    server's own metrics; latencies from h2load's log, which can't tell an error from an
    answer."""
    if shutil.which("h2load") is None:
        sys.exit("h2load not found: apt-get install nghttp2-client")
    size = MODES[mode]
    # Keep what is in flight within the server's queue bound, so the maximum is measured
    # rather than the shedding.
    streams = max(1, min(streams, MAX_IN_FLIGHT_QUERIES // (connections * max(size, 1))))
    request = check_request(size, np.random.default_rng(7), is_packed(mode))
    message = request.SerializeToString() if size else b""
    with tempfile.TemporaryDirectory(prefix="hashmatch-h2load-") as tmp:
        body, log = Path(tmp) / "body", Path(tmp) / "log"
        body.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
        command = [
            "h2load",
            f"--duration={seconds:g}",
            f"--clients={connections}",
            f"--max-concurrent-streams={streams}",
            f"--data={body}",
            "--header=content-type: application/grpc",
            "--header=te: trailers",
            f"--log-file={log}",
            f"http://{target}{GRPC_PATHS[mode]}",
        ]
        before = rpc_counts(metrics_urls)
        _, cpu = while_measuring_server(
            server_pids,
            lambda: subprocess.run(command, check=True, capture_output=True, timeout=seconds + 60),
        )
        after = rpc_counts(metrics_urls)
        rows = np.loadtxt(log, dtype=np.int64, ndmin=2)
    ok_http = rows[rows[:, 1] == 200]
    codes = after - before
    errors: dict[str, int] = {k: v for k, v in codes.items() if k != "OK"}
    if len(rows) > len(ok_http):
        errors["HTTP non-200"] = len(rows) - len(ok_http)
    # grpcio's health service is not in hashmatch's metrics: count its HTTP answers.
    done = len(ok_http) if mode == "health" else codes["OK"]
    return result_row(
        f"{mode} (h2load)",
        size,
        "max (closed loop)",
        done / seconds,
        np.sort(ok_http[:, 2]) / 1000,
        errors,
        cpu,
        server_pids,
    )


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
    ax.set_title(textwrap.fill(title, 80), fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", default="1M", help="list size, e.g. 1M or 10M")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="length of each maximum-throughput scenario"
    )
    parser.add_argument(
        "--open-seconds",
        type=float,
        default=30.0,
        help="length of each open-loop scenario: at half load, 10 s of 1,000-hash batches "
        "is 550 requests, whose p99 is the sixth-slowest",
    )
    parser.add_argument("--procs", type=int, default=3, help="client processes")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="closed-loop callers per process"
    )
    parser.add_argument("--modes", help="comma-separated; default: every mode the driver has")
    parser.add_argument(
        "--driver",
        choices=("python", "h2load"),
        default="python",
        help="python: grpcio client processes; h2load: nghttp2's C load generator",
    )
    parser.add_argument("--connections", type=int, default=4, help="h2load connections")
    parser.add_argument(
        "--streams", type=int, default=8, help="h2load requests in flight per connection"
    )
    parser.add_argument(
        "--server-processes", type=int, default=1, help="serve --processes (one GIL each)"
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder for the table and plot"
    )
    parser.add_argument("--client", nargs=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        mode, target, seconds, concurrency, rate, seed, index, count = args.client
        client(
            mode,
            target,
            float(seconds),
            int(concurrency),
            float(rate),
            int(seed),
            int(index),
            int(count),
        )
        return

    from hashmatch.serve_process import free_ports, running_server

    n = parse_n(args.n)
    default_modes = GRPC_PATHS if args.driver == "h2load" else MODES
    modes = (args.modes or ",".join(default_modes)).split(",")
    metrics_port = free_ports(args.server_processes)
    metrics_urls = [
        f"http://127.0.0.1:{metrics_port + k}/metrics" for k in range(args.server_processes)
    ]

    def scenario(target: str, pids: list[int], mode: str, rate: float) -> dict[str, Any]:
        # h2load's --rps fires every connection's requests at the same instant (measured:
        # 4 connections at 4/s sent 4 batches at once every 250 ms), which measures bursts,
        # not an offered load; the Python clients' open loop spaces requests evenly.
        if args.driver == "h2load" and rate <= 0:
            return h2load_scenario(
                target, pids, metrics_urls, mode, args.seconds, args.connections, args.streams
            )
        seconds = args.seconds if rate <= 0 else args.open_seconds
        return run_scenario(target, pids, mode, seconds, args.procs, args.concurrency, rate)

    def measured(target: str, pids: list[int], mode: str, rate: float) -> dict[str, Any]:
        before = checks_within_slo(metrics_urls)
        row = scenario(target, pids, mode, rate)
        within, calls = checks_within_slo(metrics_urls) - before
        # Streams are one call each, and the health Check is grpcio's, not in the histogram.
        row["server_within_slo"] = within / calls if mode in GRPC_PATHS and calls else None
        return row

    args.results.mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hashmatch-load-") as tmp:
        print(f"building a snapshot of {n:,} PDQ hashes ...", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, str(Path(__file__).with_name("synthetic.py")), str(n), "256", tmp],
            check=True,
        )
        with running_server(
            Path(tmp),
            "--no-auth",
            "--metrics-port",
            str(metrics_port),
            "--processes",
            str(args.server_processes),
            start_timeout=300,
        ) as server:
            pids = server.pids()
            for mode in modes:
                print(f"{mode}: closed loop ...", file=sys.stderr, flush=True)
                best = measured(server.address, pids, mode, 0)
                rows.append(best)
                half = best["rpcs_per_s"] / 2
                print(f"{mode}: open loop at {half:,.0f} RPC/s ...", file=sys.stderr, flush=True)
                rows.append(measured(server.address, pids, mode, half))
            peak = sum(rss_mb(pid, "VmHWM") for pid in pids)
    clients = (
        f"h2load ({args.connections} connections x {args.streams} streams)"
        if args.driver == "h2load"
        else f"{args.procs} client processes"
    )
    if args.server_processes > 1:
        clients += f"; {args.server_processes} server processes"
    title = (
        f"hashmatch gRPC load, {n / 1e6:g}M PDQ list, {date.today()}, "
        f"{os.cpu_count()} cores shared by server and {clients}"
    )
    late_ms = f"{LATE_SECONDS * 1000:g} ms"
    slo_ms = f"{SLO_SECONDS * 1000:g} ms"
    lines = [
        f"### {title}",
        "",
        "| scenario | offered load | hash checks/s | RPCs/s | images/s | p50 ms | p90 ms "
        "| p99 ms | p99.9 ms "
        f"| clients ≤ {slo_ms} | server handler ≤ {slo_ms} | sends ≥ {late_ms} late | errors "
        "| server CPU | server RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items())) or "0"
        slo = "—" if r["server_within_slo"] is None else f"{r['server_within_slo']:.2%}"
        late = "—" if r["late"] is None else f"{r['late']:.2%}"
        images = images_per_s(r["mode"], r["checks_per_s"])
        lines.append(
            f"| {r['mode']} | {r['offered']} | {r['checks_per_s']:,.0f} | {r['rpcs_per_s']:,.0f} "
            f"| {'—' if images is None else f'{images:,.0f}'} "
            f"| {r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} | {r['p999']:.1f} "
            f"| {r['within_slo']:.2%} | {slo} "
            f"| {late} | {errors} | {r['server_cpu'] * 100:.0f}% | {r['server_rss_mb']:,.0f} |"
        )
    lines += [
        "",
        "Latency percentiles are the clients', from each request's send (open loop: its "
        f"scheduled send), and so is the share of requests answered within {slo_ms} (p99 "
        f"is {slo_ms} or less where that share is 99% or more). The server's column is the "
        f"share of Check calls its handlers answered within {slo_ms}, from its own latency "
        "histogram. "
        f"Images/s: robust modes only, {ROBUST_PROBES} hashes per image (a default check "
        "of one image with pdq,phash sends 14-16). "
        f"Sends late are the open loop's requests that the client processes sent {late_ms} "
        "or more behind schedule: where they are many, the clients could not offer that "
        "load, and the percentiles are theirs more than the server's.",
        "",
        f"Server peak RSS {peak:,.0f} MB. Command: "
        f"`.venv/bin/python load_tests/grpc_load.py {shlex.join(sys.argv[1:])}`",
    ]
    subset = "" if set(modes) == set(default_modes) else "_" + "-".join(modes)
    driver = "_h2load" if args.driver == "h2load" else ""
    servers = f"_x{args.server_processes}" if args.server_processes > 1 else ""
    stem = args.results / f"grpc_load_{args.n}{driver}{servers}{subset}"
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(rows, stem.with_suffix(".png"), title)
    print("\n".join(lines))
    print(f"\nwrote {stem.with_suffix('.md')} and {stem.with_suffix('.png')}")


if __name__ == "__main__":
    main()
