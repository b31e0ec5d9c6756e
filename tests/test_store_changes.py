"""The change log, lists, victim cases and sync application, on both backends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from hashmatch.signals import SIGNALS
from indexer.build import build_snapshot, compact_snapshot
from indexer.snapshot import read_snapshot
from indexer.store import (
    CASE_LIST,
    Change,
    InvalidValue,
    ListExists,
    NewEntry,
    NoSuchCase,
    NoSuchList,
    Store,
    open_store,
)
from indexer.store.sqlite import MIGRATIONS

NBYTES = {name: s.nbytes for name, s in SIGNALS.items()}


def pdq(seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, 32, dtype=np.uint8).tobytes()


@pytest.fixture
def store(store_url: str) -> Store:
    s = open_store(store_url)
    yield s  # type: ignore[misc]
    s.close()


def test_every_add_and_removal_is_logged_in_commit_order(store: Store) -> None:
    store.create_list("a", owner="hotline A", trust="verified", description="verified CSAM")
    assert (
        store.add_entries(
            "a", [NewEntry("pdq", pdq(i), 90, f"ref-{i}") for i in range(3)], submitter="analyst-1"
        ).added
        == 3
    )
    assert store.remove_entries("a", [("pdq", pdq(1)), ("pdq", pdq(99))]) == 1
    changes = store.changes(0, 100)
    assert [(c.seq, c.op) for c in changes] == [(1, "add"), (2, "add"), (3, "add"), (4, "remove")]
    assert changes[3].entry_id == changes[1].entry_id and changes[3].hash == pdq(1)
    assert changes[0].source_ref == "ref-0" and changes[0].quality == 90
    assert store.changes(2, 1) == changes[2:3]
    assert store.last_seq() == 4
    info = store.list_info("a")
    assert (info.owner, info.trust, info.description) == ("hotline A", "verified", "verified CSAM")
    assert info.entries_by_signal == {"pdq": 2} and info.last_seq == 4


def test_list_creation_is_checked(store: Store) -> None:
    store.create_list("a")
    with pytest.raises(ListExists):
        store.create_list("a")
    with pytest.raises(InvalidValue, match="trust level 'sure'"):
        store.create_list("b", trust="sure")
    with pytest.raises(InvalidValue, match="list name"):
        store.create_list(" padded ")
    with pytest.raises(NoSuchList):
        store.list_info("nope")
    with pytest.raises(NoSuchList):
        store.add_entries("nope", [NewEntry("pdq", pdq(1))], create=False)
    with pytest.raises(NoSuchList):
        store.remove_entries("nope", [("pdq", pdq(1))])


def test_a_case_is_withdrawn_only_with_its_secret(store: Store) -> None:
    receipt = store.create_case([NewEntry("pdq", pdq(1)), NewEntry("phash", b"\x5a" * 8)])
    other = store.create_case([NewEntry("pdq", pdq(1))])  # the same photo, another victim
    assert receipt.added == 2 and other.added == 1
    assert receipt.secret != other.secret and len(receipt.secret) >= 32
    assert store.case_status(receipt.case_id, receipt.secret).active == 2
    with pytest.raises(NoSuchCase):
        store.withdraw_case(receipt.case_id, other.secret)
    with pytest.raises(NoSuchCase):
        store.case_status("not-a-case", receipt.secret)
    assert store.withdraw_case(receipt.case_id, receipt.secret) == 2
    status = store.case_status(receipt.case_id, receipt.secret)
    assert (status.active, status.withdrawn) == (0, True)
    # The other victim's copy of the same photo stays listed.
    assert store.list_info(CASE_LIST).entries_by_signal == {"pdq": 1}
    assert store.list_info(CASE_LIST).trust == "victim"


def test_secrets_are_stored_only_salted_and_hashed(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    receipt = store.create_case([NewEntry("pdq", pdq(1))])
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("s.db*"))
    assert receipt.case_id.encode() in raw and receipt.secret.encode() not in raw


def test_sync_applies_changes_with_their_cursor_idempotently(
    store_url: str, tmp_path: Path
) -> None:
    remote = open_store(f"sqlite:///{tmp_path / 'remote.db'}")
    remote.add_entries("a", [NewEntry("pdq", pdq(i)) for i in range(4)])
    remote.remove_entries("a", [("pdq", pdq(2))])
    changes = remote.changes(0, 100, "a")
    remote.close()
    target = open_store(store_url)
    try:
        target.apply_sync("r/a", "copy", changes[:3])
        target.apply_sync("r/a", "copy", changes[:3])  # a retry after a crash: no change
        assert target.sync_cursor("r/a") == 3
        target.apply_sync("r/a", "copy", changes[3:])
        assert target.sync_cursor("r/a") == 5
        assert {e.hash for e in target.list_entries("copy")} == {pdq(0), pdq(1), pdq(3)}
        copied = {c.match_id for c in target.changes(0, 100, "copy") if c.op == "add"}
        assert {c.match_id for c in changes if c.op == "add"} >= copied
    finally:
        target.close()


def test_compaction_equals_a_full_build(store: Store, tmp_path: Path) -> None:
    store.add_entries("a", [NewEntry("pdq", pdq(i)) for i in range(5)])
    store.add_entries("a", [NewEntry("md5", bytes([i]) * 16) for i in range(1, 4)])
    base = read_snapshot(build_snapshot(store, tmp_path / "x").parent)
    store.remove_entries("a", [("pdq", pdq(0)), ("md5", bytes([2]) * 16)])
    store.add_entries(
        "b",
        [
            NewEntry("pdq", pdq(10)),
            NewEntry("dhash", b"\x0f" * 8),
            NewEntry("pdq", pdq(11), variant="crop-center-80"),
        ],
    )
    store.remove_entries("b", [("pdq", pdq(10))])
    compacted = read_snapshot(
        compact_snapshot(base, store.changes(base.last_seq, 100), tmp_path / "x").parent
    )
    full = read_snapshot(build_snapshot(store, tmp_path / "y").parent)
    assert compacted.last_seq == full.last_seq == store.last_seq()
    assert compacted.lists == full.lists
    for name, t in full.tables.items():
        c = compacted.tables[name]
        assert sorted(c.entry_ids.tolist()) == sorted(t.entry_ids.tolist()), name
        order_c, order_t = np.argsort(c.entry_ids), np.argsort(t.entry_ids)
        assert (c.hashes[order_c] == t.hashes[order_t]).all()
        assert (c.match_ids[order_c] == t.match_ids[order_t]).all()
        assert c.variant_of(order_c) == t.variant_of(order_t)
    assert set(compacted.tables) == set(full.tables) == {"pdq", "md5", "dhash"}
    assert "crop-center-80" in full.tables["pdq"].variant_names


def test_version_1_sqlite_stores_migrate_with_their_entries(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version=1; COMMIT;")
        db.execute("INSERT INTO lists (name, created_at) VALUES ('old', '2026-01-01')")
        db.execute(
            "INSERT INTO entries (list_id, signal, hash, match_id, added_at)"
            " VALUES (1, 'pdq', ?, ?, '2026-01-01')",
            (pdq(1), b"m" * 12),
        )
    store = open_store(f"sqlite:///{path}")
    try:
        [change] = store.changes(0, 10)
        assert (change.op, change.list, change.hash, change.match_id) == (
            "add",
            "old",
            pdq(1),
            b"m" * 12,
        )
        assert store.list_info("old").trust == "unverified"
        assert store.add_entries("old", [NewEntry("pdq", pdq(2))]).added == 1
        assert store.changes(1, 10)[0].entry_id > change.entry_id
    finally:
        store.close()


def test_change_log_entries_name_their_list(store: Store) -> None:
    store.add_entries("x", [NewEntry("pdq", pdq(5))])
    [c] = store.changes(0, 10, "x")
    assert isinstance(c, Change) and c.list == "x" and c.at > 1.7e9
    assert store.changes(0, 10, "y") == []


def test_a_key_is_match_only_only_when_issued_so(store_url: str) -> None:
    store = open_store(store_url)
    try:
        plain, _ = store.create_key("t", ["check"])
        blind, _ = store.create_key("t", ["check"], match_only=True)
        kept = {k.key_id: k.match_only for k in store.api_keys()}
        assert kept == {plain.key_id: False, blind.key_id: True}
    finally:
        store.close()


def test_keys_create_match_only_is_listed(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    url = f"sqlite:///{tmp_path / 'store.db'}"
    done = run_cli("keys", "create", "--store", url, "--tenant", "t", "--role", "check",
                   "--match-only")  # fmt: skip
    assert done.returncode == 0, done.stderr
    key_id = done.stdout.split()[2]
    assert (
        f"{key_id}  t  check  *  default  active  match-only"
        in run_cli("keys", "list", "--store", url).stdout
    )
