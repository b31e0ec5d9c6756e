"""`hashmatch serve`: run MatchService on a snapshot root until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click
from prometheus_client import start_http_server

from indexer.snapshot import SnapshotError
from service.batcher import DEFAULT_MAX_QUEUED
from service.logs import configure as configure_logs
from service.server import build_server
from service.snapshots import SnapshotHolder

log = logging.getLogger("hashmatch.serve")


@click.command("serve")
@click.option(
    "--index",
    "index_root",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Snapshot root written by `hashmatch index build --out`.",
)
@click.option("--listen", default="127.0.0.1:50051", show_default=True, metavar="HOST:PORT")
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve Prometheus metrics at http://127.0.0.1:PORT/metrics.",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option(
    "--reload-interval",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds between checks for a new snapshot.",
)
@click.option(
    "--max-queued-queries",
    type=int,
    default=DEFAULT_MAX_QUEUED,
    show_default=True,
    help="Queries that may wait for the engine; past it, RESOURCE_EXHAUSTED.",
)
@click.option("--max-concurrent-rpcs", type=int, default=1024, show_default=True)
@click.option(
    "--log-format",
    type=click.Choice(["json", "text"]),
    default="json",
    show_default=True,
    help="Structured JSON lines (with request ids) or plain text.",
)
@click.option(
    "--grace",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds in-flight RPCs get to finish on shutdown.",
)
def serve_command(
    index_root: Path,
    listen: str,
    metrics_port: int | None,
    metrics_host: str,
    reload_interval: float,
    max_queued_queries: int,
    max_concurrent_rpcs: int,
    log_format: str,
    grace: float,
) -> None:
    """Serve MatchService from the snapshots under --index."""
    configure_logs(log_format)
    try:
        holder = SnapshotHolder(index_root)
    except SnapshotError as exc:
        raise click.ClickException(f"cannot serve: {exc}") from None
    try:
        server, port = build_server(
            holder,
            listen,
            max_queued_queries=max_queued_queries,
            max_concurrent_rpcs=max_concurrent_rpcs,
        )
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    if metrics_port is not None:
        start_http_server(metrics_port, addr=metrics_host)
        log.info("metrics at http://%s:%d/metrics", metrics_host, metrics_port)
    stop = threading.Event()
    holder.watch(reload_interval, stop)
    server.start()
    host = listen.rsplit(":", 1)[0]
    log.info(
        "serving MatchService on %s:%d (snapshot version %d)", host, port, holder.matcher.version
    )

    def shutdown(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: draining for up to %.1fs", signum, grace)
        stop.set()
        server.stop(grace)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    server.wait_for_termination()
    log.info("stopped")
