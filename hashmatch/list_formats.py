"""Hash list file formats, for export, import and upload.

- csv: `signal,hexhash[,ref]`, our native interchange form;
- hex: one bare hex hash a line, all of one signal type (given beside the file);
- threatexchange: `<signal_type> <hexhash>` a line, as read and written by
  python-threatexchange's LocalFileSignalExchangeAPI, so Meta HMA /
  ThreatExchange users can load our lists and we can load theirs;
- and, for reading, JSON lines as `hashmatch hash` prints them.

A line that can't be used is reported with its number and why; the rest of
the file still goes in.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from hashmatch.bounds import SOURCE_REF, OutOfBounds
from hashmatch.codec import HashFormatError
from hashmatch.signals import UnknownSignalError, get_signal

FORMATS = ("csv", "hex", "threatexchange")

# Our signal name → python-threatexchange's SignalType.get_name(). Its md5 and
# sha256 types are of video bytes, not of image files, so they do not map.
THREATEXCHANGE_NAMES = {"pdq": "pdq"}
THREATEXCHANGE_UNMAPPED = frozenset(
    {"video_md5", "video_sha256", "url", "url_md5", "raw_text", "trend_query"}
)


@dataclass(frozen=True)
class NewEntry:
    """A hash for a list, with its hasher's quality and the submitter's own reference."""

    signal: str
    hash: bytes
    quality: int | None = None
    source_ref: str | None = None
    variant: str = ""  # which variant of the image (hashmatch.variants); "" as it is
    # A video (signal vpdq): its frames packed (hashmatch.video_entries); `hash` is their digest.
    frames: bytes = b""


class NotExportable(ValueError):
    """An entry the chosen format cannot carry; the message says why."""


def format_line(entry: NewEntry, fmt: str) -> str:
    hex_text = get_signal(entry.signal).to_hex(entry.hash)
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(
            [entry.signal, hex_text, *([entry.source_ref] if entry.source_ref else [])]
        )
        return buf.getvalue()
    if fmt == "hex":
        return hex_text
    if fmt == "threatexchange":
        name = THREATEXCHANGE_NAMES.get(entry.signal)
        if name is None:
            raise NotExportable(f"python-threatexchange has no type for {entry.signal}")
        return f"{name} {hex_text}"
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


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
    try:
        row = next(csv.reader([text]))
    except csv.Error as exc:  # a field past csv's own limit (128 KiB) among them
        raise LineError(f"malformed CSV: {exc}") from None
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
    try:
        SOURCE_REF.check(ref)
    except OutOfBounds as exc:
        raise LineError(str(exc)) from None
    return NewEntry(signal.name, hash_bytes, quality, ref)


def is_header(text: str) -> bool:
    return text.replace(" ", "").lower().startswith("signal,hash")


@dataclass(frozen=True)
class Refusal:
    line: int
    reason: str


def read_lines(
    lines: Iterable[str], bare_signal: str | None, refused: Callable[[Refusal], None]
) -> Iterator[NewEntry]:
    """The usable entries of a list file; each unusable line goes to `refused`."""
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#") or (number == 1 and is_header(text)):
            continue
        try:
            yield parse_line(text, bare_signal)
        except LineError as exc:
            refused(Refusal(number, str(exc)))
