"""A hash of the wrong shape is refused at every door, and one already inside halts
nothing: over real gRPC against a server that requires keys.

The shape that once got through: full-length hex with whitespace between byte pairs,
which decoded to a short hash (tests.hostile_hex).
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hashmatch.channel import open_channel
from hashmatch.client import MatchClient
from hashmatch.demo.serve_process import ServerProcess, running_server
from hashmatch.submission import SubmissionClient
from hashmatch.v1 import match_pb2, match_pb2_grpc, submission_pb2, submission_pb2_grpc
from indexer.store import NewEntry, open_store
from indexer.store.sqlite import MIGRATIONS
from tests.conftest import run_cli
from tests.hostile_hex import SPACED_PDQ_HEX
from tests.test_security import HASHES, creds, key, random_pdq, secured

HONEST = 50


def refusal(call: object) -> str:
    """The details of the INVALID_ARGUMENT `call` must end in."""
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    return str(info.value.details())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    with secured(tmp_path) as s:
        yield s


def test_spaced_hex_as_a_keys_first_check_is_refused_and_its_later_checks_all_work(
    server: tuple[ServerProcess, str],
) -> None:
    """Once, the spaced hex answered INTERNAL; as a key's first query it sized the probing
    watch's history of that key at 31 bytes, and every later honest check failed."""
    proc, url = server
    token = key(url, "check", rate=1e6)
    spaced = match_pb2.Query(signal="pdq", hex=SPACED_PDQ_HEX)
    honest = match_pb2.Query(signal="pdq", hash=HASHES[0])
    with open_channel(proc.address, creds(token)) as ch:
        stub = match_pb2_grpc.MatchServiceStub(ch)
        why = refusal(lambda: stub.Check(match_pb2.CheckRequest(queries=[spaced]), timeout=10))
        assert why == "query 0: pdq hash: not hex: contains ' ' at position 2"
        mixed = match_pb2.CheckRequest(queries=[honest, spaced])
        assert refusal(lambda: stub.Check(mixed, timeout=10)).startswith("query 1: pdq hash")
        assert refusal(lambda: list(stub.CheckStream(iter([mixed]), timeout=10))).startswith(
            "query 1: pdq hash"
        )
    with MatchClient(proc.address, credentials=creds(token)) as client:
        for unlisted in random_pdq(HONEST, 3):
            [verdict] = client.check([("pdq", HASHES[0])])
            assert verdict.matched and verdict.matches[0].list == "a"
            [verdict] = client.check([("pdq", unlisted)])
            assert not verdict.matched


def test_spaced_hex_is_refused_in_cases_uploads_removals_and_confirmations(
    server: tuple[ServerProcess, str],
) -> None:
    proc, url = server
    admin = key(url, "admin", rate=1e6)
    spaced = submission_pb2.HashEntry(signal="pdq", hex=SPACED_PDQ_HEX)
    with open_channel(proc.address, creds(admin)) as ch:
        stub = submission_pb2_grpc.SubmissionServiceStub(ch)
        case = submission_pb2.SubmitCaseRequest(hashes=[spaced])
        assert refusal(lambda: stub.SubmitCase(case, timeout=10)).startswith(
            "hash 0: pdq hash: not hex: contains ' '"
        )
        removal = submission_pb2.RemoveEntriesRequest(list="a", entries=[spaced])
        assert refusal(lambda: stub.RemoveEntries(removal, timeout=10)).startswith(
            "entry 0: pdq hash: not hex"
        )
        spaced_id = submission_pb2.ConfirmEntryRequest(list="a", match_id="00 11 " + "ab" * 9)
        assert refusal(lambda: stub.ConfirmEntry(spaced_id, timeout=10)).startswith(
            "match_id: not hex: contains ' ' at position 2"
        )
        new = random_pdq(1, 77)[0]
        upload = submission_pb2.UploadRequest(
            list="a", entries=[spaced, submission_pb2.HashEntry(signal="pdq", hex=new.hex())]
        )
        done = stub.Upload(iter([upload]), timeout=10)
        assert (done.added, done.refused) == (1, 1)
        assert done.refusals[0].index == 0
        assert "not hex: contains ' ' at position 2" in done.refusals[0].reason
    with MatchClient(proc.address, credentials=creds(admin)) as client:
        deadline = time.monotonic() + 10
        while not client.check([("pdq", new)])[0].matched:
            assert time.monotonic() < deadline, "the good entry of the upload never matched"
            time.sleep(0.1)
    store = open_store(url)
    try:
        assert all(len(e.hash) == 32 for e in store.list_entries("a"))
    finally:
        store.close()


