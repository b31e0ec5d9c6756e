"""`hashmatch serve`: run MatchService on a snapshot root until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click
from prometheus_client import start_http_server

from hashmatch.submission import MAX_CASE_HASHES
from indexer.build import build_snapshot
from indexer.snapshot import SnapshotError, current_version
from indexer.store import STORE_URL_ENV, Store, StoreUnavailable, StoreURLError, open_store
from service.anomaly import AnomalyWatch
from service.audit import MAX_QUEUED, AuditLog
from service.auth import DEFAULT_ANONYMOUS_CASE_HASHES, DEFAULT_ANONYMOUS_DAILY_HASHES, Gate
from service.batcher import DEFAULT_MAX_QUEUED, Batcher
from service.feedback import DEFAULT_REPORTS_PER_MINUTE, FeedbackSettings
from service.follower import ChangeFollower, Compactor
from service.guards import Guards
from service.http.app import build_app
from service.http.face import Face
from service.http.server import HttpServer
from service.list_policy import PolicyWatch
from service.logs import configure as configure_logs
from service.portal_key import PortalKeyRefused, read_portal_key
from service.probing import ProbeWatch
from service.processes import Helpers, announce_ready
from service.readiness import DEFAULT_MAX_FOLLOWER_STALL, Readiness
from service.server import Feed, build_server
from service.snapshots import SnapshotHolder
from service.tls import TLS, is_loopback
from service.warmup import warm_up

log = logging.getLogger("hashmatch.serve")


def _portal_key(
    path: Path | None, anonymous_submits: float | None, http_listen: str | None, no_auth: bool
) -> str | None:
    """The page's key from --portal-key-file, if given and it can serve the page."""
    if path is None:
        return None
    if anonymous_submits is not None:
        raise click.UsageError(
            "--portal-key-file and --anonymous-submit are two ways to take victims' cases "
            "without a key of their own: give one"
        )
    if no_auth:
        raise click.UsageError("--portal-key-file needs API keys: give --store, not --no-auth")
    if http_listen is None:
        raise click.UsageError("--portal-key-file serves the victims' page: give --http-listen")
    try:
        return read_portal_key(path)
    except PortalKeyRefused as exc:
        raise click.UsageError(f"--portal-key-file: {exc}") from None


