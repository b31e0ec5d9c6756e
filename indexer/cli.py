"""Server-side CLI verbs of the indexer: `hashmatch import`, `export`, `index build|compact`
and `sync pull`."""

from __future__ import annotations

import datetime
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TextIO

import click
import grpc

from hashmatch.bounds import OutOfBounds
from hashmatch.channel import Credentials, connection_options, rpc_failure
from hashmatch.list_formats import FORMATS, NotExportable, format_line
from hashmatch.signals import SIGNALS
from hashmatch.video_entries import VPDQ
from indexer.build import build_snapshot, compact_snapshot
from indexer.imports import import_lines
from indexer.snapshot import SnapshotError, read_snapshot, read_snapshot_dir
from indexer.store import (
    DEFAULT_STORE_URL,
    MAX_SEQ,
    ROLES,
    STORE_URL_ENV,
    AuditEvent,
    Change,
    InvalidValue,
    Store,
    StoreURLError,
    open_store,
)
from indexer.sync import SyncError, pull, pull_feedback

COMPACT_PAGE = 100_000
OUT_OPTION = click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Snapshot root directory (the service's --index).",
)

STORE_OPTION = click.option(
    "--store",
    "store_url",
    default=DEFAULT_STORE_URL,
    show_default=True,
    envvar=STORE_URL_ENV,
    help="Store URL: sqlite:///relative/path.db, sqlite:////absolute/path.db or "
    f"postgresql://user@host:port/database (or ${STORE_URL_ENV}, which keeps a password "
    "out of the process list).",
)


