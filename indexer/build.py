"""Building a snapshot from the store: every signal type, every list."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hashmatch.signals import SIGNALS
from indexer.mih import MIH_MIN_ENTRIES, build_tables, plan_for
from indexer.snapshot import SignalTable, write_snapshot
from indexer.store import Store

log = logging.getLogger(__name__)


def build_snapshot(store: Store, out: Path) -> Path:
    lists = store.lists()
    position_of = np.zeros(max(lists, default=0) + 1, dtype=np.uint32)
    position_of[sorted(lists)] = np.arange(len(lists), dtype=np.uint32)
    list_names = tuple(lists[i] for i in sorted(lists))
    last_entry_id = store.last_entry_id()
    tables = []
    for name in store.signal_names():
        signal = SIGNALS.get(name)
        if signal is None:
            log.warning("store holds entries of unknown signal %r; left out of the snapshot", name)
            continue
        e = store.read_signal(name, signal.nbytes)
        order = np.arange(len(e.entry_ids))
        if signal.exact:
            # Exact signals are looked up by binary search over the sorted hashes.
            order = np.argsort(e.hashes.view(f"S{signal.nbytes}").ravel(), kind="stable")
        hashes = e.hashes[order]
        mih = None
        if not signal.exact and len(hashes) >= MIH_MIN_ENTRIES:
            mih = build_tables(hashes, plan_for(signal.bits, signal.threshold, len(hashes)))
        tables.append(
            SignalTable(
                name,
                signal.bits,
                signal.threshold,
                signal.exact,
                hashes,
                position_of[e.list_ids[order]],
                e.match_ids[order],
                e.entry_ids[order],
                mih,
            )
        )
    return write_snapshot(out, list_names, tables, last_entry_id)
