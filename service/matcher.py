"""Answering parsed queries: against one loaded snapshot, and live (snapshot plus delta)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from hashmatch.video_entries import SCALED_VARIANT, VPDQ
from hashmatch.wire import MAX_MATCHES_PER_RESULT
from indexer.build import searched_hashes
from indexer.snapshot import SignalTable, Snapshot
from indexer.video_frames import runs
from service.engine import Engine, FaissRangeEngine, Hits, SortedExactEngine
from service.mih_engine import MihEngine
from service.prefetch_tuning import tuned
from service.queries import ParsedQuery

# One more than a result may hold, so that the server can tell a capped result.
KEPT_PER_LIST = MAX_MATCHES_PER_RESULT + 1


class Hit(NamedTuple):
    """One matching entry. A tuple, not a dataclass: a busy server makes one per match,
    and a frozen dataclass costs three times as much to construct."""

    list: str
    match_id: str
    distance: int
    variant: str = ""
    # A listed video's frame: which row of its table it is, and how many frames of the
    # video are matched on (for the compared-match share); -1 and 0 for anything else.
    frame: int = -1
    frames: int = 0


def _order(hit: Hit) -> tuple[int, str, str]:
    return (hit.distance, hit.list, hit.match_id)


def _closest(
    hits: Hits,
    limits: npt.NDArray[np.int32],
    table: SignalTable,
    exclude: npt.NDArray[np.int64] | None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The hits to answer with: within each query's own distance, not excluded, and at
    most KEPT_PER_LIST per query and list, the closest. Returns their positions in `hits`
    (grouped by query) and the per-query bounds into those positions.

    Chosen in bulk before any per-hit Python work, so a flood of near-identical entries
    costs a query array operations, not a Hit, a protobuf entry and an audit record each.
    Capped per list, not overall, so that a flood on one list never hides another list's
    match from a key that may see only that other list."""
    if len(hits.lims) == 2 and len(hits.rows) <= KEPT_PER_LIST:
        # One query and too few hits to crowd a list (a single lookup's case): the same
        # choice without the passes a batch needs, a third of a unary hit's engine time.
        keep = hits.distances <= limits[0]
        if exclude is not None and len(exclude):
            keep &= _kept(hits, table, exclude)
        kept = np.flatnonzero(keep)
        return kept, np.array([0, len(kept)], np.int64)
    counts = np.diff(hits.lims)
    owner = np.repeat(np.arange(len(counts)), counts)
    keep = hits.distances <= limits[owner]
    if exclude is not None and len(exclude):
        keep &= _kept(hits, table, exclude)
    kept = np.flatnonzero(keep)
    bounds = np.searchsorted(kept, hits.lims)
    crowded = np.flatnonzero(np.diff(bounds) > KEPT_PER_LIST).tolist()
    if crowded:
        drop = np.zeros(len(kept), bool)
        for k in crowded:
            first = int(bounds[k])
            seg = kept[first : bounds[k + 1]]
            seg_lists = table.list_positions[hits.rows[seg]]
            for listed in np.flatnonzero(np.bincount(seg_lists) > KEPT_PER_LIST).tolist():
                mine = np.flatnonzero(seg_lists == listed)
                # Nearest first, ties by row: the same choice every time.
                order = hits.distances[seg[mine]] * np.int64(table.count) + hits.rows[seg[mine]]
                drop[first + mine[np.argpartition(order, KEPT_PER_LIST)[KEPT_PER_LIST:]]] = True
        kept = kept[~drop]
    per_query = np.bincount(owner[kept], minlength=len(counts))
    return kept, np.concatenate(([0], np.cumsum(per_query))).astype(np.int64)


