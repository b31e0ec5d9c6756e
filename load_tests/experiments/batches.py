"""What the experiments share: load_tests/ on the path (synthetic lists, the engine
benchmark's helpers), a timer, and a served matcher with batches as the server's
batcher receives them."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # load_tests/: synthetic.py

from synthetic import dataset, queries, write_snapshot_of

BATCH = 1000


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def served_batches(n: int, count: int = 8) -> tuple[Any, list[list[Any]]]:
    """A warmed-up matcher over a snapshot of n PDQ hashes, and `count` 1,000-hash
    batches of parsed queries that miss, as the server's batcher receives them."""
    from indexer.snapshot import read_snapshot
    from service.matcher import Matcher
    from service.queries import ParsedQuery
    from service.warmup import warm_up

    entries = dataset(n, 256)
    with tempfile.TemporaryDirectory(prefix="hashmatch-served-") as tmp:
        write_snapshot_of(entries, Path(tmp))
        matcher = Matcher.of(read_snapshot(Path(tmp)))
    warm_up(matcher)
    miss = queries(entries, count * BATCH)["miss"]
    batches = [
        [ParsedQuery("pdq", row.tobytes(), 31) for row in miss[i : i + BATCH]]
        for i in range(0, len(miss), BATCH)
    ]
    return matcher, batches
