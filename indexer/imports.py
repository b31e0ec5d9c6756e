"""Importing hash list files into the store (formats: hashmatch.list_formats)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from hashmatch.bounds import LIST_NAME
from hashmatch.list_formats import Refusal, read_lines
from indexer.store import Store


@dataclass
class ImportReport:
    added: int = 0
    duplicates: int = 0
    refused: list[Refusal] = field(default_factory=list)


def import_lines(
    store: Store, list_name: str, lines: Iterable[str], bare_signal: str | None = None
) -> ImportReport:
    """Add every usable line to the list; `bare_signal` is the type of bare hex lines."""
    LIST_NAME.check(list_name)  # OutOfBounds before any line is read
    report = ImportReport()
    counts = store.add_entries(list_name, read_lines(lines, bare_signal, report.refused.append))
    report.added, report.duplicates = counts.added, counts.duplicates
    return report
