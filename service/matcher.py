"""Answering parsed queries against one loaded snapshot."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexer.snapshot import SignalTable, Snapshot
from service.engine import Engine, FaissRangeEngine, SortedExactEngine
from service.mih_engine import MihEngine
from service.queries import ParsedQuery


@dataclass(frozen=True)
class Hit:
    list: str
    match_id: str
    distance: int


def make_engine(table: SignalTable) -> Engine:
    if table.exact:
        return SortedExactEngine(table.hashes)
    if table.mih is not None:
        return MihEngine(table.hashes, table.mih)
    return FaissRangeEngine.from_hashes(table.bits, table.hashes)


class Matcher:
    """Immutable view of one snapshot; swapped whole when a new snapshot loads."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._tables: dict[str, SignalTable] = snapshot.tables
        self._engines = {name: make_engine(t) for name, t in snapshot.tables.items()}

    @property
    def version(self) -> int:
        return self.snapshot.version

    def check(self, queries: Sequence[ParsedQuery]) -> list[list[Hit]]:
        results: list[list[Hit]] = [[] for _ in queries]
        by_signal: dict[str, list[int]] = defaultdict(list)
        for i, q in enumerate(queries):
            by_signal[q.signal].append(i)
        for signal, positions in by_signal.items():
            table = self._tables.get(signal)
            if table is None or table.count == 0:
                continue
            batch = np.frombuffer(
                b"".join(queries[i].hash for i in positions), dtype=np.uint8
            ).reshape(len(positions), -1)
            widest = max(queries[i].max_distance for i in positions)
            hits = self._engines[signal].search(batch, widest)
            if not len(hits.rows):
                continue
            # Look up every hit's list and match id at once; visit only queries with hits.
            names = [self.snapshot.lists[p] for p in table.list_positions[hits.rows].tolist()]
            match_ids = table.match_ids[hits.rows].tobytes().hex()
            width = 2 * table.match_ids.shape[1]
            distances = hits.distances.tolist()
            lims = hits.lims.tolist()
            for k in np.flatnonzero(np.diff(hits.lims)).tolist():
                limit = queries[positions[k]].max_distance
                found = [
                    Hit(names[j], match_ids[j * width : (j + 1) * width], distances[j])
                    for j in range(lims[k], lims[k + 1])
                    if distances[j] <= limit
                ]
                found.sort(key=lambda h: (h.distance, h.list, h.match_id))
                results[positions[k]] = found
        return results