def old_store_with_entries(path: Path, rows: list[tuple[str, bytes]]) -> None:
    """A store at schema version 4 (before hash lengths were enforced) whose list 'a' holds
    `rows`, each with its change log line, written by raw SQL as an older release could."""
    with sqlite3.connect(path) as db:
        if db.execute("PRAGMA user_version").fetchone()[0] == 0:
            for number, script in enumerate(MIGRATIONS[:4], start=1):
                db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
            db.execute("INSERT INTO lists (name, created_at) VALUES ('a', '2026-01-01')")
        for signal, hash_bytes in rows:
            db.execute(
                "INSERT INTO entries (list_id, signal, hash, match_id) VALUES (1, ?, ?, ?)",
                (signal, hash_bytes, hash_bytes[:12].ljust(12, b"m")),
            )
            db.execute(
                "INSERT INTO changes (op, at, entry_id, list_id, signal, hash, match_id)"
                " SELECT 'add', ?, id, list_id, signal, hash, match_id FROM entries"
                " WHERE id = last_insert_rowid()",
                (time.time(),),
            )


def test_a_short_hash_from_an_old_release_is_moved_and_halts_nothing(tmp_path: Path) -> None:
    """The store's snapshot predates a short hash an older release imported: upgraded, the
    store moves it to malformed_entries, and the server follows past its change log line,
    a sync puller refuses that line alone, and compaction leaves it out."""
    path = tmp_path / "store.db"
    good, short = HASHES[0], HASHES[1][:31]
    old_store_with_entries(path, [("pdq", good)])
    shutil.copy(path, tmp_path / "then.db")  # the store as it was at the last build
    built = run_cli(
        "index", "build", "--store", f"sqlite:///{tmp_path / 'then.db'}",
        "--out", str(tmp_path / "index"),
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    old_store_with_entries(path, [("pdq", short)])
    url = f"sqlite:///{path}"
    later = random_pdq(1, 99)[0]
    with running_server(tmp_path / "index", "--store", url, "--poll-interval", "0.1") as proc:
        admin = key(url, "admin", rate=1e6)
        with SubmissionClient(proc.address, credentials=creds(admin)) as sub:
            assert sub.upload("a", [NewEntry("pdq", later)]).added == 1
        with MatchClient(proc.address, credentials=creds(admin)) as client:
            deadline = time.monotonic() + 10
            while not client.check([("pdq", later)])[0].matched:
                assert time.monotonic() < deadline, "the follower stopped at the short hash"
                time.sleep(0.1)
            assert client.check([("pdq", good)])[0].matched
        log = "\n".join(proc.log)
        assert "moved to malformed_entries: pdq hash is 31 bytes, not 32" in log
        assert "skipping change 2 (add of entry 2): pdq hash must be 32 bytes, got 31" in log

        copy = f"sqlite:///{tmp_path / 'copy.db'}"
        pulled = run_cli(
            "sync", "pull", "--store", copy, "--from", proc.address, "--list", "a",
            "--api-key", admin,
        )  # fmt: skip
        assert pulled.returncode == 0, pulled.stderr
        assert "refused: change 2: pdq hash must be 32 bytes, got 31" in pulled.stderr
        assert "added 2, removed 0, refused 1, at change 3" in pulled.stdout
    compacted = run_cli("index", "compact", "--store", url, "--out", str(tmp_path / "index"))
    assert compacted.returncode == 0, compacted.stderr
    assert "pdq 2" in compacted.stdout
    store = open_store(url)
    try:
        assert sorted(e.hash for e in store.list_entries("a")) == sorted([good, later])
    finally:
        store.close()