@click.command("serve")
@click.option(
    "--index",
    "index_root",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Snapshot root written by `hashmatch index build --out`.",
)
@click.option(
    "--store",
    "store_url",
    default=None,
    envvar=STORE_URL_ENV,
    help="Store URL (sqlite:///PATH or postgresql://...): takes submissions and list uploads, "
    "serves sync pulls, and follows the store's change log so changes match within seconds. "
    f"${STORE_URL_ENV} keeps a password out of the process list.",
)
@click.option(
    "--poll-interval",
    type=float,
    default=0.2,
    show_default=True,
    help="Seconds between reads of the store's change log.",
)
@click.option(
    "--compact-at",
    type=int,
    default=50_000,
    show_default=True,
    help="Compact the in-memory delta into a new snapshot once it holds this many changes.",
)
@click.option(
    "--compact-after",
    type=float,
    default=600.0,
    show_default=True,
    help="... or once its oldest change is this many seconds old.",
)
@click.option(
    "--compact/--no-compact",
    default=True,
    show_default=True,
    help="Run compactions (give --no-compact to all but one server sharing an --index).",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve without API keys: every caller may do everything. Only on a loopback address.",
)
@click.option(
    "--default-key-rate",
    type=float,
    default=50_000.0,
    show_default=True,
    help="Hash checks (or submitted hashes) per second for a key with no rate of its own.",
)
@click.option(
    "--anonymous-submit",
    "anonymous_submits",
    type=float,
    default=None,
    metavar="CASES_PER_MINUTE",
    help="Let victims submit, withdraw and ask about cases without a key, each address at "
    "most this often (an IPv6 address counts as its /64).",
)
@click.option(
    "--portal-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="Serve the victims' page on --http-listen with this key (a file holding what `keys "
    "create --role submit --list victim-cases` printed): calls without a key are made with "
    "it, charged to its rate and to each address's limits (--portal-address-rate, "
    "--anonymous-case-hashes, --anonymous-daily-hashes). A key that may do more is refused.",
)
@click.option(
    "--portal-address-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=6.0,
    show_default=True,
    metavar="CASES_PER_MINUTE",
    help="With --portal-key-file: each address's calls a minute (cases, status checks, "
    "withdrawals), as --anonymous-submit sets them without a key.",
)
@click.option(
    "--anonymous-case-hashes",
    type=click.IntRange(1, MAX_CASE_HASHES),
    default=DEFAULT_ANONYMOUS_CASE_HASHES,
    show_default=True,
    help="The most hashes a case sent without a key (or through --portal-key-file) may hold.",
)
@click.option(
    "--anonymous-daily-hashes",
    type=click.IntRange(1),
    default=DEFAULT_ANONYMOUS_DAILY_HASHES,
    show_default=True,
    help="The most hashes each address may submit without a key (or through "
    "--portal-key-file) in 24 hours (each hash "
    "can carry some 255 bits of anything; this bounds that channel).",
)
@click.option(
    "--max-key-staleness",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="While the store is unreachable, API keys loaded last stay in use; past this, the "
    "server reports not ready and, with --stale-keys refuse, refuses calls.",
)
@click.option(
    "--stale-keys",
    type=click.Choice(["refuse", "serve"]),
    default="refuse",
    show_default=True,
    help="Past --max-key-staleness: refuse every keyed call with UNAVAILABLE (strict: a key "
    "revoked during the outage stops working), or keep answering with the last keys.",
)
@click.option(
    "--max-follower-stall",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_MAX_FOLLOWER_STALL,
    show_default=True,
    metavar="SECONDS",
    help="Report not ready once the change log has not been applied for this long.",
)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--tls-client-ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Require client certificates signed by this CA (mutual TLS).",
)
@click.option(
    "--insecure-plaintext",
    is_flag=True,
    help="Serve API keys without TLS on a non-loopback address: keys and withdrawal secrets "
    "then cross the network in the clear (only behind a TLS-terminating proxy).",
)
@click.option(
    "--reflection",
    is_flag=True,
    help="Serve gRPC server reflection: the public schema, to anyone who can connect.",
)
@click.option(
    "--flag-min-matches",
    type=int,
    default=100,
    show_default=True,
    help="Flag an entry with at least this many matches in a window ...",
)
@click.option(
    "--flag-factor",
    type=float,
    default=20.0,
    show_default=True,
    help="... and this many times the mean of its list's other matched entries.",
)
@click.option("--flag-window", type=float, default=600.0, show_default=True, help="Seconds.")
@click.option(
    "--feedback-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_REPORTS_PER_MINUTE,
    show_default=True,
    metavar="REPORTS_PER_MINUTE",
    help="Match feedback reports each key may send a minute (apart from its hash rate).",
)
@click.option(
    "--share-feedback",
    is_flag=True,
    help="Let upstream servers whose lists were pulled here pull the feedback counts on "
    "those entries (FeedbackService.PullFeedback, sync-read keys; no tenant names).",
)
@click.option(
    "--audit-queue",
    type=click.IntRange(1),
    default=MAX_QUEUED,
    show_default=True,
    help="Audit events held for the writer; past it, requests wait for it (none are dropped).",
)
@click.option("--listen", default="127.0.0.1:50051", show_default=True, metavar="HOST:PORT")
@click.option(
    "--http-listen",
    default=None,
    metavar="HOST:PORT",
    help="Also serve HTTP/JSON here: HMA 2.0's hash routes and the JSON mirror of the gRPC "
    "API, with the same keys, limits and TLS.",
)
@click.option(
    "--http-trusted-proxy",
    "http_trusted_proxies",
    multiple=True,
    metavar="ADDRESS_OR_CIDR",
    help="A proxy in front of the HTTP listener whose X-Forwarded-For is believed (per-address "
    "limits then count the forwarded address); repeatable. None by default.",
)
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
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes on the one port (one GIL each; each holds its own copy of the "
    "snapshot, and rate limits are per process).",
)
@click.option(
    "--pin-workers/--no-pin-workers",
    default=True,
    show_default=True,
    help="Keep each engine worker thread on a CPU of its own (one per CPU this process "
    "may use); after idle cores, the scheduler may otherwise run them on one.",
)
@click.option("--helper", is_flag=True, hidden=True)
def serve_command(
    index_root: Path,
    store_url: str | None,
    poll_interval: float,
    compact_at: int,
    compact_after: float,
    compact: bool,
    no_auth: bool,
    default_key_rate: float,
    anonymous_submits: float | None,
    portal_key_file: Path | None,
    portal_address_rate: float,
    anonymous_case_hashes: int,
    anonymous_daily_hashes: int,
    max_key_staleness: float,
    stale_keys: str,
    max_follower_stall: float,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    insecure_plaintext: bool,
    reflection: bool,
    flag_min_matches: int,
    flag_factor: float,
    flag_window: float,
    feedback_rate: float,
    share_feedback: bool,
    audit_queue: int,
    listen: str,
    http_listen: str | None,
    http_trusted_proxies: tuple[str, ...],
    metrics_port: int | None,
    metrics_host: str,
    reload_interval: float,
    max_queued_queries: int,
    max_concurrent_rpcs: int,
    log_format: str,
    grace: float,
    processes: int,
    pin_workers: bool,
    helper: bool,
) -> None:
    """Serve MatchService from the snapshots under --index; with --store, also
    SubmissionService and SyncService, with changes matched within seconds."""
    configure_logs(log_format)
    host = listen.rsplit(":", 1)[0]
    if no_auth and not is_loopback(host):
        raise click.UsageError(f"--no-auth only on a loopback address, not {host}")
    http_host = http_listen.rsplit(":", 1)[0] if http_listen is not None else None
    if no_auth and http_host is not None and not is_loopback(http_host):
        raise click.UsageError(f"--no-auth only on a loopback address, not {http_host}")
    if not no_auth and store_url is None:
        raise click.UsageError(
            "API keys live in the store: give --store URL (or --no-auth on a loopback address)"
        )
    portal_key = _portal_key(portal_key_file, anonymous_submits, http_listen, no_auth)
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_client_ca is not None and tls_cert is None:
        raise click.UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    tls = TLS(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None
    for listening in (host, http_host):
        plain = tls is None and not no_auth and not insecure_plaintext
        if plain and listening is not None and not is_loopback(listening):
            raise click.UsageError(
                f"refusing to take API keys in plaintext on {listening}: give --tls-cert and "
                "--tls-key, or --insecure-plaintext if a TLS-terminating proxy is in front"
            )
    feed_stores: tuple[Store, Store] | None = None
    if store_url is not None:
        try:
            feed_stores = (open_store(store_url), open_store(store_url))
        except (StoreURLError, FileNotFoundError, StoreUnavailable) as exc:
            raise click.ClickException(str(exc)) from None
        if current_version(index_root) is None:
            log.info("no snapshot under %s yet: building one from the store", index_root)
            build_snapshot(feed_stores[1], index_root)
    try:
        holder = SnapshotHolder(index_root)
    except SnapshotError as exc:
        raise click.ClickException(f"cannot serve: {exc}") from None
    stop = threading.Event()
    guard_store = None if no_auth or store_url is None else open_store(store_url)
    try:
        gate = Gate(
            guard_store,
            default_rate=default_key_rate,
            anonymous_submits_per_minute=portal_address_rate if portal_key else anonymous_submits,
            anonymous_case_hashes=anonymous_case_hashes,
            anonymous_daily_hashes=anonymous_daily_hashes,
            max_key_staleness=max_key_staleness,
            refuse_stale_keys=stale_keys == "refuse",
            portal_key=portal_key,
        )
    except PortalKeyRefused as exc:
        raise click.UsageError(f"--portal-key-file: {exc}") from None
    record_store = None if store_url is None else open_store(store_url)
    audit = AuditLog(record_store, max_queued=audit_queue)
    anomaly = AnomalyWatch(
        record_store,
        audit,
        window=flag_window,
        min_matches=flag_min_matches,
        factor=flag_factor,
    )
    policies = PolicyWatch(record_store)
    guards = Guards(gate, audit, anomaly, ProbeWatch(gate, audit), policies)
    feed = None
    if feed_stores is not None and store_url is not None:
        compactor = (
            Compactor(store_url, index_root, holder, compact_at, compact_after) if compact else None
        )
        follower = ChangeFollower(
            feed_stores[1], holder, poll_interval, compactor, learn=policies.learn
        )
        follower.follow_once()  # serve the changes made since the snapshot from the start
        follower.start(stop)
        feed = Feed(
            feed_stores[0],
            feed_stores[1],
            follower,
            FeedbackSettings(feedback_rate, share_feedback),
        )
    readiness = Readiness(gate, feed.follower if feed else None, max_follower_stall)
    batcher = Batcher(lambda: holder.matcher, max_queued=max_queued_queries, pin=pin_workers)
    try:
        server, port = build_server(
            holder,
            listen,
            max_concurrent_rpcs=max_concurrent_rpcs,
            feed=feed,
            guards=guards,
            tls=tls,
            readiness=readiness,
            reflection=reflection,
            batcher=batcher,
        )
        face = None
        if http_listen is not None:
            lookups = None if store_url is None else open_store(store_url)
            face = Face(batcher, guards, holder, feed, lookups)
            http = HttpServer(
                build_app(
                    face,
                    tls is not None,
                    portal=anonymous_submits is not None or portal_key is not None,
                ),
                http_listen,
                tls,
                http_trusted_proxies,
            )
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    if metrics_port is not None:
        start_http_server(metrics_port, addr=metrics_host)
        log.info("metrics at http://%s:%d/metrics", metrics_host, metrics_port)
    warm_up(holder.matcher.base)
    holder.watch(reload_interval, stop)
    if gate.enabled:
        gate.watch(stop)
    readiness.watch(stop)
    audit.start()
    anomaly.start(stop)
    policies.start(stop)
    server.start()
    if face is not None:
        http.start()
        face.ready.set()
        log.info(
            "serving HTTP on %s:%d (%s)",
            http_host,
            http.port,
            "plaintext" if tls is None else ("mutual TLS" if tls.client_ca else "TLS"),
        )
    if helper:
        announce_ready()
    helpers = None
    if processes > 1:
        extra = () if face is None else ("--http-listen", f"{http_host}:{http.port}")
        try:
            helpers = Helpers.start(processes - 1, host, port, metrics_port, store_url, extra)
        except RuntimeError as exc:
            server.stop(0)
            raise click.ClickException(str(exc)) from None
    log.info(
        "serving MatchService on %s:%d (snapshot version %d; %s%s)",
        host,
        port,
        holder.matcher.version,
        "plaintext" if tls is None else ("mutual TLS" if tls.client_ca else "TLS"),
        ", no authentication" if no_auth else ", API keys required",
    )

    def shutdown(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: draining for up to %.1fs", signum, grace)
        stop.set()
        if helpers is not None:
            threading.Thread(target=helpers.stop, args=(grace,), daemon=True).start()
        if face is not None:
            face.ready.clear()
            threading.Thread(target=http.stop, args=(grace,), daemon=True).start()
        server.stop(grace)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    server.wait_for_termination()
    audit.close()  # after the drain: the events of RPCs that finished in the grace period
    if helpers is not None:
        helpers.stop(grace)
    log.info("stopped")
