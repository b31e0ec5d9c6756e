"""More server processes on one port, because one Python process is one GIL.

Measured with a C load generator (h2load) on the 2-core machine: one process
answers about 1,950 single-hash Checks a second using 1.2 cores, whatever its
thread count (4, 8 or 64 workers); two processes on the same port answer
about 3,600. The kernel spreads connections over processes bound with
SO_REUSEPORT, which grpcio sets on Linux.

The first process is the primary: it alone compacts. Helpers are the same
`serve` command with a later `--listen` naming the primary's bound port,
`--no-compact`, the next metrics port, and `--helper`, and the store URL in
$HASHMATCH_STORE_URL rather than on a command line anyone can read; each loads
the snapshot, follows the change log and checks keys on its own. Per-key rate
limits and the probing and anomaly watches are kept per process.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Sequence

from indexer.store import store_url_env

log = logging.getLogger("hashmatch.serve")
READY = "ready"


def announce_ready() -> None:
    """A helper tells its primary it is serving."""
    print(READY, flush=True)


class Helpers:
    def __init__(self, processes: list[subprocess.Popen[str]]) -> None:
        self._processes = processes

    @classmethod
    def start(
        cls,
        count: int,
        host: str,
        port: int,
        metrics_port: int | None,
        store_url: str | None = None,
        more: Sequence[str] = (),
        timeout: float = 120,
    ) -> Helpers:
        """Start `count` helpers of this `serve` command and wait until each serves; the
        store URL goes to them in their environment, never on their command line; `more`
        are further options that override the primary's (its bound HTTP port)."""
        args = _without_store(sys.argv[1:])
        env = None if store_url is None else store_url_env(store_url)
        processes = []
        for k in range(1, count + 1):
            extra = ["--listen", f"{host}:{port}", "--processes", "1", "--no-compact", "--helper"]
            extra += more
            if metrics_port is not None:
                extra += ["--metrics-port", str(metrics_port + k)]
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "hashmatch", *args, *extra],
                    stdout=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            )
        helpers = cls(processes)
        for p in processes:
            if not helpers._wait_ready(p, timeout):
                helpers.stop(0)
                raise RuntimeError(f"helper server process {p.pid} did not start")
        log.info("%d helper processes serving on port %d", count, port)
        return helpers

    @staticmethod
    def _wait_ready(process: subprocess.Popen[str], timeout: float) -> bool:
        line: list[str] = []

        def read() -> None:
            assert process.stdout is not None
            line.append(process.stdout.readline())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        return bool(line) and line[0].strip() == READY

    def stop(self, grace: float) -> None:
        for p in self._processes:
            if p.poll() is None:
                p.terminate()
        for p in self._processes:
            try:
                p.wait(grace + 5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _without_store(argv: Sequence[str]) -> list[str]:
    """`argv` without its --store URL (a URL may hold a password)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--store":
            skip = True
        elif not arg.startswith("--store="):
            kept.append(arg)
    return kept
