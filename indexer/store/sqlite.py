"""SQLite hash store: the embedded default.

WAL with synchronous=FULL, so a committed (acknowledged) import survives a
kill -9 or power loss. The schema is versioned through PRAGMA user_version.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from indexer.store import (
    AddCounts,
    ListEntry,
    NewEntry,
    SignalEntries,
    new_entry_rows,
    signal_entries,
)

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE lists (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE TABLE entries (
        id INTEGER PRIMARY KEY,
        list_id INTEGER NOT NULL REFERENCES lists(id),
        signal TEXT NOT NULL,
        hash BLOB NOT NULL,
        match_id BLOB NOT NULL UNIQUE,
        quality INTEGER,
        source_ref TEXT,
        added_at TEXT NOT NULL,
        UNIQUE (list_id, signal, hash)
    );
    CREATE INDEX entries_by_signal ON entries (signal, id);
    """,
)

BATCH = 10_000


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SqliteStore:
    def __init__(self, path: str) -> None:
        parent = Path(path).parent
        if not parent.is_dir():
            raise FileNotFoundError(f"no directory {str(parent)!r} for the SQLite store")
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._migrate()

    def _migrate(self) -> None:
        version: int = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"store {self.path} has schema version {version}; "
                f"this hashmatch knows up to {len(MIGRATIONS)}"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")

    def _list_id(self, name: str) -> int:
        self._db.execute(
            "INSERT OR IGNORE INTO lists (name, created_at) VALUES (?, ?)", (name, _now())
        )
        row = self._db.execute("SELECT id FROM lists WHERE name = ?", (name,)).fetchone()
        return int(row[0])

    def add_entries(self, list_name: str, entries: Iterable[NewEntry]) -> AddCounts:
        """Add in batches, each committed on its own: a crash loses at most the batch in
        flight, and re-running the same import is idempotent (duplicates are skipped)."""
        added = duplicates = 0
        it = iter(entries)
        with self._transaction():
            list_id = self._list_id(list_name)
        while batch := list(itertools.islice(it, BATCH)):
            now = _now()
            with self._transaction():
                cur = self._db.executemany(
                    "INSERT OR IGNORE INTO entries"
                    " (list_id, signal, hash, match_id, quality, source_ref, added_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(*row, now) for row in new_entry_rows(list_id, batch)],
                )
            added += cur.rowcount
            duplicates += len(batch) - cur.rowcount
        return AddCounts(added, duplicates)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def lists(self) -> dict[int, str]:
        return {int(i): str(n) for i, n in self._db.execute("SELECT id, name FROM lists")}

    def list_entries(self, list_name: str) -> Iterator[ListEntry]:
        row = self._db.execute("SELECT id FROM lists WHERE name = ?", (list_name,)).fetchone()
        if row is None:
            raise KeyError(list_name)
        cur = self._db.execute(
            "SELECT signal, hash, source_ref FROM entries WHERE list_id = ? ORDER BY id", (row[0],)
        )
        for signal, hash_bytes, ref in cur:
            yield ListEntry(str(signal), bytes(hash_bytes), ref)

    def signal_names(self) -> list[str]:
        rows = self._db.execute("SELECT DISTINCT signal FROM entries ORDER BY signal")
        return [str(r[0]) for r in rows]

    def read_signal(self, signal: str, nbytes: int) -> SignalEntries:
        rows = self._db.execute(
            "SELECT id, list_id, hash, match_id FROM entries WHERE signal = ? ORDER BY id",
            (signal,),
        ).fetchall()
        return signal_entries(rows, nbytes)

    def last_entry_id(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM entries").fetchone()[0])

    def close(self) -> None:
        self._db.close()