def _kept(hits: Hits, table: SignalTable, exclude: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Which hits are not of an entry in `exclude` (sorted entry ids: the tombstones)."""
    ids = table.entry_ids[hits.rows]
    at = np.searchsorted(exclude, ids).clip(max=len(exclude) - 1)
    return np.asarray(exclude[at] != ids)


def frames_per_row(table: SignalTable) -> npt.NDArray[np.int64]:
    """For each row of a video table, how many rows (frames matched on) its video has of
    its kind: plain frames, or scaled ones (variant SCALED_VARIANT), counted apart."""
    scaled = np.zeros(table.count, np.int64)
    if table.variants is not None and SCALED_VARIANT in table.variant_names:
        scaled = (table.variants == table.variant_names.index(SCALED_VARIANT)).astype(np.int64)
    groups = table.entry_ids.astype(np.int64) * 2 + scaled
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return np.asarray(counts[inverse], np.int64)


class Checker(Protocol):
    @property
    def version(self) -> int: ...

    def check(self, queries: Sequence[ParsedQuery]) -> list[list[Hit]]: ...


def make_engine(table: SignalTable, tune: bool = False) -> Engine:
    """`tune` times the kernel's prefetch distances on this host first: worth its
    fraction of a second for a snapshot, not for each delta rebuilt within seconds."""
    if table.exact:
        return SortedExactEngine(table.hashes)
    hashes = searched_hashes(table.signal, table.hashes)
    if table.mih is not None:
        engine = MihEngine(hashes, table.mih)
        return tuned(engine, table.signal, table.bits, len(hashes)) if tune else engine
    return FaissRangeEngine.from_hashes(table.bits, hashes)


def expand_runs(hits: Hits, starts: npt.NDArray[np.int64]) -> Hits:
    """Hits on runs of equal rows (indexer.video_frames) as hits on every row of them."""
    first = starts[hits.rows]
    sizes = starts[hits.rows + 1] - first
    ends = np.cumsum(sizes)
    rows = np.repeat(first - (ends - sizes), sizes) + np.arange(int(ends[-1]) if len(ends) else 0)
    lims = np.concatenate(([0], ends))[hits.lims]
    return Hits(lims.astype(np.int64), rows.astype(np.int64), np.repeat(hits.distances, sizes))


class Matcher:
    """Immutable engines over one set of tables: a snapshot's, or the delta's."""

    def __init__(
        self,
        lists: Sequence[str],
        tables: dict[str, SignalTable],
        version: int,
        tune: bool = False,
    ) -> None:
        self.lists = tuple(lists)
        self.version = version
        self._tables = tables
        self._engines = {name: make_engine(t, tune) for name, t in tables.items()}
        self._video_frames = frames_per_row(tables[VPDQ]) if VPDQ in tables else None
        self._runs = runs(tables[VPDQ].hashes) if VPDQ in tables else None

    @classmethod
    def of(cls, snapshot: Snapshot) -> Matcher:
        return cls(snapshot.lists, snapshot.tables, snapshot.version, tune=True)

    @property
    def tables(self) -> dict[str, SignalTable]:
        return self._tables

    def check(
        self, queries: Sequence[ParsedQuery], exclude: npt.NDArray[np.int64] | None = None
    ) -> list[list[Hit]]:
        """The entries within each query's distance, nearest first: every one, up to
        KEPT_PER_LIST of each list; entries whose ids are in `exclude` (sorted) are left out."""
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
            if signal == VPDQ and self._runs is not None:
                hits = expand_runs(hits, self._runs)
            if not len(hits.rows):
                continue
            limits = np.array([queries[i].max_distance for i in positions], np.int32)
            kept, lims = _closest(hits, limits, table, exclude)
            # Look up the kept hits' lists and match ids at once; visit only queries with hits.
            rows = hits.rows[kept]
            names = [self.lists[p] for p in table.list_positions[rows].tolist()]
            match_ids = table.match_ids[rows].tobytes().hex()
            width = 2 * table.match_ids.shape[1]
            distances = hits.distances[kept].tolist()
            variants = table.variant_of(rows)
            bounds = lims.tolist()
            frame_rows = rows.tolist() if signal == VPDQ else None
            for k in np.flatnonzero(np.diff(lims)).tolist():
                found = [
                    Hit(names[j], match_ids[j * width : (j + 1) * width], distances[j], variants[j])
                    for j in range(bounds[k], bounds[k + 1])
                ]
                if frame_rows is not None and self._video_frames is not None:
                    of = self._video_frames
                    found = [
                        h._replace(frame=frame_rows[j], frames=int(of[frame_rows[j]]))
                        for h, j in zip(found, range(bounds[k], bounds[k + 1]), strict=True)
                    ]
                if len(found) > 1:
                    found.sort(key=_order)
                results[positions[k]] = found
        return results


class LiveMatcher:
    """A snapshot's matcher, less the entries removed since it was built (tombstones), plus
    the entries added since (the delta's own matcher). Immutable: swapped whole."""

    def __init__(
        self, base: Matcher, delta: Matcher | None, tombstones: npt.NDArray[np.int64]
    ) -> None:
        self.base = base
        self.delta = delta
        self.tombstones = tombstones

    @property
    def version(self) -> int:
        return self.base.version

    def check(self, queries: Sequence[ParsedQuery]) -> list[list[Hit]]:
        results = self.base.check(queries, self.tombstones)
        if self.delta is not None:
            for i, extra in enumerate(self.delta.check(queries)):
                if extra:
                    results[i] = sorted(results[i] + extra, key=_order)
        return results
