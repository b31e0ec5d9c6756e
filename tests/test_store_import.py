"""The SQLite store and list imports: counts, duplicates, refusals by line number."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from hashmatch.signals import SIGNALS
from indexer.imports import import_lines
from indexer.store import MATCH_ID_BYTES, NewEntry, StoreURLError, open_store
from indexer.store.sqlite import MIGRATIONS
from tests.conftest import run_cli
from tests.hostile_hex import SPACED_PDQ_HEX

PDQ_A = "2d6b1af3a956c529e79ca3d2526fa834d4196c81cedd04de0a26b855fc99b724"
PDQ_B = "8c629e779a663698b9a33866c026726c21a679f61eb6e1f8c79ba7e23c8299e0"
NBYTES = {name: s.nbytes for name, s in SIGNALS.items()}


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def test_json_lines_and_csv_import_with_refusals(store_url: str) -> None:
    lines = [
        json.dumps({"file": "a.jpg", "signal": "pdq", "hash": PDQ_A, "quality": 100}),
        f"pdq,{PDQ_B},case-17",
        "",
        "# comment",
        "phash,c2924c5532bddfc8",
        f"pdq,{PDQ_A}",  # duplicate of line 1
        "pdq,zz",
        "photodna,00",
        "only-one-field",
        '{"signal": "pdq", "hash": ',
        '{"signal": "pdq", "hash": "00", "quality": "high"}',
        "md5,0123456789abcdef0123456789ABCDEF",
        "0123456789abcdef",
    ]
    store = open_store(store_url)
    report = import_lines(store, "hotline-a", lines)
    assert (report.added, report.duplicates) == (4, 1)
    refused = {r.line: r.reason for r in report.refused}
    assert set(refused) == {7, 8, 9, 10, 11, 13}
    assert refused[13] == "a bare hex hash: give its signal type with --signal"
    assert refused[7] == "pdq hash: expected 64 hex characters, got 2"
    assert refused[8].startswith("unknown signal 'photodna'")
    assert refused[9].startswith("malformed CSV")
    assert refused[10].startswith("malformed JSON")
    assert '"quality" must be an integer' in refused[11]
    assert sorted(store.read_image(NBYTES).signals) == ["md5", "pdq", "phash"]
    assert list(store.lists().values()) == ["hotline-a"]
    store.close()


def test_degenerate_hashes_are_refused_at_import(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    lines = [
        f"pdq,{PDQ_A}",
        "pdq," + "0" * 64,
        "phash,8000000000000000",
        json.dumps({"signal": "pdq", "hash": PDQ_B, "quality": 34}),
        "pdq,00001134000011342c4b00002c4b1134000000002c4b2c4b00002c4b8200554b",
    ]
    report = import_lines(store, "l", lines)
    store.close()
    assert report.added == 1
    refused = {r.line: r.reason for r in report.refused}
    assert refused[2] == "pdq hash has all bits zero: a featureless image"
    assert refused[3].startswith("phash hash sets 1 of 64 bits")
    assert refused[4] == "pdq quality 34 is below 50: too little detail to match safely"
    assert "sets 60 of 256 bits" in refused[5], "a flat white image's PDQ, quality unknown"


def test_csv_header_and_refs_are_kept(tmp_path: Path) -> None:
    store = open_store(url(tmp_path))
    report = import_lines(store, "l", ["signal,hash,ref", f"pdq,{PDQ_A},IWF-123"])
    assert report.added == 1 and not report.refused
    store.close()
    with sqlite3.connect(tmp_path / "store.db") as db:
        assert db.execute("SELECT source_ref FROM entries").fetchone() == ("IWF-123",)


def test_entries_survive_reopen_with_opaque_match_ids(store_url: str) -> None:
    store = open_store(store_url)
    store.add_entries(
        "l", [NewEntry("pdq", bytes.fromhex(PDQ_A)), NewEntry("pdq", bytes.fromhex(PDQ_B))]
    )
    store.close()
    store = open_store(store_url)
    image = store.read_image(NBYTES)
    e = image.signals["pdq"]
    assert e.hashes.shape == (2, 32) and e.match_ids.shape == (2, MATCH_ID_BYTES)
    assert bytes(e.hashes[0]) == bytes.fromhex(PDQ_A)
    assert len({bytes(m) for m in e.match_ids}) == 2
    assert all(bytes(m) not in bytes.fromhex(PDQ_A) + bytes.fromhex(PDQ_B) for m in e.match_ids)
    assert image.last_seq == store.last_seq() == 2
    store.close()


def test_same_hash_in_two_lists_is_two_entries(store_url: str) -> None:
    store = open_store(store_url)
    for name in ("a", "b"):
        assert store.add_entries(name, [NewEntry("pdq", bytes.fromhex(PDQ_A))]).added == 1
    assert len(store.read_image(NBYTES).signals["pdq"].entry_ids) == 2
    store.close()


def test_postgres_schema_is_versioned(postgres_url: str) -> None:
    import psycopg

    from indexer.store.postgresql import MIGRATIONS as PG_MIGRATIONS

    open_store(postgres_url).close()
    open_store(postgres_url).close()  # a second start migrates nothing
    with psycopg.connect(postgres_url, autocommit=True) as db:
        versions = [r[0] for r in db.execute("SELECT version FROM hashmatch_schema")]
        assert versions == list(range(1, len(PG_MIGRATIONS) + 1))
        db.execute("INSERT INTO hashmatch_schema VALUES (99)")
    with pytest.raises(RuntimeError, match="schema version 99"):
        open_store(postgres_url)


def test_an_index_builds_from_either_backend(store_url: str, tmp_path: Path) -> None:
    from indexer.snapshot import read_snapshot
    from tests.conftest import build_index

    store = open_store(store_url)
    import_lines(store, "l", [f"pdq,{PDQ_A}", f"pdq,{PDQ_B}", "phash,c2924c5532bddfc8"])
    store.close()
    snap = read_snapshot(build_index(store_url, tmp_path / "index").parent)
    assert {s: t.count for s, t in snap.tables.items()} == {"pdq": 2, "phash": 1}
    assert snap.lists == ("l",)


def test_schema_is_versioned(tmp_path: Path) -> None:
    open_store(url(tmp_path)).close()
    with sqlite3.connect(tmp_path / "store.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="schema version 99"):
        open_store(url(tmp_path))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("hashmatch.db", "has no scheme"),
        ("mysql://x/y", "unsupported scheme 'mysql' \\(supported: sqlite, postgresql\\)"),
        ("sqlite://relative.db", "expected sqlite:///PATH"),
    ],
)
def test_bad_store_urls(bad: str, message: str) -> None:
    with pytest.raises(StoreURLError, match=message):
        open_store(bad)


def test_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no directory"):
        open_store(f"sqlite:///{tmp_path / 'nope' / 'x.db'}")


def test_spaced_hex_is_refused_by_line_and_the_build_still_runs(tmp_path: Path) -> None:
    """A full-length field with whitespace between byte pairs once went in as a short hash
    ("added 1"), and the next `index build` died reshaping it."""
    store_url = url(tmp_path)
    listing = tmp_path / "list.csv"
    listing.write_text(
        f"pdq,{SPACED_PDQ_HEX}\n"
        f"pdq {SPACED_PDQ_HEX}\n"
        + json.dumps({"signal": "pdq", "hash": SPACED_PDQ_HEX})
        + "\n"
        + f"pdq,{SPACED_PDQ_HEX.replace(' ', chr(9))}\n"
        + f"pdq,  {PDQ_A}  \n"  # whitespace around a whole field is still stripped
    )
    done = run_cli("import", "--store", store_url, "--list", "l", str(listing))
    assert done.returncode == 0, done.stderr
    assert "added 1, duplicates 0, refused 4" in done.stdout
    for line in (1, 2, 3):
        assert f"line {line}: refused: pdq hash: not hex: contains ' ' at position 2" in (
            done.stderr
        )
    assert "line 4: refused: pdq hash: not hex: contains '\\t' at position 2" in done.stderr
    store = open_store(store_url)
    try:
        assert [e.hash for e in store.list_entries("l")] == [bytes.fromhex(PDQ_A)]
    finally:
        store.close()
    built = run_cli("index", "build", "--store", store_url, "--out", str(tmp_path / "index"))
    assert built.returncode == 0, built.stderr
    assert "pdq 1" in built.stdout
