"""Feeding the list over real gRPC: victims' cases, hotline lists, freshness without
rebuilds, background compaction, and sync between two servers with their own stores."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest

from hashmatch.client import MatchClient
from hashmatch.demo.serve_process import ServerProcess, running_server
from hashmatch.hashing import hash_bytes
from hashmatch.list_formats import NewEntry
from hashmatch.signals import SIGNALS, get_signal
from hashmatch.submission import SubmissionClient
from hashmatch.v1 import submission_pb2
from indexer.store import open_store
from tests.conftest import run_cli

PDQ = get_signal("pdq")


def random_pdq(n: int, seed: int) -> list[bytes]:
    rows = np.random.default_rng(seed).integers(0, 256, (n, 32), dtype=np.uint8)
    return [bytes(r) for r in rows]


@contextmanager
def serve(
    tmp_path: Path, name: str, *args: str, url: str | None = None
) -> Iterator[tuple[ServerProcess, str]]:
    url = url or f"sqlite:///{tmp_path / f'{name}.db'}"
    with running_server(
        tmp_path / f"{name}-index", "--store", url, "--no-auth", "--poll-interval", "0.1", *args
    ) as proc:
        yield proc, url


@pytest.fixture
def fed(tmp_path: Path, store_url: str) -> Iterator[tuple[ServerProcess, str]]:
    """A server taking submissions, on each store backend."""
    with serve(tmp_path, "a", url=store_url) as server:
        yield server


def photo_entries(photos: dict[str, bytes], name: str) -> list[NewEntry]:
    return [
        NewEntry(h.signal, h.hash, h.quality)
        for h in hash_bytes(photos[name], [SIGNALS["pdq"], SIGNALS["phash"]])
    ]


def matched(address: str, entries: list[NewEntry]) -> list[bool]:
    with MatchClient(address) as client:
        return [v.matched for v in client.check([(e.signal, e.hash) for e in entries])]


def test_a_victims_case_matches_at_once_and_stops_on_withdrawal(
    fed: tuple[ServerProcess, str], photos: dict[str, bytes]
) -> None:
    proc, _ = fed
    entries = photo_entries(photos, "astronaut")
    with SubmissionClient(proc.address) as sub:
        receipt = sub.submit_case(entries)
        assert receipt.added == 2 and receipt.case_id and len(receipt.withdrawal_secret) >= 32
        assert matched(proc.address, entries) == [True, True]  # in effect on return
        status = sub.case_status(receipt.case_id, receipt.withdrawal_secret)
        assert (status.active_hashes, status.withdrawn) == (2, False)
        with pytest.raises(grpc.RpcError) as info:
            sub.withdraw(receipt.case_id, "not-the-secret")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert matched(proc.address, entries) == [True, True]
        started = time.monotonic()
        assert sub.withdraw(receipt.case_id, receipt.withdrawal_secret) == 2
        assert matched(proc.address, entries) == [False, False]
        assert time.monotonic() - started < 1.0
        assert sub.case_status(receipt.case_id, receipt.withdrawal_secret).withdrawn


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            submission_pb2.HashEntry(signal="pdq", hash=bytes(32)),
            "hash 0: refused: pdq hash has all bits zero",
        ),
        (
            submission_pb2.HashEntry(signal="pdq", hex="ab" * 32, quality=20),
            "hash 0: refused: pdq quality 20 is below 50",
        ),
        (submission_pb2.HashEntry(signal="pdq", hash=b"\x01"), "hash 0: pdq hash must be 32 bytes"),
        (submission_pb2.HashEntry(signal="photodna", hex="00"), "hash 0: unknown signal"),
    ],
)
def test_bad_case_hashes_are_refused_naming_the_problem(
    fed: tuple[ServerProcess, str], entry: submission_pb2.HashEntry, message: str
) -> None:
    from hashmatch.v1 import submission_pb2_grpc

    with grpc.insecure_channel(fed[0].address) as channel:
        stub = submission_pb2_grpc.SubmissionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitCase(submission_pb2.SubmitCaseRequest(hashes=[entry]), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (info.value.details() or "")
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitCase(submission_pb2.SubmitCaseRequest(), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_hotline_lists_over_the_cli(fed: tuple[ServerProcess, str], tmp_path: Path) -> None:
    proc, _ = fed
    hashes = random_pdq(12_000, 1)
    lines = ["signal,hash,ref", *(f"pdq,{h.hex()},ref-{i}" for i, h in enumerate(hashes))]
    lines += ["pdq,00", "pdq," + "0" * 64, f"pdq,{hashes[0].hex()}"]
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    server = ("--server", proc.address)
    done = run_cli("list", "create", *server, "iwf", "--owner", "IWF", "--trust", "verified")
    assert done.returncode == 0 and "trust:       verified" in done.stdout, done.stderr
    again = run_cli("list", "create", *server, "iwf")
    assert again.returncode == 1 and "ALREADY_EXISTS" in again.stderr
    up = run_cli("list", "upload", *server, "iwf", str(tmp_path / "list.csv"))
    assert up.returncode == 0, up.stderr
    assert "list iwf: added 12000, duplicates 1, refused 2" in up.stdout
    assert "line 12002: refused: pdq hash: expected 64 hex characters" in up.stderr
    assert "line 12003: refused: pdq hash has all bits zero" in up.stderr
    assert "hashes" in up.stderr  # the progress bar
    info = run_cli("list", "info", *server, "iwf")
    assert "entries:     12000 (pdq 12000)" in info.stdout and "owner:       IWF" in info.stdout
    probe = [NewEntry("pdq", h) for h in hashes[:3]]
    deadline = time.monotonic() + 5
    while not all(matched(proc.address, probe)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert matched(proc.address, probe) == [True, True, True]
    gone = run_cli("list", "remove", *server, "iwf", "--hash", f"pdq:{hashes[1].hex()}")
    assert "removed 1 of 1" in gone.stdout, gone.stderr
    assert matched(proc.address, probe) == [True, False, True]
    missing = run_cli("list", "upload", *server, "nope", str(tmp_path / "list.csv"))
    assert missing.returncode == 1 and "NOT_FOUND: no list named 'nope'" in missing.stderr


def test_a_victim_submits_with_the_cli(
    fed: tuple[ServerProcess, str], photos: dict[str, bytes], tmp_path: Path
) -> None:
    proc, _ = fed
    image = tmp_path / "mine.png"
    image.write_bytes(photos["coffee"])
    done = run_cli("submit", "--server", proc.address, str(image))
    assert done.returncode == 0, done.stderr
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines()[:3])
    case_id, secret = fields["case id"].strip(), fields["withdrawal secret"].strip()
    listed = int(fields["hashes listed"])
    assert listed > 2, "the photo, its crops and band cuts, under pdq and phash"
    assert "shown only this once" in done.stdout
    check = run_cli("check", "--server", proc.address, str(image))
    assert '"matched": true' in check.stdout
    status = run_cli("status", "--server", proc.address, "--case", case_id, "--secret", secret)
    assert f"active, {listed} hashes active" in status.stdout
    bad = run_cli("withdraw", "--server", proc.address, "--case", case_id, "--secret", "x")
    assert bad.returncode == 1 and "NOT_FOUND" in bad.stderr
    done = run_cli("withdraw", "--server", proc.address, "--case", case_id, stdin=secret + "\n")
    assert f"case {case_id} withdrawn: {listed} hashes removed" in done.stdout, done.stderr
    assert '"matched": false' in run_cli("check", "--server", proc.address, str(image)).stdout


def test_a_write_by_another_process_is_matched_within_5_seconds(
    fed: tuple[ServerProcess, str],
) -> None:
    proc, url = fed
    [h] = random_pdq(1, 7)
    started = time.monotonic()
    store = open_store(url)  # e.g. `hashmatch import` run beside the server
    store.add_entries("other", [NewEntry("pdq", h)])
    store.close()
    while not matched(proc.address, [NewEntry("pdq", h)])[0]:
        assert time.monotonic() - started < 5, "not matched within 5 s"
        time.sleep(0.02)


def test_compaction_hot_swaps_with_no_failed_request(tmp_path: Path) -> None:
    with serve(tmp_path, "c", "--compact-at", "500", "--reload-interval", "0.2") as (proc, _):
        hashes = random_pdq(2_000, 3)
        probe = [("pdq", h) for h in hashes[:50]]
        errors: list[BaseException] = []
        versions: set[int] = set()
        stop = threading.Event()

        def check_all_the_time() -> None:
            with MatchClient(proc.address) as client:
                while not stop.is_set():
                    try:
                        client.check(probe)
                    except grpc.RpcError as exc:
                        errors.append(exc)

        checker = threading.Thread(target=check_all_the_time)
        checker.start()
        try:
            with SubmissionClient(proc.address) as sub:
                sub.create_list("big")
                sub.upload("big", [NewEntry("pdq", h) for h in hashes])
            deadline = time.monotonic() + 60
            from hashmatch.v1 import match_pb2, match_pb2_grpc
            from hashmatch.wire import query

            with grpc.insecure_channel(proc.address) as channel:
                stub = match_pb2_grpc.MatchServiceStub(channel)
                while time.monotonic() < deadline:
                    r = stub.Check(match_pb2.CheckRequest(queries=[query("pdq", hashes[-1])]))
                    versions.add(r.snapshot_version)
                    if r.snapshot_version > 1 and r.results[0].matched:
                        break
                    time.sleep(0.1)
        finally:
            stop.set()
            checker.join()
        assert max(versions) > 1, "no compacted snapshot came into service"
        assert not errors
        assert all(matched(proc.address, [NewEntry("pdq", h) for h in hashes[::97]]))
        deadline = time.monotonic() + 10
        while not any("compaction done" in line for line in proc.log):
            assert time.monotonic() < deadline, "\n".join(proc.log)
            time.sleep(0.1)


def test_sync_converges_after_adds_removes_and_a_killed_puller(
    tmp_path: Path, postgres_url: str
) -> None:
    """A on PostgreSQL, B on SQLite: two servers, each with its own store."""
    with serve(tmp_path, "a", url=postgres_url) as (a, a_url), serve(tmp_path, "b") as (b, b_url):
        hashes = random_pdq(30_000, 11)
        with SubmissionClient(a.address) as sub:
            sub.create_list("shared", trust="verified")
            sub.upload("shared", [NewEntry("pdq", h, None, f"r{i}") for i, h in enumerate(hashes)])
            sub.remove("shared", [("pdq", h) for h in hashes[:100]])
        pull = [
            sys.executable,
            "-m",
            "hashmatch",
            "sync",
            "pull",
            "--store",
            b_url,
            "--from",
            a.address,
            "--list",
            "shared",
        ]
        # Kill the puller as soon as it has committed its first page.
        puller = subprocess.Popen(pull, stderr=subprocess.PIPE, text=True)
        assert puller.stderr is not None
        for line in puller.stderr:
            if "applied up to change" in line:
                puller.send_signal(signal.SIGKILL)
                break
        puller.wait(30)
        store = open_store(b_url)
        cursor = store.sync_cursor(f"{a.address}/shared")
        store.close()
        assert 0 < cursor < 29_000, "the puller was to die mid-stream"
        done = subprocess.run(pull, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        a_store = open_store(a_url)
        last = a_store.list_info("shared").last_seq
        a_store.close()
        assert f"at change {last}" in done.stdout

        def entries(url: str) -> set[tuple[str, bytes, str | None]]:
            store = open_store(url)
            try:
                return {(e.signal, e.hash, e.source_ref) for e in store.list_entries("shared")}
            finally:
                store.close()

        assert entries(b_url) == entries(a_url)
        assert len(entries(b_url)) > 29_800
        # B's server follows its own store: the pulled entries match there too, same ids.
        probe = [("pdq", hashes[100]), ("pdq", hashes[0])]
        deadline = time.monotonic() + 10
        with MatchClient(a.address) as ca, MatchClient(b.address) as cb:
            while time.monotonic() < deadline and not cb.check(probe)[0].matched:
                time.sleep(0.1)
            va, vb = ca.check(probe), cb.check(probe)
        assert [v.matched for v in vb] == [True, False]
        assert va[0].matches[0].match_id == vb[0].matches[0].match_id
        # More adds and removes on A; an idempotent second pull converges again.
        more = random_pdq(10, 12)
        with SubmissionClient(a.address) as sub:
            sub.upload("shared", [NewEntry("pdq", h) for h in more])
            sub.remove("shared", [("pdq", hashes[200]), ("pdq", more[0])])
        for _ in range(2):
            done = subprocess.run(pull, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
        assert entries(b_url) == entries(a_url)
        with MatchClient(b.address) as cb:
            deadline = time.monotonic() + 5
            while cb.check([("pdq", hashes[200])])[0].matched and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [v.matched for v in cb.check([("pdq", hashes[200]), ("pdq", more[1])])] == [
                False,
                True,
            ]
