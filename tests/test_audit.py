"""The audit log loses nothing it promises: not a batch the store refuses, not to a full
queue, not to a shutdown with RPCs in flight, not the committed part of a failed upload;
and nothing but the operator's prune deletes from it."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import grpc
import pytest

import service.audit
from hashmatch.channel import open_channel
from hashmatch.client import MatchClient
from hashmatch.v1 import match_pb2, match_pb2_grpc, submission_pb2, submission_pb2_grpc
from indexer.store import AuditEvent, Store, open_store
from service.audit import AuditLog
from service.batcher import Overloaded
from tests.conftest import run_cli
from tests.test_security import HASHES, creds, key, random_pdq, secured


class FlakyStore:
    def __init__(self) -> None:
        self.fail = True
        self.written: list[AuditEvent] = []

    def append_audit(self, events: list[AuditEvent]) -> None:
        if self.fail:
            self.fail = False
            raise OSError("disk full")
        self.written += events


def test_a_refused_batch_is_written_on_the_next_flush() -> None:
    store = FlakyStore()
    audit = AuditLog(cast(Store, store))
    for k in range(3):
        audit.record("t/key", "upload", "a", n=k)
    with pytest.raises(OSError):
        audit.flush()
    audit.record("t/key", "upload", "a", n=3)
    audit.flush()
    assert [e.detail["n"] for e in store.written] == [0, 1, 2, 3]
    audit.flush()
    assert len(store.written) == 4


class GatedStore:
    """A store whose audit writes wait until it is opened: a writer that fell behind."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.written: list[AuditEvent] = []

    def append_audit(self, events: list[AuditEvent]) -> None:
        self.open.wait(30)
        self.written += events


def test_a_full_queue_holds_the_recording_request_back_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service.audit, "MAX_QUEUED", 10)
    store = GatedStore()
    audit = AuditLog(cast(Store, store))

    def record_all() -> None:
        for k in range(100):
            audit.record("t/key", "match", "a", n=k)

    recorder = threading.Thread(target=record_all)
    writer = threading.Thread(target=audit.flush)  # takes what is queued, then waits
    recorder.start()
    writer.start()
    time.sleep(0.5)
    assert recorder.is_alive(), "a full queue did not hold the recording request back"
    store.open.set()
    while recorder.is_alive():
        audit.flush()
    writer.join()
    audit.flush()
    assert [e.detail["n"] for e in store.written] == list(range(100))


def test_a_queue_that_stays_full_fails_the_request_instead_of_dropping_its_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service.audit, "MAX_QUEUED", 2)
    monkeypatch.setattr(service.audit, "MAX_WAIT_SECONDS", 0.2, raising=False)
    store = GatedStore()
    audit = AuditLog(cast(Store, store))
    audit.record("t/key", "match", "a", n=0)
    audit.record("t/key", "match", "a", n=1)
    with pytest.raises(Overloaded, match="audit log"):
        audit.record("t/key", "match", "a", n=2)
    store.open.set()
    audit.flush()
    assert [e.detail["n"] for e in store.written] == [0, 1]


def match_events(url: str) -> list[AuditEvent]:
    store = open_store(url)
    try:
        return [e for e in store.audit_events(0, 100_000) if e.action == "match"]
    finally:
        store.close()


def test_sigterm_with_rpcs_in_flight_loses_none_of_their_audit_events(tmp_path: Path) -> None:
    with secured(tmp_path) as (proc, url):
        token = key(url, "check")
        answered = 0

        def requests() -> Iterator[match_pb2.CheckRequest]:
            for i in range(40):
                if i == 10:  # the stream stays open through the shutdown's grace period
                    proc.process.send_signal(signal.SIGTERM)
                query = match_pb2.Query(signal="pdq", hash=HASHES[i % 10])
                yield match_pb2.CheckRequest(queries=[query])
                time.sleep(0.05)

        with open_channel(proc.address, creds(token)) as ch:
            stub = match_pb2_grpc.MatchServiceStub(ch)
            for response in stub.CheckStream(requests(), timeout=30):
                answered += sum(len(r.matches) for r in response.results)
        assert proc.process.wait(30) == 0
    assert answered == 40
    assert len(match_events(url)) == answered


