"""Each entry's content id (HMA's integer id): random below 2^53, unique, kept when the
store is migrated, and drawn again when a draw collides."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hashmatch.list_formats import NewEntry
from indexer.store import MAX_CONTENT_ID, open_store
from indexer.store import sql as sql_store
from indexer.store.sqlite import MIGRATIONS
from tests.test_security import random_pdq


def test_a_drawn_content_id_that_is_taken_is_drawn_again(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(store_url)
    try:
        first, second = random_pdq(2, 3)
        store.add_entries("x", [NewEntry("pdq", first)])
        taken = store.content_id_of("x", "pdq", first)
        assert taken is not None and 1 <= taken <= MAX_CONTENT_ID
        draws = iter([taken - 1, taken - 1, 41])  # randbelow(n) + 1 is the id
        monkeypatch.setattr(sql_store.secrets, "randbelow", lambda n: next(draws))
        counts = store.add_entries("x", [NewEntry("pdq", second)])
        assert counts.added == 1 and counts.duplicates == 0
        assert store.content_id_of("x", "pdq", second) == 42
        assert store.remove_content("x", taken) == 1
        assert store.content_id_of("x", "pdq", first) is None
    finally:
        store.close()


def test_a_batch_gets_distinct_ids_even_when_draws_repeat(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(store_url)
    try:
        draws = iter([7, 7, 7, 8, 9, 10, 11])
        monkeypatch.setattr(sql_store.secrets, "randbelow", lambda n: next(draws))
        hashes = random_pdq(3, 4)
        store.add_entries("x", [NewEntry("pdq", h) for h in hashes])
        ids = {store.content_id_of("x", "pdq", h) for h in hashes}
        assert len(ids) == 3 and None not in ids
    finally:
        store.close()


def test_the_migration_gives_existing_entries_distinct_random_ids(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        for number, script in enumerate(MIGRATIONS[:4], start=1):
            db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
        db.execute("INSERT INTO lists (name, created_at) VALUES ('old', CURRENT_TIMESTAMP)")
        db.executemany(
            "INSERT INTO entries (list_id, signal, hash, match_id) VALUES (1, 'pdq', ?, ?)",
            [(h, h[:12]) for h in random_pdq(500, 6)],
        )
    store = open_store(f"sqlite:///{path}")
    try:
        ids = [store.content_id_of("old", "pdq", h) for h in random_pdq(500, 6)]
    finally:
        store.close()
    assert None not in ids and len(set(ids)) == 500
    assert all(1 <= i <= MAX_CONTENT_ID for i in ids if i is not None)
    assert max(i for i in ids if i is not None) > 2**40  # drawn, not counted
