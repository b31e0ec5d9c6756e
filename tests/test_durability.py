"""Nothing acknowledged is lost to kill -9: not during a bulk upload, not during victims'
submissions, not during a snapshot build."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from hashmatch.client import MatchClient
from hashmatch.demo.serve_process import running_server
from hashmatch.list_formats import NewEntry
from hashmatch.submission import SubmissionClient
from indexer.snapshot import current_version, read_snapshot
from indexer.store import CaseReceipt, open_store
from tests.conftest import run_cli


def random_pdq(n: int, seed: int) -> list[bytes]:
    rows = np.random.default_rng(seed).integers(0, 256, (n, 32), dtype=np.uint8)
    return [bytes(r) for r in rows]


def consistent(url: str) -> int:
    """Entries in the store; asserts that the change log accounts for every one of them.
    Only for a store nobody is writing: the two are read in separate transactions."""
    store = open_store(url)
    try:
        live: dict[int, bool] = {}
        after = 0
        while page := store.changes(after, 100_000):
            for c in page:
                live[c.entry_id] = c.op == "add"
            after = page[-1].seq
        entries = sum(info.entries for info in (store.list_info(n) for n in store.lists().values()))
        assert entries == sum(live.values()), "entries and change log disagree"
        return entries
    finally:
        store.close()


def entries_in(url: str, list_name: str) -> int:
    store = open_store(url)
    try:
        return store.list_info(list_name).entries
    finally:
        store.close()


def test_kill_9_during_uploads_and_submissions_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    hashes = random_pdq(60_000, 21)
    (tmp_path / "list.csv").write_text("".join(f"pdq,{h.hex()}\n" for h in hashes))
    args = ("--store", url, "--no-auth")
    receipts: list[tuple[CaseReceipt, bytes]] = []
    with running_server(tmp_path / "index", *args) as proc:
        run_cli("list", "create", "--server", proc.address, "bulk")
        upload = subprocess.Popen(
            [sys.executable, "-m", "hashmatch", "list", "upload", "--server", proc.address,
             "bulk", str(tmp_path / "list.csv"), "--no-progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        stop = threading.Event()

        def victims() -> None:
            with SubmissionClient(proc.address, timeout=5) as sub:
                for h in random_pdq(10_000, 22):
                    if stop.is_set():
                        return
                    try:
                        r = sub.submit_case([NewEntry("pdq", h, 100)])
                    except grpc.RpcError:
                        return
                    receipts.append((CaseReceipt(r.case_id, r.withdrawal_secret, r.added), h))

        submitter = threading.Thread(target=victims)
        submitter.start()
        deadline = time.monotonic() + 60
        while entries_in(url, "bulk") < 20_000:  # part of the upload is in
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.process.send_signal(signal.SIGKILL)
        proc.process.wait()
        stop.set()
        submitter.join()
        upload.wait(30)
        assert upload.returncode != 0, "the upload was to be cut off"
    assert receipts, "no case was acknowledged before the kill"
    before_restart = consistent(url)
    with running_server(tmp_path / "index", *args) as proc:
        with SubmissionClient(proc.address) as sub, MatchClient(proc.address) as check:
            for receipt, _ in receipts:
                status = sub.case_status(receipt.case_id, receipt.secret)
                assert status.active_hashes == 1 and not status.withdrawn
            assert all(v.matched for v in check.check([("pdq", h) for _, h in receipts]))
        # Re-sending the whole upload completes it; what was in is counted as duplicates.
        done = run_cli(
            "list", "upload", "--server", proc.address, "bulk", str(tmp_path / "list.csv")
        )
        assert done.returncode == 0, done.stderr
        added = int(done.stdout.split("added ")[1].split(",")[0])
        duplicates = int(done.stdout.split("duplicates ")[1].split(",")[0])
        refused = int(done.stdout.split("refused ")[1])  # random bits can look degenerate
        assert added + duplicates + refused == 60_000 and duplicates >= 20_000
        with MatchClient(proc.address) as check:
            sample = hashes[::600]
            deadline = time.monotonic() + 10
            while not all(v.matched for v in check.check([("pdq", h) for h in sample])):
                assert time.monotonic() < deadline
                time.sleep(0.1)
    assert consistent(url) == before_restart + added


# Runs a snapshot build that SIGKILLs itself at one point of writing the new version:
# before file N (after N complete, fsynced files), after N bytes (partway through a file),
# before the manifest, or with the version renamed into place but CURRENT not yet replaced.
KILLED_BUILD = """
import os, signal, sys
from pathlib import Path
import indexer.snapshot as snapshot
from indexer.build import build_snapshot
from indexer.store import open_store

url, root, point, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def die():
    os.kill(os.getpid(), signal.SIGKILL)
files, written = [0], [0]
write_npy, write_file = snapshot._write_npy, snapshot._write_file
write = snapshot._HashingFile.write
def counted_npy(path, array):
    if point == "file" and files[0] == n:
        die()
    files[0] += 1
    return write_npy(path, array)
def counted_write(self, data):
    if point == "bytes" and written[0] + len(data) > n:
        part = n - written[0]
        write(self, memoryview(data)[:part])
        self._f.flush()
        os.fsync(self._f.fileno())
        die()
    written[0] += len(data)
    return write(self, data)
def manifest(path, data):
    if point == "manifest" or (point == "current" and path.name.startswith(".CURRENT")):
        die()
    return write_file(path, data)
snapshot._write_npy, snapshot._HashingFile.write = counted_npy, counted_write
snapshot._write_file = manifest
build_snapshot(open_store(url), root)
"""


def test_kill_9_at_any_point_of_a_snapshot_write_keeps_the_old_snapshot_current(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    old, new = random_pdq(1_000, 31), random_pdq(20_000, 32)
    store = open_store(url)
    store.add_entries("a", [NewEntry("pdq", h) for h in old])
    store.close()
    root = tmp_path / "index"
    assert run_cli("index", "build", "--store", url, "--out", str(root)).returncode == 0
    store = open_store(url)
    store.add_entries("a", [NewEntry("pdq", h) for h in new])
    store.close()
    points = [("file", 0), ("file", 1), ("file", 4), ("bytes", 1), ("bytes", 300_000)]
    points += [("bytes", 900_000), ("manifest", 0), ("current", 0)]
    for point, n in points:
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_BUILD, url, str(root), point, str(n)], timeout=300
        )
        assert killed.returncode == -signal.SIGKILL, f"the build finished before {point} {n}"
        assert current_version(root) == 1, f"killed at {point} {n}"
        assert read_snapshot(root).tables["pdq"].count == 1_000, f"killed at {point} {n}"
    # The kills left half-written versions behind: the build was in its write phase.
    partial = [p for p in root.glob(".tmp-*") if any(p.iterdir())]
    assert partial and any(f.stat().st_size for p in partial for f in p.iterdir())
    assert len(list(root.glob("v*"))) == 2  # the one killed just before CURRENT moved
    with running_server(root, "--no-auth") as proc, MatchClient(proc.address) as check:
        verdicts = check.check([("pdq", old[7]), ("pdq", new[7])])
        assert [v.matched for v in verdicts] == [True, False]
    assert run_cli("index", "build", "--store", url, "--out", str(root)).returncode == 0
    assert current_version(root) == 3
    assert read_snapshot(root).tables["pdq"].count == 21_000
