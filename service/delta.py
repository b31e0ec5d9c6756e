"""The changes since the snapshot in service: entries added (searched by a small index of
their own) and entries removed (tombstones that hide them in the snapshot).

Fed from the store's change log, so a new entry is matched and a removed one
stops matching within a poll interval, without rebuilding the snapshot. When a
compacted snapshot arrives, the delta is rebased onto it and shrinks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from indexer.build import make_table
from indexer.folding import columns, fold, positions
from indexer.snapshot import SignalTable
from indexer.store import Change
from service import metrics
from service.matcher import Matcher


@dataclass(frozen=True)
class Delta:
    base_seq: int
    applied_seq: int
    adds: dict[int, Change] = field(default_factory=dict)  # entry id → its add
    removed: dict[int, Change] = field(default_factory=dict)  # entry id → its removal
    tables: dict[str, SignalTable] = field(default_factory=dict)
    lists: tuple[str, ...] = ()

    @classmethod
    def empty(cls, base_seq: int) -> Delta:
        return cls(base_seq, base_seq)

    @property
    def size(self) -> int:
        return len(self.adds) + len(self.removed)

    @property
    def oldest_at(self) -> float | None:
        """Commit time of the oldest change not yet in a snapshot."""
        times = [c.at for c in (*self.adds.values(), *self.removed.values())]
        return min(times) if times else None

    def apply(self, changes: Iterable[Change]) -> Delta:
        """This delta with newer change log lines applied (older ones are ignored)."""
        folded = fold(changes, self.applied_seq, self.adds, self.removed)
        if folded.skipped:
            metrics.SKIPPED_CHANGES.inc(folded.skipped)
        if folded.last_seq == self.applied_seq:
            return self
        applied = replace(
            self,
            applied_seq=folded.last_seq,
            adds=folded.adds,
            removed=folded.removed,
            lists=tuple(positions(self.lists, folded.lists)),
        )
        return self._rebuilt(applied, folded.signals)

    def rebase(self, base_seq: int) -> Delta:
        """The delta over a new snapshot that holds every change up to `base_seq`."""
        if base_seq < self.base_seq:
            # An older snapshot (a fallback): what it lacks is not all here; start over.
            return Delta.empty(base_seq)
        adds = {k: c for k, c in self.adds.items() if c.seq > base_seq}
        removed = {k: c for k, c in self.removed.items() if c.seq > base_seq}
        rebased = replace(
            self,
            base_seq=base_seq,
            applied_seq=max(self.applied_seq, base_seq),
            adds=adds,
            removed=removed,
        )
        return self._rebuilt(rebased, {c.signal for c in self.adds.values()})

    @staticmethod
    def _rebuilt(delta: Delta, touched: Iterable[str]) -> Delta:
        """The delta with the tables of the `touched` signals built again from its adds."""
        position = positions(delta.lists, ())
        tables = dict(delta.tables)
        for signal in touched:
            entries = [c for c in delta.adds.values() if c.signal == signal]
            if entries:
                tables[signal] = make_table(signal, *columns(entries, position))
            else:
                tables.pop(signal, None)
        return replace(delta, tables=tables)

    def matcher(self, version: int) -> Matcher | None:
        return Matcher(self.lists, self.tables, version) if self.tables else None

    def tombstones(self) -> npt.NDArray[np.int64]:
        return np.sort(np.fromiter(self.removed, np.int64, len(self.removed)))
