"""PostgreSQL hash store: the production backend (psycopg 3).

Selected by a `postgresql://` store URL. Each batch commits on its own, and
PostgreSQL's commit is durable, so an acknowledged import survives a crash.
The schema is versioned in `hashmatch_schema`; migrations run under an
advisory lock, so several processes may start at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import psycopg

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
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE entries (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        list_id BIGINT NOT NULL REFERENCES lists (id),
        signal TEXT NOT NULL,
        hash BYTEA NOT NULL,
        match_id BYTEA NOT NULL UNIQUE,
        quality INTEGER,
        source_ref TEXT,
        added_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (list_id, signal, hash)
    );
    CREATE INDEX entries_by_signal ON entries (signal, id);
    """,
)

BATCH = 10_000
MIGRATION_LOCK = 0x68617368  # "hash": the advisory lock key for schema changes


class PostgresStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._db = psycopg.connect(url, autocommit=False)
        self._migrate()

    def _migrate(self) -> None:
        with self._db.transaction(), self._db.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            cur.execute("CREATE TABLE IF NOT EXISTS hashmatch_schema (version INTEGER NOT NULL)")
            cur.execute("SELECT max(version) FROM hashmatch_schema")
            row = cur.fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"store has schema version {version}; "
                    f"this hashmatch knows up to {len(MIGRATIONS)}"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                cur.execute(script)
                cur.execute("INSERT INTO hashmatch_schema (version) VALUES (%s)", (number,))

    def add_entries(self, list_name: str, entries: Iterable[NewEntry]) -> AddCounts:
        """Add in batches, each committed on its own (see SqliteStore.add_entries)."""
        added = duplicates = 0
        with self._db.transaction(), self._db.cursor() as cur:
            cur.execute(
                "INSERT INTO lists (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (list_name,)
            )
            cur.execute("SELECT id FROM lists WHERE name = %s", (list_name,))
            row = cur.fetchone()
            assert row is not None
            list_id = int(row[0])
        it = iter(entries)
        while batch := list(itertools.islice(it, BATCH)):
            with self._db.transaction(), self._db.cursor() as cur:
                cur.executemany(
                    "INSERT INTO entries (list_id, signal, hash, match_id, quality, source_ref)"
                    " VALUES (%s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (list_id, signal, hash) DO NOTHING",
                    new_entry_rows(list_id, batch),
                )
                inserted = cur.rowcount
            added += inserted
            duplicates += len(batch) - inserted
        return AddCounts(added, duplicates)

    def lists(self) -> dict[int, str]:
        with self._db.transaction(), self._db.cursor() as cur:
            cur.execute("SELECT id, name FROM lists")
            return {int(i): str(n) for i, n in cur.fetchall()}

    def list_entries(self, list_name: str) -> Iterator[ListEntry]:
        with self._db.transaction(), self._db.cursor() as cur:
            cur.execute("SELECT id FROM lists WHERE name = %s", (list_name,))
            row = cur.fetchone()
            if row is None:
                raise KeyError(list_name)
            cur.execute(
                "SELECT signal, hash, source_ref FROM entries WHERE list_id = %s ORDER BY id",
                (row[0],),
            )
            rows = cur.fetchall()
        for signal, hash_bytes, ref in rows:
            yield ListEntry(str(signal), bytes(hash_bytes), ref)

    def signal_names(self) -> list[str]:
        with self._db.transaction(), self._db.cursor() as cur:
            cur.execute("SELECT DISTINCT signal FROM entries ORDER BY signal")
            return [str(r[0]) for r in cur.fetchall()]

    def read_signal(self, signal: str, nbytes: int) -> SignalEntries:
        with self._db.transaction(), self._db.cursor() as cur:
            cur.execute(
                "SELECT id, list_id, hash, match_id FROM entries WHERE signal = %s ORDER BY id",
                (signal,),
            )
            rows = cur.fetchall()
        return signal_entries(rows, nbytes)

    def last_entry_id(self) -> int:
        with self._db.transaction(), self._db.cursor() as cur:
            cur.execute("SELECT COALESCE(max(id), 0) FROM entries")
            row = cur.fetchone()
            return int(row[0]) if row else 0

    def close(self) -> None:
        self._db.close()
