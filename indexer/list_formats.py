"""Hash list file formats, for export and import.

- csv: `signal,hexhash[,ref]`, our native interchange form;
- hex: one bare hex hash a line, all of one signal type (given beside the file);
- threatexchange: `<signal_type> <hexhash>` a line, as read and written by
  python-threatexchange's LocalFileSignalExchangeAPI, so Meta HMA /
  ThreatExchange users can load our lists and we can load theirs.
"""

from __future__ import annotations

import csv
import io

from hashmatch.signals import get_signal
from indexer.store import ListEntry

FORMATS = ("csv", "hex", "threatexchange")

# Our signal name → python-threatexchange's SignalType.get_name(). Its md5 and
# sha256 types are of video bytes, not of image files, so they do not map.
THREATEXCHANGE_NAMES = {"pdq": "pdq"}
THREATEXCHANGE_UNMAPPED = frozenset(
    {"video_md5", "video_sha256", "url", "url_md5", "raw_text", "trend_query"}
)


class NotExportable(ValueError):
    """An entry the chosen format cannot carry; the message says why."""


def format_line(entry: ListEntry, fmt: str) -> str:
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
