"""Bounds on feedback: reports waiting for their served record (each holds a server
thread) and the counts a downstream hands `sync feedback`."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from hashmatch.list_formats import NewEntry
from hashmatch.v1 import feedback_pb2
from indexer.store import CASE_LIST, MAX_COUNT, open_store
from indexer.sync import SyncError, pull_feedback
from service.auth import Caller, RateLimited
from service.feedback import SERVED_GRACE, GraceSlots
from tests.conftest import run_cli
from tests.test_attack27 import HOT, HostileDownstream, hostile, match_ids

__all__ = ["hostile"]  # the fixture, shared with the attack tests


def caller(actor: str) -> Caller:
    return Caller(actor, frozenset({"check"}), None, actor, None)


def test_grace_slots_bound_waiting_reports_per_key_and_in_all() -> None:
    """Sixty threads of six keys ask at once while holding their slot: never more than 2
    a key or 8 in all are held, the rest are refused at once with the grace as retry,
    and every slot comes back (also when the body raises)."""
    slots = GraceSlots(per_key=2, in_all=8)
    held: dict[str, int] = {}
    peak = {"all": 0, "key": 0}
    refused: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(60)

    def one(actor: str) -> None:
        start.wait()
        try:
            with slots.slot(caller(actor)):
                with lock:
                    held[actor] = held.get(actor, 0) + 1
                    peak["key"] = max(peak["key"], held[actor])
                    peak["all"] = max(peak["all"], sum(held.values()))
                time.sleep(0.05)
                with lock:
                    held[actor] -= 1
                raise ValueError("the body failed")
        except RateLimited as exc:
            refused.append(exc.retry_after)
        except ValueError:
            pass

    threads = [threading.Thread(target=one, args=(f"t/k{i % 6}",)) for i in range(60)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started < 2.0
    assert peak["key"] <= 2 and peak["all"] <= 8
    assert peak["all"] >= 2  # some did wait
    assert refused and set(refused) == {SERVED_GRACE}
    for i in range(4):  # all returned: a fresh key and this one get slots again
        with slots.slot(caller(f"t/k{i}")), slots.slot(caller(f"t/k{i}")):
            pass


def test_pulled_counts_past_the_stores_range_or_off_the_list_are_refused_and_counted(
    tmp_path: Path, hostile: HostileDownstream
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'up.db'}")
    try:
        store.add_entries("hotline", [NewEntry("pdq", h) for h in HOT[:2]])
        store.create_case([NewEntry("pdq", HOT[2])])
        kept, huge = match_ids(tmp_path / "up.db", "hotline")
        [case] = match_ids(tmp_path / "up.db", CASE_LIST)
        hostile.entries = [
            feedback_pb2.EntryFeedback(match_id=kept, seq=1, confirmed=3),
            feedback_pb2.EntryFeedback(match_id=huge, seq=2, false_positive=MAX_COUNT + 1),
            feedback_pb2.EntryFeedback(match_id=case, seq=3, false_positive=5),
            feedback_pb2.EntryFeedback(match_id=b"short", seq=4, confirmed=1),
        ]
        report = pull_feedback(store, hostile.address, "hotline")
        assert (report.added, report.refused, report.cursor) == (1, 3, 4)
        assert any(str(MAX_COUNT) in r for r in report.refusals)
        assert any(case.hex() in r and "hotline" in r for r in report.refusals)
        remote = {i.match_id: i.remote for i in store.review_queue(None) if i.remote}
        assert list(remote) == [kept]
    finally:
        store.close()


def test_the_cli_names_a_hostile_seq_without_a_traceback(
    tmp_path: Path, hostile: HostileDownstream
) -> None:
    url = f"sqlite:///{tmp_path / 'up.db'}"
    store = open_store(url)
    try:
        store.add_entries("hotline", [NewEntry("pdq", HOT[0])])
    finally:
        store.close()
    [mine] = match_ids(tmp_path / "up.db", "hotline")
    hostile.entries = [feedback_pb2.EntryFeedback(match_id=mine, seq=2**64 - 1, confirmed=1)]
    result = run_cli(
        "sync", "feedback", "--store", url, "--from", hostile.address, "--list", "hotline"
    )
    assert result.returncode != 0
    assert str(2**64 - 1) in result.stderr and "Traceback" not in result.stderr


def test_feedback_for_a_list_we_do_not_hold_is_a_sync_error(
    tmp_path: Path, hostile: HostileDownstream
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'up.db'}")
    try:
        store.add_entries("hotline", [NewEntry("pdq", HOT[0])])
        [mine] = match_ids(tmp_path / "up.db", "hotline")
        hostile.entries = [feedback_pb2.EntryFeedback(match_id=mine, seq=1, confirmed=1)]
        with pytest.raises(SyncError, match="no-such-list"):
            pull_feedback(store, hostile.address, "no-such-list")
    finally:
        store.close()
