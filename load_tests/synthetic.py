"""Seeded synthetic hash lists and queries shared by the benchmarks.

Uniform random hashes: the worst case for bucketed indexes' balance is not
tested here, the scale is. The first rows of a list can be regenerated
alone (the seeded stream is consumed in order), so load clients can send
known hits without holding the whole list.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SIGNAL_FOR_BITS = {256: "pdq", 64: "phash"}
FLIPS_FOR_BITS = {256: 20, 64: 5}
SEED = 20261122


def parse_n(text: str) -> int:
    """A list size as written on the command line: 20K, 1M, 10M."""
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("KM")) * scale)


def dataset(n: int, bits: int) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(SEED).integers(0, 256, size=(n, bits // 8), dtype=np.uint8)


def perturb(
    rows: npt.NDArray[np.uint8], flips: int, rng: np.random.Generator
) -> npt.NDArray[np.uint8]:
    bits = np.unpackbits(rows, axis=1)
    for row in bits:
        row[rng.choice(bits.shape[1], flips, replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def queries(entries: npt.NDArray[np.uint8], count: int) -> dict[str, npt.NDArray[np.uint8]]:
    """`count` misses (uniform random) and `count` hits (entries with a few bits flipped)."""
    n, nbytes = entries.shape
    rng = np.random.default_rng(SEED + 1)
    miss = rng.integers(0, 256, size=(count, nbytes), dtype=np.uint8)
    hit = perturb(entries[rng.integers(0, n, count)], FLIPS_FOR_BITS[nbytes * 8], rng)
    return {"miss": miss, "hit": hit}


def write_snapshot_of(entries: npt.NDArray[np.uint8], root: Path, tables: Any = None) -> None:
    """A real snapshot of one list, with multi-index tables (given, or built here) when
    the list is large enough."""
    from hashmatch.signals import get_signal
    from indexer.mih import MIH_MIN_ENTRIES, build_tables, plan_for
    from indexer.snapshot import SignalTable, write_snapshot
    from indexer.store import MATCH_ID_BYTES

    n, nbytes = entries.shape
    signal = get_signal(SIGNAL_FOR_BITS[nbytes * 8])
    if tables is None and n >= MIH_MIN_ENTRIES:
        tables = build_tables(entries, plan_for(signal.bits, signal.threshold, n))
    table = SignalTable(
        signal.name,
        signal.bits,
        signal.threshold,
        False,
        entries,
        np.zeros(n, np.uint32),
        np.random.default_rng(SEED + 2).integers(0, 256, (n, MATCH_ID_BYTES), dtype=np.uint8),
        np.arange(1, n + 1, dtype=np.int64),
        tables,
    )
    write_snapshot(root, ("synthetic",), [table], n)


def bulk_fill_sqlite(path: Path, n: int, list_name: str = "synthetic") -> None:
    """A new SQLite store holding the first `n` rows of the PDQ dataset as list entries,
    each with a random match id and a unique random content id, as `Store.add_entries`
    would make them, but written in a few large unsynchronized transactions with no
    change log lines (a snapshot built from it starts the log afresh): 10M rows in
    minutes instead of the better part of an hour. For benchmarks only."""
    import sqlite3

    from indexer.store import MATCH_ID_BYTES, MAX_CONTENT_ID, open_store

    store = open_store(f"sqlite:///{path}")
    store.create_list(list_name)
    store.close()
    entries = dataset(n, 256)
    rng = np.random.default_rng(SEED + 3)
    match_ids = rng.integers(0, 256, (n, MATCH_ID_BYTES), dtype=np.uint8)
    drawn = np.unique(rng.integers(1, MAX_CONTENT_ID + 1, n + n // 100 + 10, dtype=np.int64))
    content_ids = rng.permutation(drawn)[:n]
    assert len(content_ids) == n, "content ids collided beyond the spare drawn"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-1500000")  # 1.5 GB: the unique indexes stay cached
        (list_id,) = db.execute("SELECT id FROM lists WHERE name = ?", (list_name,)).fetchone()
        step = 250_000
        for at in range(0, n, step):
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO entries (list_id, signal, hash, match_id, content_id)"
                " VALUES (?, 'pdq', ?, ?, ?)",
                (
                    (list_id, entries[i].tobytes(), match_ids[i].tobytes(), int(content_ids[i]))
                    for i in range(at, min(n, at + step))
                ),
            )
            db.execute("COMMIT")
    finally:
        db.close()


if __name__ == "__main__":
    # python load_tests/synthetic.py N BITS DIR: write a snapshot of N synthetic hashes.
    write_snapshot_of(dataset(int(sys.argv[1]), int(sys.argv[2])), Path(sys.argv[3]))
