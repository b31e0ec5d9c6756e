"""Server-side CLI verbs of the indexer: `hashmatch import` and `hashmatch index build`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

import click

from indexer.build import build_snapshot
from indexer.imports import import_lines
from indexer.snapshot import read_snapshot_dir
from indexer.store import DEFAULT_STORE_URL, Store, StoreURLError, open_store

STORE_OPTION = click.option(
    "--store",
    "store_url",
    default=DEFAULT_STORE_URL,
    show_default=True,
    help="Store URL: sqlite:///relative/path.db or sqlite:////absolute/path.db.",
)


def _open(url: str) -> Store:
    try:
        return open_store(url)
    except (StoreURLError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command("import")
@STORE_OPTION
@click.option("--list", "list_name", required=True, help="Name of the list to add to.")
@click.argument("file", type=click.File("r", encoding="utf-8", errors="replace"))
def import_command(store_url: str, list_name: str, file: TextIO) -> None:
    """Import hashes from FILE ('-' for stdin): JSON lines from `hashmatch hash`,
    or CSV lines signal,hexhash[,ref]."""
    store = _open(store_url)
    try:
        report = import_lines(store, list_name, file)
    finally:
        store.close()
    for refusal in report.refused:
        click.echo(f"line {refusal.line}: refused: {refusal.reason}", err=True)
    click.echo(
        f"list {list_name}: added {report.added}, duplicates {report.duplicates}, "
        f"refused {len(report.refused)}"
    )


@click.group("index")
def index_group() -> None:
    """Build snapshots of the store for the service."""


@index_group.command("build")
@STORE_OPTION
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Snapshot root directory (the service's --index).",
)
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
