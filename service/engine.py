"""Search engines: every stored entry within a distance of each query, exactly.

Results come as CSR-style arrays: the matches of query i are rows
`rows[lims[i]:lims[i+1]]` at `distances[lims[i]:lims[i+1]]`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import faiss
import numpy as np
import numpy.typing as npt


class Hits(NamedTuple):
    lims: npt.NDArray[np.int64]
    rows: npt.NDArray[np.int64]
    distances: npt.NDArray[np.int32]


class Engine(Protocol):
    def search(self, queries: npt.NDArray[np.uint8], max_distance: int) -> Hits: ...


class FaissRangeEngine:
    """Hamming range search by a FAISS IndexBinaryFlat scan: exact, and the fastest
    engine for small lists (see indexer/mih.py MIH_MIN_ENTRIES)."""

    def __init__(self, index: Any) -> None:
        self._index = index

    @classmethod
    def from_hashes(cls, bits: int, hashes: npt.NDArray[np.uint8]) -> FaissRangeEngine:
        index = faiss.IndexBinaryFlat(bits)
        if len(hashes):
            index.add(np.ascontiguousarray(hashes))
        return cls(index)

    def search(self, queries: npt.NDArray[np.uint8], max_distance: int) -> Hits:
        if self._index.ntotal == 0:
            return no_hits(len(queries))
        # FAISS keeps distances strictly below the radius.
        lims, distances, rows = self._index.range_search(
            np.ascontiguousarray(queries), max_distance + 1
        )
        return Hits(lims.astype(np.int64), rows.astype(np.int64), distances.astype(np.int32))


class SortedExactEngine:
    """Lookup by value in hashes sorted at build time (md5, sha256): O(log n) per query."""

    def __init__(self, sorted_hashes: npt.NDArray[np.uint8]) -> None:
        self._keys = np.ascontiguousarray(sorted_hashes).view(f"S{sorted_hashes.shape[1]}").ravel()

    def search(self, queries: npt.NDArray[np.uint8], max_distance: int) -> Hits:
        keys = np.ascontiguousarray(queries).view(self._keys.dtype).ravel()
        lo = np.searchsorted(self._keys, keys, side="left")
        hi = np.searchsorted(self._keys, keys, side="right")
        counts = (hi - lo).astype(np.int64)
        lims = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        # Row k of the result belongs to query q: rows lo[q], lo[q]+1, ... hi[q]-1.
        owner = np.repeat(np.arange(len(keys)), counts)
        rows = lo[owner] + (np.arange(int(lims[-1])) - lims[:-1][owner])
        return Hits(lims, rows.astype(np.int64), np.zeros(len(rows), dtype=np.int32))


def no_hits(n: int) -> Hits:
    return Hits(np.zeros(n + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32))
