"""Building a snapshot: from the whole store, or from the last snapshot plus the change log."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hashmatch.signals import SIGNALS
from hashmatch.video_entries import DIGEST_BYTES, VPDQ, indexed_signal
from indexer.folding import Columns, columns, fold, positions
from indexer.mih import MIH_MIN_ENTRIES, build_tables, plan_for
from indexer.snapshot import SignalTable, Snapshot, write_snapshot
from indexer.store import Change, Store
from indexer.video_frames import frame_order, runs

log = logging.getLogger(__name__)


def make_table(
    name: str,
    entry_ids: npt.NDArray[np.int64],
    list_positions: npt.NDArray[np.uint32],
    hashes: npt.NDArray[np.uint8],
    match_ids: npt.NDArray[np.uint8],
    variants: Sequence[str] = (),
) -> SignalTable:
    """One signal's table in the order its engine needs, with its multi-index tables.
    `variants` names each entry's image variant ("" or empty for none)."""
    signal = indexed_signal(name)
    order = np.arange(len(entry_ids))
    if signal.exact:
        # Exact signals are looked up by binary search over the sorted hashes.
        order = np.argsort(hashes.view(f"S{signal.nbytes}").ravel(), kind="stable")
    elif name == VPDQ:
        order = frame_order(hashes)
    hashes = hashes[order]
    mih = None
    searched = searched_hashes(name, hashes)
    if not signal.exact and len(searched) >= MIH_MIN_ENTRIES:
        mih = build_tables(searched, plan_for(signal.bits, signal.threshold, len(searched)))
    codes, names = variant_codes(variants)
    return SignalTable(
        name,
        signal.bits,
        signal.threshold,
        signal.exact,
        hashes,
        list_positions[order],
        match_ids[order],
        entry_ids[order],
        mih,
        None if codes is None else codes[order],
        names,
    )


def searched_hashes(name: str, hashes: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The hashes a table's engine indexes: every row, or one per run of equal video frames
    (indexer.video_frames)."""
    return hashes[runs(hashes)[:-1]] if name == VPDQ else hashes


def variant_codes(
    variants: Sequence[str],
) -> tuple[npt.NDArray[np.uint8] | None, tuple[str, ...]]:
    """Per-entry codes into a tuple of names; (None, ()) when no entry is a variant."""
    if not any(variants):
        return None, ()
    names = tuple(sorted(set(variants)))
    if len(names) > 256:
        raise ValueError(f"{len(names)} variant names; a snapshot holds at most 256")
    index = {n: i for i, n in enumerate(names)}
    return np.fromiter((index[v] for v in variants), np.uint8, len(variants)), names


def build_snapshot(store: Store, out: Path) -> Path:
    """A snapshot of every entry in the store, as of one point of its change log."""
    image = store.read_image(
        {**{name: s.nbytes for name, s in SIGNALS.items()}, VPDQ: DIGEST_BYTES}
    )
    for name in image.unknown_signals:
        log.warning("store holds entries of unknown signal %r; left out of the snapshot", name)
    for reason in image.malformed:
        log.warning("left out of the snapshot: %s", reason)
    lists = image.lists
    position_of = np.zeros(max(lists, default=0) + 1, dtype=np.uint32)
    position_of[sorted(lists)] = np.arange(len(lists), dtype=np.uint32)
    tables = [
        make_table(name, e.entry_ids, position_of[e.list_ids], e.hashes, e.match_ids, e.variants)
        for name, e in image.signals.items()
    ]
    return write_snapshot(out, tuple(lists[i] for i in sorted(lists)), tables, image.last_seq)


def compact_snapshot(base: Snapshot, changes: Sequence[Change], out: Path) -> Path:
    """A new snapshot: `base` with `changes` (the change log lines after its last_seq,
    in order) folded in. Reads nothing else from the store, so it costs a table rebuild,
    not a full reload of millions of rows."""
    folded = fold(changes, base.last_seq)
    position = positions(base.lists, folded.lists)
    removed = np.fromiter(folded.removed, np.int64, len(folded.removed))
    tables = []
    for name in sorted({*base.tables, *(c.signal for c in folded.adds.values())}):
        parts: list[Columns] = []
        old = base.tables.get(name)
        if old is not None:
            keep = np.flatnonzero(~np.isin(old.entry_ids, removed))
            parts.append(
                (
                    old.entry_ids[keep],
                    old.list_positions[keep],
                    old.hashes[keep],
                    old.match_ids[keep],
                    old.variant_of(keep),
                )
            )
        new = [c for c in folded.adds.values() if c.signal == name]
        if new:
            parts.append(columns(new, position))
        entry_ids, list_positions, hashes, match_ids = (
            np.concatenate([p[k] for p in parts]) for k in range(4)
        )
        if len(entry_ids):
            variants = [v for p in parts for v in p[4]]
            tables.append(make_table(name, entry_ids, list_positions, hashes, match_ids, variants))
    return write_snapshot(out, tuple(position), tables, folded.last_seq)
