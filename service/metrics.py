"""Prometheus metrics of the service (process CPU and memory come with the default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RPCS = Counter(
    "hashmatch_rpcs_total", "RPCs handled, by method and status code", ["method", "code"]
)
# Boundaries at 15 and 20 ms: "p99 within 20 ms" is the latency objective
# (load_tests/grpc_load.py reads the share of calls within it), and a histogram can only
# tell that at a boundary.
SLO_SECONDS = 0.02
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    SLO_SECONDS,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)
RPC_SECONDS = Histogram(
    "hashmatch_rpc_duration_seconds",
    "RPC latency by method",
    ["method"],
    buckets=LATENCY_BUCKETS,
)
QUERIES = Counter("hashmatch_queries_total", "Hashes checked, by signal", ["signal"])
MATCHES = Counter(
    "hashmatch_matches_total", "Matches returned, by signal and list", ["signal", "list"]
)
SUPPRESSED = Counter(
    "hashmatch_suppressed_total",
    "Queries whose matches a negative list suppressed, by signal and negative list",
    ["signal", "list"],
)
SNAPSHOT_VERSION = Gauge("hashmatch_snapshot_version", "Version of the snapshot in service")
SNAPSHOT_ENTRIES = Gauge(
    "hashmatch_snapshot_entries", "Entries in the snapshot, by signal", ["signal"]
)
SNAPSHOT_LOADED = Gauge(
    "hashmatch_snapshot_loaded_timestamp_seconds", "When the snapshot in service was loaded"
)
SNAPSHOT_REFUSED = Counter(
    "hashmatch_snapshot_refused_total", "Snapshots refused at load (bad checksum, truncated, ...)"
)
SNAPSHOT_AGE = Gauge(
    "hashmatch_snapshot_age_seconds", "Seconds since the snapshot in service was built"
)
REJECTED = Counter(
    "hashmatch_rejected_total", "Requests refused before search, by reason", ["reason"]
)
QUEUED = Gauge("hashmatch_queued_queries", "Queries waiting for an engine worker")
DELTA_ENTRIES = Gauge(
    "hashmatch_delta_entries",
    "Changes since the snapshot in service, held in memory: adds and tombstones",
    ["kind"],
)
APPLIED_SEQ = Gauge(
    "hashmatch_applied_change_seq", "Last change log sequence number the matcher reflects"
)
FRESHNESS_LAG = Histogram(
    "hashmatch_freshness_lag_seconds",
    "From a change's commit in the store to the matcher reflecting it (oldest of each batch)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SKIPPED_CHANGES = Counter(
    "hashmatch_skipped_changes_total",
    "Change log lines the matcher could not use (unknown signal, hash of the wrong length);"
    " each is logged with its reason",
)
COMPACTIONS = Counter(
    "hashmatch_compactions_total", "Background snapshot compactions, by outcome", ["outcome"]
)
AUDIT_WAITS = Counter(
    "hashmatch_audit_waits_total", "Requests held back because the audit log writer fell behind"
)
AUDIT_REFUSED = Counter(
    "hashmatch_audit_refused_total",
    "Requests failed as overloaded because the audit log stayed full (none are dropped)",
)
FLAGGED = Counter(
    "hashmatch_flagged_entries_total",
    "Entries flagged for matching far above their list's norm, by list and state",
    ["list", "state"],
)
FEEDBACK = Counter(
    "hashmatch_feedback_reports_total",
    "Match feedback recorded, by list and verdict (quarantined: reports that quarantined)",
    ["list", "verdict"],
)
PROBING = Counter(
    "hashmatch_probing_throttled_total", "Keys throttled for probing the list around one point"
)
STORE_UP = Gauge(
    "hashmatch_store_up", "1 if the change follower's last read of the store succeeded, else 0"
)
CHANGE_LOG_READ_AGE = Gauge(
    "hashmatch_change_log_read_age_seconds",
    "Seconds since the change follower last read the store's change log and applied it",
)
KEY_RELOAD_AGE = Gauge(
    "hashmatch_key_reload_age_seconds", "Seconds since API keys were last reloaded from the store"
)
READY = Gauge("hashmatch_ready", "1 while the server reports itself ready (health ''), else 0")
HTTP_REQUESTS = Counter(
    "hashmatch_http_requests_total",
    "HTTP requests handled, by route and status",
    ["route", "status"],
)
HTTP_SECONDS = Histogram(
    "hashmatch_http_request_duration_seconds",
    "HTTP request latency by route",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