def _open(url: str) -> Store:
    try:
        return open_store(url)
    except (StoreURLError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command("import")
@STORE_OPTION
@click.option("--list", "list_name", required=True, help="Name of the list to add to.")
@click.option(
    "--signal",
    "bare_signal",
    type=click.Choice(sorted(SIGNALS)),
    default=None,
    help="Signal type of lines holding a bare hex hash.",
)
@click.argument("file", type=click.File("r", encoding="utf-8", errors="replace"))
def import_command(store_url: str, list_name: str, bare_signal: str | None, file: TextIO) -> None:
    """Import hashes from FILE ('-' for stdin): JSON lines from `hashmatch hash`, CSV lines
    signal,hexhash[,ref], python-threatexchange lines `pdq <hex>` or `vpdq <json>`, vPDQ
    C++ tool lines (one video's lines in a block), or bare hex with --signal."""
    store = _open(store_url)
    try:
        report = import_lines(store, list_name, file, bare_signal)
    except (OutOfBounds, InvalidValue) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    for refusal in report.refused:
        click.echo(f"line {refusal.line}: refused: {refusal.reason}", err=True)
    click.echo(
        f"list {list_name}: added {report.added}, duplicates {report.duplicates}, "
        f"refused {len(report.refused)}"
    )


@click.command("export")
@STORE_OPTION
@click.option("--list", "list_name", required=True, help="Name of the list to export.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option(
    "--signal",
    "only_signal",
    type=click.Choice(sorted([*SIGNALS, VPDQ])),
    default=None,
    help="Export only this signal type (required for --format hex).",
)
@click.argument("output", type=click.File("w", encoding="utf-8"), default="-")
def export_command(
    store_url: str, list_name: str, fmt: str, only_signal: str | None, output: TextIO
) -> None:
    """Write a list to OUTPUT ('-' for stdout) as csv, bare hex, python-threatexchange lines,
    or (videos only) vPDQ C++ tool lines, a blank line after each video.

    This reads the store directly: it is for the list's operators, never for checkers.
    """
    if fmt == "hex" and only_signal is None:
        raise click.UsageError("--format hex needs --signal: bare hex lines carry no type")
    store = _open(store_url)
    written = 0
    skipped: Counter[str] = Counter()
    try:
        for entry in store.list_entries(list_name):
            if only_signal and entry.signal != only_signal:
                continue
            try:
                output.write(format_line(entry, fmt) + "\n")
                written += 1
            except NotExportable as exc:
                skipped[str(exc)] += 1
    except KeyError:
        raise click.ClickException(f"no list named {list_name!r} in {store_url}") from None
    finally:
        store.close()
    notes = "".join(f"; skipped {n}: {why}" for why, n in sorted(skipped.items()))
    click.echo(f"list {list_name}: exported {written} as {fmt}{notes}", err=True)


@click.group("index")
def index_group() -> None:
    """Build snapshots of the store for the service."""


@index_group.command("build")
@STORE_OPTION
@OUT_OPTION
def build_command(store_url: str, out: Path) -> None:
    """Build a snapshot of every signal type in the store and make it current."""
    started = time.perf_counter()
    store = _open(store_url)
    try:
        path = build_snapshot(store, out)
    finally:
        store.close()
    snapshot = read_snapshot_dir(path)
    counts = ", ".join(f"{s} {t.count}" for s, t in snapshot.tables.items()) or "no entries"
    click.echo(
        f"snapshot version {snapshot.version} at {path} ({counts}) "
        f"in {time.perf_counter() - started:.2f}s"
    )
    sys.exit(0)


@index_group.command("compact")
@STORE_OPTION
@OUT_OPTION
def compact_command(store_url: str, out: Path) -> None:
    """Fold the store's changes since the current snapshot into a new snapshot.

    Reads only the change log past the snapshot, not the whole store; with no
    usable snapshot yet, builds one from the whole store.
    """
    started = time.perf_counter()
    store = _open(store_url)
    try:
        try:
            base = read_snapshot(out)
        except SnapshotError as exc:
            click.echo(f"no snapshot to compact ({exc}); building from the whole store")
            path = build_snapshot(store, out)
        else:
            changes: list[Change] = []
            while page := store.changes(
                changes[-1].seq if changes else base.last_seq, COMPACT_PAGE
            ):
                changes.extend(page)
            if not changes:
                click.echo(f"snapshot version {base.version} is up to date")
                return
            path = compact_snapshot(base, changes, out)
    finally:
        store.close()
    snapshot = read_snapshot_dir(path)
    click.echo(
        f"snapshot version {snapshot.version} with changes up to {snapshot.last_seq} "
        f"({', '.join(f'{s} {t.count}' for s, t in snapshot.tables.items()) or 'no entries'}) "
        f"in {time.perf_counter() - started:.2f}s"
    )


@click.group("sync")
def sync_group() -> None:
    """Keep local copies of lists on other hashmatch servers."""


@sync_group.command("pull")
@STORE_OPTION
@click.option("--from", "target", required=True, metavar="HOST:PORT", help="The remote server.")
@click.option("--list", "list_name", required=True, help="The remote list to copy.")
@click.option("--into", default=None, help="Local list name (default: the remote's).")
@click.option("--follow", is_flag=True, help="Keep pulling every --interval seconds.")
@click.option("--interval", type=float, default=5.0, show_default=True)
@click.option(
    "--negative-for",
    "negative_for",
    default=None,
    metavar="TENANT",
    help="A negative list: it suppresses this tenant's matches only.",
)
@click.option(
    "--negative-for-all",
    is_flag=True,
    help="A negative list: it suppresses every tenant's matches.",
)
@connection_options
def pull_command(
    store_url: str,
    target: str,
    list_name: str,
    into: str | None,
    follow: bool,
    interval: float,
    negative_for: str | None,
    negative_for_all: bool,
    credentials: Credentials,
) -> None:
    """Bring the local copy of a remote list up to date. Resumable after a crash, and
    idempotent: the cursor is committed with the changes it covers. A negative list is
    refused unless --negative-for or --negative-for-all says whose it is here."""
    store = _open(store_url)
    try:
        while True:
            try:
                report = pull(
                    store,
                    target,
                    list_name,
                    into,
                    lambda r: click.echo(f"{r.source}: applied up to change {r.cursor}", err=True),
                    credentials,
                    negative_for=negative_for,
                    negative_for_all=negative_for_all,
                )
            except grpc.RpcError as exc:
                raise click.ClickException(rpc_failure(target, exc)) from None
            except SyncError as exc:
                raise click.ClickException(str(exc)) from None
            for reason in report.refusals:
                click.echo(f"refused: {reason}", err=True)
            click.echo(
                f"{report.source} -> {into or list_name}: added {report.added}, "
                f"removed {report.removed}, refused {report.refused}, at change {report.cursor}"
            )
            if not follow:
                return
            time.sleep(interval)
    finally:
        store.close()


@sync_group.command("feedback")
@STORE_OPTION
@click.option("--from", "target", required=True, metavar="HOST:PORT", help="The downstream server.")
@click.option("--list", "list_name", required=True, help="Our list, as the downstream copied it.")
@connection_options
def feedback_command(store_url: str, target: str, list_name: str, credentials: Credentials) -> None:
    """Pull the feedback counts a downstream server (one that copied our list and opted in
    with serve --share-feedback) holds on our entries; they show in our review queue."""
    store = _open(store_url)
    try:
        report = pull_feedback(store, target, list_name, credentials)
    except grpc.RpcError as exc:
        raise click.ClickException(rpc_failure(target, exc)) from None
    except SyncError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    for reason in report.refusals:
        click.echo(f"refused: {reason}", err=True)
    click.echo(
        f"{report.source}: feedback on {report.added} entries, refused {report.refused}, "
        f"at {report.cursor}"
    )


@click.group("keys")
def keys_group() -> None:
    """Issue and revoke API keys (stored only as salted hashes)."""


@keys_group.command("create")
@STORE_OPTION
@click.option("--tenant", required=True, help="Who the key is for, e.g. a platform or hotline.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(ROLES),
    help="A role the key holds (repeat for several).",
)
@click.option(
    "--list",
    "lists",
    multiple=True,
    help="A list the key may read or manage (repeat; default: every list).",
)
@click.option("--rate", type=float, default=None, help="Hashes per second (default: server's).")
@click.option(
    "--burst",
    type=float,
    default=None,
    help="The most hashes one call may carry, and what an idle key may send at once "
    "(default: 2 seconds of its rate). A larger call is refused and told to split.",
)
@click.option(
    "--match-only",
    is_flag=True,
    help="The key's checks learn match / no match and a match id, never a distance, and "
    "may not tighten max_distance (a distance oracle leads a walk to the stored hash).",
)
def keys_create_command(
    store_url: str,
    tenant: str,
    roles: tuple[str, ...],
    lists: tuple[str, ...],
    rate: float | None,
    burst: float | None,
    match_only: bool,
) -> None:
    """Create a key and print it once: it cannot be shown again.

    Victims' cases (the list victim-cases) leave through SyncService.Pull only to a key
    given `--list victim-cases` by name, an admin key included."""
    store = _open(store_url)
    try:
        key, token = store.create_key(tenant, roles, lists or None, rate, burst, match_only)
    except InvalidValue as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"key id: {key.key_id}")
    click.echo(f"key:    {token}")
    click.echo("Give the key to its holder now; only a salted hash of it is kept.", err=True)


