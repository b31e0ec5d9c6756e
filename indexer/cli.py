"""Server-side CLI verbs of the indexer: `hashmatch import` and `hashmatch index build`."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import TextIO

import click

from hashmatch.signals import SIGNALS
from indexer.build import build_snapshot
from indexer.imports import import_lines
from indexer.list_formats import FORMATS, NotExportable, format_line
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
    signal,hexhash[,ref], python-threatexchange lines `pdq <hex>`, or bare hex with --signal."""
    store = _open(store_url)
    try:
        report = import_lines(store, list_name, file, bare_signal)
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
    type=click.Choice(sorted(SIGNALS)),
    default=None,
    help="Export only this signal type (required for --format hex).",
)
@click.argument("output", type=click.File("w", encoding="utf-8"), default="-")
def export_command(
    store_url: str, list_name: str, fmt: str, only_signal: str | None, output: TextIO
) -> None:
    """Write a list to OUTPUT ('-' for stdout) as csv, bare hex, or python-threatexchange lines.

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