def test_the_committed_part_of_a_failed_upload_is_audited(tmp_path: Path) -> None:
    with secured(tmp_path) as (proc, url):
        token = key(url, "list-manage")
        fresh = [submission_pb2.HashEntry(signal="pdq", hash=h) for h in random_pdq(3, 40)]
        messages = [
            submission_pb2.UploadRequest(list="a", entries=fresh),
            submission_pb2.UploadRequest(list="b"),  # one upload goes to one list
        ]
        with open_channel(proc.address, creds(token)) as ch:
            stub = submission_pb2_grpc.SubmissionServiceStub(ch)
            with pytest.raises(grpc.RpcError) as info:
                stub.Upload(iter(messages), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        store = open_store(url)
        try:
            assert store.list_info("a").entries == 13  # the first message was committed
            deadline = time.monotonic() + 10
            while not (uploads := [e for e in store.audit_events() if e.action == "upload"]):
                assert time.monotonic() < deadline, "the committed entries were never audited"
                time.sleep(0.1)
        finally:
            store.close()
    [upload] = uploads
    assert upload.list == "a" and upload.detail["added"] == 3 and upload.detail["failed"]
    assert upload.actor.startswith("t/")


def test_only_the_operators_prune_deletes_from_the_audit_log(store_url: str) -> None:
    store = open_store(store_url)
    store.append_audit(
        [AuditEvent("t/k", "match", "a", {"n": n}, at) for n, at in enumerate((1e3, 2e3, 3e9))]
    )
    store.close()
    refusals = ["UPDATE audit SET actor = 'someone else'", "DELETE FROM audit"]
    refusals += ["DELETE FROM audit WHERE at < 2500"]
    if store_url.startswith("postgresql"):
        refusals.append("TRUNCATE audit")
    for sql in refusals:
        with pytest.raises(Exception, match="append-only"):
            raw_sql(store_url, sql)
    future = run_cli("audit", "--store", store_url, "--prune-before", "2999-01-01")
    assert future.returncode == 2 and "in the future" in future.stderr
    done = run_cli("audit", "--store", store_url, "--prune-before", "1970-01-01T00:41:40")
    assert done.returncode == 0, done.stderr
    assert "pruned 2 audit events" in done.stdout
    for sql in refusals[:2] + refusals[3:]:  # the prune left no way open behind it
        with pytest.raises(Exception, match="append-only"):
            raw_sql(store_url, sql)
    store = open_store(store_url)
    try:
        events = store.audit_events()
    finally:
        store.close()
    assert [e.detail.get("n") for e in events] == [2, None]
    assert events[-1].action == "prune_audit" and events[-1].actor == "operator"
    assert events[-1].detail == {"before": 2500.0, "removed": 2}


def raw_sql(url: str, sql: str) -> None:
    """Run one statement on the store's database directly, as anyone with access could."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            db.execute(sql)
        return
    import psycopg

    with psycopg.connect(url) as db:
        db.execute(sql.encode())


def test_a_server_whose_audit_writer_is_stuck_holds_requests_back_and_loses_nothing(
    tmp_path: Path,
) -> None:
    with secured(tmp_path, "--audit-queue", "4") as (proc, url):
        token = key(url, "check")
        answered: list[int] = []

        def check() -> None:
            with MatchClient(proc.address, credentials=creds(token)) as client:
                verdicts = client.check([("pdq", h) for h in HASHES[:10]])
                answered.append(sum(len(v.matches) for v in verdicts))

        lock = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # the audit writer can't write until this ends
        checkers = [threading.Thread(target=check) for _ in range(4)]
        for t in checkers:
            t.start()
        time.sleep(2)
        held = sum(t.is_alive() for t in checkers)
        lock.execute("ROLLBACK")
        lock.close()
        for t in checkers:
            t.join(60)
        assert held, "40 match events fit a queue of 4 while the writer was stuck"
        assert sum(answered) == 40
        deadline = time.monotonic() + 15
        while len(match_events(url)) < 40 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(match_events(url)) == 40