@keys_group.command("revoke")
@STORE_OPTION
@click.argument("key_id")
def keys_revoke_command(store_url: str, key_id: str) -> None:
    """Revoke a key; running servers refuse it within a second."""
    store = _open(store_url)
    try:
        revoked = store.revoke_key(key_id)
        if revoked:
            store.append_audit([AuditEvent("operator", "revoke_key", None, {"key_id": key_id})])
    finally:
        store.close()
    if not revoked:
        raise click.ClickException(f"no active key {key_id!r}")
    click.echo(f"key {key_id} revoked")


@keys_group.command("list")
@STORE_OPTION
def keys_list_command(store_url: str) -> None:
    """Every key: id, tenant, roles, lists, rate, state (never the key itself)."""
    store = _open(store_url)
    try:
        keys = store.api_keys()
    finally:
        store.close()
    for k in keys:
        lists = ",".join(sorted(k.lists)) if k.lists is not None else "*"
        rate = "default" if k.rate is None else f"{k.rate:g}/s"
        if k.burst is not None:
            rate += f",burst={k.burst:g}"
        state = "revoked" if k.revoked else "active"
        extra = "  match-only" if k.match_only else ""
        click.echo(
            f"{k.key_id}  {k.tenant}  {','.join(sorted(k.roles))}  {lists}  {rate}  {state}{extra}"
        )


@click.command("audit")
@STORE_OPTION
@click.option(
    "--after",
    type=click.IntRange(0, MAX_SEQ),
    default=0,
    help="Show events after this sequence number.",
)
@click.option("--limit", type=int, default=1000, show_default=True)
@click.option(
    "--prune-before",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    default=None,
    metavar="DATE",
    help="Instead of showing events, delete those before DATE (UTC, in the past): the one "
    "way the append-only log shrinks, itself recorded in the log.",
)
def audit_command(
    store_url: str, after: int, limit: int, prune_before: datetime.datetime | None
) -> None:
    """Print audit log events as JSON lines, oldest first."""
    if prune_before is not None:
        cutoff = prune_before.replace(tzinfo=datetime.UTC).timestamp()
        if cutoff > time.time():
            raise click.UsageError(f"--prune-before {prune_before:%Y-%m-%d} is in the future")
        store = _open(store_url)
        try:
            removed = store.prune_audit(cutoff)
        finally:
            store.close()
        click.echo(f"pruned {removed} audit events before {prune_before.isoformat()} UTC")
        return
    store = _open(store_url)
    try:
        events = store.audit_events(after, limit)
    finally:
        store.close()
    for e in events:
        click.echo(
            json.dumps(
                {
                    "seq": e.seq,
                    "at": e.at,
                    "actor": e.actor,
                    "action": e.action,
                    "list": e.list,
                    **e.detail,
                }
            )
        )
