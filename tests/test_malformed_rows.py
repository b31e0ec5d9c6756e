"""The store's own defence against hashes of the wrong length for their signal, on both
backends: migration 5 moves rows already stored wrong to malformed_entries, saying why,
and from then on the schema refuses them whoever writes."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from hashmatch.signals import SIGNALS
from indexer.build import build_snapshot
from indexer.snapshot import read_snapshot
from indexer.store import NewEntry, open_store
from indexer.store import postgresql as pg_store
from indexer.store import sqlite as sqlite_store
from indexer.store.malformed import STORED_HASH_BYTES

GOOD = np.random.default_rng(8).integers(0, 256, 32, dtype=np.uint8).tobytes()


class Raw:
    """SQL straight to the database under a store URL, past every check of the store."""

    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite:")
        self._db: Any = (
            sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            if self.sqlite
            else psycopg.connect(url, autocommit=True)
        )

    def __call__(self, sql: str, *params: Any) -> list[Any]:
        cur = self._db.execute(sql if self.sqlite else sql.replace("?", "%s"), params)
        return list(cur.fetchall()) if cur.description else []

    def close(self) -> None:
        self._db.close()


@contextmanager
def raw(url: str) -> Iterator[Raw]:
    db = Raw(url)
    try:
        yield db
    finally:
        db.close()


def old_store(url: str, rows: Sequence[tuple[str, Any]]) -> None:
    """A store at schema version 4, before hash lengths were enforced, with `rows` as
    entries of list 'a' (and their change log lines) written by raw SQL."""
    with raw(url) as db:
        if db.sqlite:
            for number, script in enumerate(sqlite_store.MIGRATIONS[:4], start=1):
                db._db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
        else:
            db("CREATE TABLE hashmatch_schema (version INTEGER NOT NULL)")
            for number, script in enumerate(pg_store.MIGRATIONS[:4], start=1):
                db._db.execute(script.encode())
                db("INSERT INTO hashmatch_schema (version) VALUES (?)", number)
        db("INSERT INTO lists (name, created_at) VALUES ('a', CURRENT_TIMESTAMP)")
        for i, (signal, hash_value) in enumerate(rows):
            db(
                "INSERT INTO entries (list_id, signal, hash, match_id, added_at)"
                " VALUES (1, ?, ?, ?, CURRENT_TIMESTAMP)",
                signal,
                hash_value,
                bytes([i]) * 12,
            )


def test_migration_moves_rows_stored_wrong_saying_why(
    store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows: list[tuple[str, Any]] = [
        ("pdq", GOOD),
        ("pdq", GOOD[:31]),
        ("phash", GOOD[:9]),
        ("md5", b""),
        ("newsig", b"\x01\x02\x03"),  # a signal the schema does not know: not its call
    ]
    if store_url.startswith("sqlite:"):
        rows.append(("pdq", GOOD.hex()))  # a hash stored as text
    old_store(store_url, rows)
    with caplog.at_level(logging.WARNING, "indexer.store.malformed"):
        store = open_store(store_url)
    try:
        moved = [r.getMessage() for r in caplog.records]
        expected = [
            "entry 2 of list 'a' moved to malformed_entries: pdq hash is 31 bytes, not 32",
            "entry 3 of list 'a' moved to malformed_entries: phash hash is 9 bytes, not 8",
            "entry 4 of list 'a' moved to malformed_entries: md5 hash is 0 bytes, not 16",
        ]
        if store_url.startswith("sqlite:"):
            expected.append(
                "entry 6 of list 'a' moved to malformed_entries: pdq hash is stored as text,"
                " not bytes"
            )
        assert moved == ["store migration: " + m for m in expected]
        assert [(e.signal, e.hash) for e in store.list_entries("a")] == [
            ("pdq", GOOD),
            ("newsig", b"\x01\x02\x03"),
        ]
        build_snapshot(store, tmp_path / "index")
        assert read_snapshot(tmp_path / "index").tables["pdq"].count == 1
        with raw(store_url) as db:
            kept = db("SELECT id, signal, match_id FROM malformed_entries ORDER BY id")
            assert [(r[0], r[1], bytes(r[2])) for r in kept][:3] == [
                (2, "pdq", bytes([1]) * 12),
                (3, "phash", bytes([2]) * 12),
                (4, "md5", bytes([3]) * 12),
            ]
    finally:
        store.close()
    with caplog.at_level(logging.WARNING, "indexer.store.malformed"):
        caplog.clear()
        open_store(store_url).close()  # a second start moves and logs nothing more
        assert caplog.records == []


def test_the_schema_refuses_a_wrong_length_from_any_writer(store_url: str) -> None:
    store = open_store(store_url)
    try:
        store.add_entries("a", [NewEntry("pdq", GOOD)])
        with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
            store.add_entries("a", [NewEntry("phash", GOOD[:8]), NewEntry("pdq", GOOD[:31])])
        assert [e.hash for e in store.list_entries("a")] == [GOOD]  # the batch went whole
    finally:
        store.close()
    with raw(store_url) as db:
        refused = (sqlite3.IntegrityError, psycopg.IntegrityError)
        with pytest.raises(refused):
            db(
                "INSERT INTO entries (list_id, signal, hash, match_id) VALUES (1, 'pdq', ?, ?)",
                GOOD[:31],
                b"x" * 12,
            )
        with pytest.raises(refused):
            db("UPDATE entries SET hash = ? WHERE signal = 'pdq'", GOOD + b"\x00")
        with pytest.raises(refused):
            db("UPDATE entries SET signal = 'phash' WHERE signal = 'pdq'")
        if db.sqlite:
            with pytest.raises(refused):
                db("UPDATE entries SET hash = ? WHERE signal = 'pdq'", GOOD.hex()[:32])
        assert db("SELECT COUNT(*) FROM entries WHERE signal = 'pdq'") == [(1,)]


def test_stored_hash_lengths_are_the_signals() -> None:
    """A new signal type needs a migration that extends the schema's check."""
    assert {name: s.nbytes for name, s in SIGNALS.items()} == STORED_HASH_BYTES


def test_a_build_leaves_out_a_row_the_schema_did_not_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = open_store(url)
    store.add_entries("a", [NewEntry("pdq", GOOD)])
    with raw(url) as db:
        db("DROP TRIGGER entries_hash_length")
        db(
            "INSERT INTO entries (list_id, signal, hash, match_id) VALUES (1, 'pdq', ?, ?)",
            GOOD[:31],
            b"x" * 12,
        )
    with caplog.at_level(logging.WARNING, "indexer.build"):
        build_snapshot(store, tmp_path / "index")
    snapshot = read_snapshot(tmp_path / "index")
    store.close()
    assert snapshot.tables["pdq"].count == 1
    assert [r.getMessage() for r in caplog.records] == [
        "left out of the snapshot: entry 2: pdq hash is 31 bytes, not 32 bytes"
    ]
