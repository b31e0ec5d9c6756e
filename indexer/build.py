"""Building a snapshot: from the whole store, or from the last snapshot plus the change log."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hashmatch.signals import SIGNALS, hash_problem
from indexer.mih import MIH_MIN_ENTRIES, build_tables, plan_for
from indexer.snapshot import SignalTable, Snapshot, write_snapshot
from indexer.store import Change, Store

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
    signal = SIGNALS[name]
    order = np.arange(len(entry_ids))
    if signal.exact:
        # Exact signals are looked up by binary search over the sorted hashes.
        order = np.argsort(hashes.view(f"S{signal.nbytes}").ravel(), kind="stable")
    hashes = hashes[order]
    mih = None
    if not signal.exact and len(hashes) >= MIH_MIN_ENTRIES:
        mih = build_tables(hashes, plan_for(signal.bits, signal.threshold, len(hashes)))
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
    image = store.read_image({name: s.nbytes for name, s in SIGNALS.items()})
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


def unusable(c: Change) -> str | None:
    """Why an index can't hold a change log line (an unknown signal, or a hash of the wrong
    length: the schema refuses those now, but older stores may have logged some), logged
    as a warning; None if it can. Such a line is skipped, never allowed to halt a build
    or the service's change follower."""
    problem = hash_problem(c.signal, c.hash)
    if problem is not None:
        log.warning("skipping change %d (%s of entry %d): %s", c.seq, c.op, c.entry_id, problem)
    return problem


def compact_snapshot(base: Snapshot, changes: Sequence[Change], out: Path) -> Path:
    """A new snapshot: `base` with `changes` (the change log lines after its last_seq,
    in order) applied. Reads nothing else from the store, so it costs a table rebuild,
    not a full reload of millions of rows."""
    lists = list(base.lists)
    position = {name: i for i, name in enumerate(lists)}
    removed: set[int] = set()
    added: dict[int, Change] = {}
    for c in changes:
        if unusable(c):
            continue
        if c.op == "add":
            added[c.entry_id] = c
        else:
            removed.add(c.entry_id)
            added.pop(c.entry_id, None)
        if c.list not in position:
            position[c.list] = len(lists)
            lists.append(c.list)
    names = sorted({*base.tables, *(c.signal for c in added.values())})
    tables = []
    for name in names:
        new = [c for c in added.values() if c.signal == name]
        old = base.tables.get(name)
        if old is not None:
            keep = ~np.isin(old.entry_ids, np.fromiter(removed, np.int64, len(removed)))
            parts = [
                (
                    old.entry_ids[keep],
                    old.list_positions[keep],
                    old.hashes[keep],
                    old.match_ids[keep],
                )
            ]
            variants = old.variant_of(np.flatnonzero(keep))
        else:
            parts, variants = [], []
        variants += [c.variant for c in new]
        if new:
            parts.append(
                (
                    np.array([c.entry_id for c in new], np.int64),
                    np.array([position[c.list] for c in new], np.uint32),
                    np.frombuffer(b"".join(c.hash for c in new), np.uint8).reshape(len(new), -1),
                    np.frombuffer(b"".join(c.match_id for c in new), np.uint8).reshape(
                        len(new), -1
                    ),
                )
            )
        entry_ids, list_positions, hashes, match_ids = (
            np.concatenate([p[k] for p in parts]) for k in range(4)
        )
        if len(entry_ids):
            tables.append(make_table(name, entry_ids, list_positions, hashes, match_ids, variants))
    last_seq = changes[-1].seq if changes else base.last_seq
    return write_snapshot(out, tuple(lists), tables, last_seq)
