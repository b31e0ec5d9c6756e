"""Entries whose hash is the wrong length for their signal: the schema refuses them (from
migration 5), and that migration moves any already stored to `malformed_entries`.

A short hash in the store is poison: a snapshot build can't shape it into its table,
and a server following the change log would stop at it. The codec refuses such
hashes at every door; this is the store's own defence, for rows that arrive by any
other way (raw SQL, an older release, a bug).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

# Each signal's hash length as the schema enforces it. A signal added later needs a
# migration that extends the constraint (a test checks this agrees with hashmatch.signals);
# until then its hashes are not checked by the schema, only by the codec.
STORED_HASH_BYTES: dict[str, int] = {
    "pdq": 32,
    "phash": 8,
    "dhash": 8,
    "ahash": 8,
    "whash": 8,
    "md5": 16,
    "sha256": 32,
}

# Columns moved from entries to malformed_entries, the same in both backends.
ENTRY_COLUMNS = (
    "id, list_id, signal, hash, match_id, quality, source_ref, submitter, origin, added_at, variant"
)


def length_sql(length: str, row: str = "") -> tuple[str, str]:
    """SQL for (whether a row's hash is its signal's length, why not), where `length` is
    the backend's byte length function and `row` prefixes the columns (`NEW.` in a
    trigger). Signals the schema doesn't know pass."""
    got = f"{length}({row}hash)"
    cases = " ".join(f"WHEN '{name}' THEN {n}" for name, n in STORED_HASH_BYTES.items())
    want = f"CASE {row}signal {cases} ELSE {got} END"
    return f"{got} = {want}", f"{row}signal || ' hash is ' || {got} || ' bytes, not ' || {want}"


def log_moved(rows: Sequence[Sequence[Any]]) -> None:
    """Log each (id, list name, reason) row that migration 5 moved out of entries."""
    for entry_id, list_name, reason in rows:
        log.warning(
            "store migration: entry %d of list %r moved to malformed_entries: %s",
            entry_id,
            list_name,
            reason,
        )


MOVED_SQL = (
    "SELECT m.id, COALESCE(l.name, ''), m.reason FROM malformed_entries m"
    " LEFT JOIN lists l ON l.id = m.list_id ORDER BY m.id"
)
MOVED_BY = 5  # the migration that adds the constraint and moves rows already stored wrong
