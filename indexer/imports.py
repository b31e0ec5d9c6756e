"""Importing hash lists: JSON lines as `hashmatch hash` prints them, CSV `signal,hexhash[,ref]`,
python-threatexchange signal files (`pdq <hex>`), or bare hex given the signal type.

A line that can't be used is reported with its number and why; the rest of
the file still goes in.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from hashmatch.codec import HashFormatError
from hashmatch.signals import UnknownSignalError, get_signal
from indexer.list_formats import THREATEXCHANGE_UNMAPPED
from indexer.store import NewEntry, Store


@dataclass(frozen=True)
class Refusal:
    line: int
    reason: str


@dataclass
class ImportReport:
    added: int = 0
    duplicates: int = 0
    refused: list[Refusal] = field(default_factory=list)


class LineError(ValueError):
    pass


def _fields(text: str, bare_signal: str | None) -> tuple[str, str, int | None, str | None]:
    """signal, hex, quality, source ref of one non-blank line."""
    if bare_signal and "," not in text and " " not in text and not text.startswith("{"):
        return bare_signal, text, None, None
    if " " in text and "," not in text and not text.startswith("{"):
        name, _, rest = text.partition(" ")
        if name in THREATEXCHANGE_UNMAPPED:
            raise LineError(f"python-threatexchange type {name!r} has no hashmatch equivalent")
        return name, rest.strip(), None, None
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LineError(f"malformed JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(obj, dict):
            raise LineError("malformed JSON: expected an object")
        signal, hex_text, quality = obj.get("signal"), obj.get("hash"), obj.get("quality")
        if not isinstance(signal, str) or not isinstance(hex_text, str):
            raise LineError('malformed JSON: needs string fields "signal" and "hash"')
        if quality is not None and (not isinstance(quality, int) or isinstance(quality, bool)):
            raise LineError('malformed JSON: "quality" must be an integer or null')
        return signal, hex_text, quality, None
    row = next(csv.reader([text]))
    if len(row) == 1 and all(c in "0123456789abcdefABCDEF" for c in text):
        raise LineError("a bare hex hash: give its signal type with --signal")
    if len(row) not in (2, 3):
        raise LineError(f"malformed CSV: expected signal,hexhash[,ref], got {len(row)} fields")
    return row[0].strip(), row[1].strip(), None, (row[2].strip() or None) if len(row) == 3 else None


def parse_line(text: str, bare_signal: str | None = None) -> NewEntry:
    signal_name, hex_text, quality, ref = _fields(text, bare_signal)
    try:
        signal = get_signal(signal_name.lower())
        hash_bytes = signal.parse_hex(hex_text)
    except (UnknownSignalError, HashFormatError) as exc:
        raise LineError(str(exc)) from None
    if reason := signal.degenerate(hash_bytes, quality):
        raise LineError(reason)
    return NewEntry(signal.name, hash_bytes, quality, ref)


def is_header(text: str) -> bool:
    return text.replace(" ", "").lower().startswith("signal,hash")


def import_lines(
    store: Store, list_name: str, lines: Iterable[str], bare_signal: str | None = None
) -> ImportReport:
    """Add every usable line to the list; `bare_signal` is the type of bare hex lines."""
    report = ImportReport()

    def entries() -> Iterator[NewEntry]:
        for number, raw in enumerate(lines, start=1):
            text = raw.strip()
            if not text or text.startswith("#") or (number == 1 and is_header(text)):
                continue
            try:
                yield parse_line(text, bare_signal)
            except LineError as exc:
                report.refused.append(Refusal(number, str(exc)))

    counts = store.add_entries(list_name, entries())
    report.added, report.duplicates = counts.added, counts.duplicates
    return report
