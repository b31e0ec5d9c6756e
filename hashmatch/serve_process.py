"""Running `hashmatch serve` as a child process on a port the OS picks.

For the demo, the tests and the load tests: the server is the real command,
started exactly as an operator starts it, and stopped with SIGTERM.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

LISTENING = re.compile(r"serving MatchService on (\S+):(\d+)")
HTTP_LISTENING = re.compile(r"serving HTTP on (\S+):(\d+)")


def free_ports(count: int = 1) -> int:
    """The first of `count` consecutive loopback ports that are free now (`serve
    --processes N` puts helper k's metrics on PORT+k)."""
    while True:
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            try:
                for k in range(1, count):
                    with socket.socket() as s:
                        s.bind(("127.0.0.1", port + k))
            except (OSError, OverflowError):  # taken, or past port 65535
                continue
            return port


@dataclass
class ServerProcess:
    address: str
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    @property
    def http_address(self) -> str:
        """Where `--http-listen` bound (logged before the gRPC line `running_server` waits for)."""
        for line in self.log:
            if m := HTTP_LISTENING.search(line):
                return f"{m[1]}:{m[2]}"
        raise RuntimeError("the server was not started with --http-listen")

    def pids(self) -> list[int]:
        """The server's process and its helpers (`serve --processes`), from /proc."""
        found = [self.process.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == self.process.pid:
                found.append(int(stat.parent.name))
        return found


@contextmanager
def running_server(
    index: Path, *args: str, echo: Callable[[str], None] | None = None, start_timeout: float = 60
) -> Iterator[ServerProcess]:
    """Start `hashmatch serve --index INDEX --listen 127.0.0.1:0 ARGS...`; stop it on exit."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hashmatch",
            "serve",
            "--index",
            str(index),
            "--listen",
            "127.0.0.1:0",
            *args,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    address: list[str] = []
    ready = threading.Event()

    def read_log() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line.rstrip())
            if echo is not None:
                echo(line.rstrip())
            if m := LISTENING.search(line):
                address.append(f"{m[1]}:{m[2]}")
                ready.set()
        ready.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        if not ready.wait(start_timeout) or not address:
            proc.kill()
            reader.join(5)
            raise RuntimeError("hashmatch serve did not start:\n" + "\n".join(log))
        yield ServerProcess(address[0], proc, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(5)
