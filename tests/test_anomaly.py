"""The match anomaly watch keeps flagging while matches are being counted."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from hashmatch.list_formats import NewEntry
from indexer.store import open_store
from service.anomaly import AnomalyWatch
from service.audit import AuditLog
from service.matcher import Hit


def test_evaluation_under_concurrent_counting_still_flags(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    store.add_entries("a", [NewEntry("pdq", os.urandom(32))])
    [match_id] = store.read_image({"pdq": 32}).signals["pdq"].match_ids
    popular = bytes(match_id).hex()
    watch = AnomalyWatch(store, AuditLog(store), min_matches=100, factor=20)
    # A busy list: many entries matched once each, and one matched far above that norm.
    watch.count(Hit("a", os.urandom(12).hex(), 0) for _ in range(50_000))
    watch.count([Hit("a", popular, 0)] * 5_000)
    stop = threading.Event()

    def busy() -> None:  # the RPC threads, counting the matches they answer
        while not stop.is_set():
            watch.count([Hit("a", os.urandom(12).hex(), 0) for _ in range(50)])

    counters = [threading.Thread(target=busy) for _ in range(2)]
    for t in counters:
        t.start()
    try:
        for _ in range(10):
            watch.evaluate()  # raised "dictionary changed size during iteration"
    finally:
        stop.set()
        for t in counters:
            t.join()
    assert [f.state for f in store.entry_flags()] == ["flagged"]
    store.close()
