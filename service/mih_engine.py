"""Exact Hamming range search over multi-index hashing tables (see indexer/mih.py).

The kernel is compiled with numba and releases the GIL, so one call per core
runs in parallel. It works in phases per query, each a loop of independent
memory reads with software prefetch: probe values, bucket bounds (empty
buckets dropped), bucket contents, then candidate hashes, verified by popcount
as they arrive. Random reads dominate; keeping many in flight, and never
stalling on the second cache line of a read that crosses one, is what makes
it fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numba as nb
import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from indexer.mih import Tables, as_words, chunk_value
from service.engine import Hits

# Reads kept in flight per phase (load_tests/engine_benchmark.py --prefetch): deep
# where each probe reads a line or two at random; shallow for inline plans, whose
# buckets span several lines each.
PREFETCH = 128
PREFETCH_INLINE = 12
INITIAL_HITS_PER_QUERY = 16
# Ids copied per bucket without a branch (indexer/mih.py PAD keeps the reads in bounds);
# buckets hold about one entry, longer ones copy the rest in a loop.
FIXED_COPY = 4


@intrinsic
def _prefetch_intrinsic(typingctx: Any, array: Any, index: Any) -> Any:
    """Hint the CPU to load array[index] into cache (llvm.prefetch)."""
    sig = types.void(array, index)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cg.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cg.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # read, into L2 and inward (prefetcht1: measured faster than t0 here), data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(2), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


_prefetch = cast(Callable[[Any, Any], None], _prefetch_intrinsic)
cg: Any = cgutils


@nb.njit(inline="always")
def _prefetch_span(array: Any, first: int, last: int) -> None:
    """Prefetch the first and last element read: a span crossing a cache line
    boundary otherwise stalls on its second line (a fifth of 16-byte id reads, and
    half of the 32-byte rows of an array that is not line-aligned)."""
    _prefetch(array, first)
    _prefetch(array, last)


@nb.njit(inline="always")
def _popcount(x: np.uint64) -> int:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@nb.njit(inline="always")
def _record(
    hit_rows: npt.NDArray[np.uint32],
    hit_dist: npt.NDArray[np.int32],
    qi: int,
    found: int,
    row: int,
    dist: int,
    cap: int,
) -> int:
    """Add a hit unless already found through another chunk; returns the new count."""
    for t in range(min(found, cap)):
        if hit_rows[qi, t] == row:
            return found
    if found < cap:
        hit_rows[qi, found] = row
        hit_dist[qi, found] = dist
    return found + 1


@nb.njit(nogil=True, cache=True)
def _ball_beyond_three(
    probe_slot: npt.NDArray[np.int64],
    p: int,
    base: int,
    v: int,
    length: int,
    radius: int,
) -> int:
    """Probes at distances 4..radius (Gosper's next-combination); rare, so not tuned."""
    limit = 1 << length
    for k in range(4, radius + 1):
        mask = (1 << k) - 1
        while mask < limit:
            probe_slot[p] = base + (v ^ mask)
            p += 1
            low = mask & -mask
            ripple = mask + low
            mask = (((ripple ^ mask) >> 2) // low) | ripple
    return p


@nb.njit(nogil=True, cache=True)
def _search(
    words: npt.NDArray[np.uint64],
    queries: npt.NDArray[np.uint64],
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    radii: npt.NDArray[np.int64],
    offset_base: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.uint32],
    ids: npt.NDArray[np.uint32],
    inline_codes: npt.NDArray[np.uint64],
    inline: bool,
    max_distance: int,
    cap: int,
    prefetch: int,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    n = words.shape[0]
    n_words = words.shape[1]
    flat = words.reshape(-1)
    inline_flat = inline_codes.reshape(-1)
    nq = queries.shape[0]
    m = starts.shape[0]
    hit_rows = np.empty((nq, cap), np.uint32)
    hit_dist = np.empty((nq, cap), np.int32)
    counts = np.zeros(nq, np.int64)
    max_probes = 0
    for c in range(m):
        ball, term = 1, 1
        for k in range(1, radii[c] + 1):
            term = term * (lengths[c] - k + 1) // k
            ball += term
        max_probes += ball
    probe_slot = np.empty(max_probes, np.int64)
    chunk_end = np.empty(m, np.int64)
    lo = np.empty(max_probes, np.int64)
    hi = np.empty(max_probes, np.int64)
    cand = np.empty(1 << 11, np.int64)
    d = prefetch
    for qi in range(nq):
        q = queries[qi]
        # 1. every chunk value within the chunk's radius of the query's
        p = 0
        for c in range(m):
            length = lengths[c]
            radius = radii[c]
            v = int(chunk_value(q, starts[c], length))
            base = offset_base[c]
            probe_slot[p] = base + v
            p += 1
            if radius > 3:
                p = _ball_beyond_three(probe_slot, p, base, v, length, radius)
                radius = 3
            for a in range(length if radius >= 1 else 0):
                fa = 1 << a
                probe_slot[p] = base + (v ^ fa)
                p += 1
                for b in range(a + 1, length if radius >= 2 else 0):
                    fb = fa | (1 << b)
                    probe_slot[p] = base + (v ^ fb)
                    p += 1
                    for e in range(b + 1, length if radius >= 3 else 0):
                        probe_slot[p] = base + (v ^ (fb | (1 << e)))
                        p += 1
            chunk_end[c] = p
        # 2. bucket bounds
        for k in range(min(d, p)):
            _prefetch_span(offsets, probe_slot[k], probe_slot[k] + 1)
        # (non-empty ones only: about a third of the buckets probed are empty)
        total = 0
        filled = 0
        start = 0
        for c in range(m):
            row_base = c * n
            for k in range(start, chunk_end[c]):
                if k + d < p:
                    _prefetch_span(offsets, probe_slot[k + d], probe_slot[k + d] + 1)
                first = int(offsets[probe_slot[k]])
                end = int(offsets[probe_slot[k] + 1])
                lo[filled] = row_base + first
                hi[filled] = row_base + end
                filled += end > first
                total += end - first
            start = chunk_end[c]
        p = filled
        if not inline and total + 8 > cand.shape[0]:
            cand = np.empty(2 * total + 8, np.int64)
        found = 0
        if inline:
            # 3'. hashes sit in the buckets: verify in place, read ids only for hits
            for k in range(min(d, p)):
                _prefetch_span(inline_flat, lo[k] * n_words, hi[k] * n_words - 1)
            for k in range(p):
                if k + d < p:
                    _prefetch_span(inline_flat, lo[k + d] * n_words, hi[k + d] * n_words - 1)
                for j in range(lo[k], hi[k]):
                    dist = 0
                    for w in range(n_words):
                        dist += _popcount(inline_codes[j, w] ^ q[w])
                    if dist <= max_distance:
                        found = _record(hit_rows, hit_dist, qi, found, ids[j], dist, cap)
            counts[qi] = found
            continue
        # 3. bucket contents: entry rows
        for k in range(min(d, p)):
            _prefetch_span(ids, lo[k], lo[k] + FIXED_COPY - 1)
        nc = 0
        for k in range(p):
            if k + d < p:
                _prefetch_span(ids, lo[k + d], lo[k + d] + FIXED_COPY - 1)
            s = lo[k]
            size = hi[k] - s
            for j in range(FIXED_COPY):
                cand[nc + j] = ids[s + j]
            for j in range(FIXED_COPY, size):
                cand[nc + j] = ids[s + j]
            nc += size
        # 4. candidate hashes, verified as they arrive
        for k in range(min(d, nc)):
            _prefetch_span(flat, cand[k] * n_words, cand[k] * n_words + n_words - 1)
        for k in range(nc):
            if k + d < nc:
                _prefetch_span(flat, cand[k + d] * n_words, cand[k + d] * n_words + n_words - 1)
            row = cand[k]
            dist = 0
            for w in range(n_words):
                dist += _popcount(words[row, w] ^ q[w])
            if dist <= max_distance:
                found = _record(hit_rows, hit_dist, qi, found, row, dist, cap)
        counts[qi] = found
    return hit_rows, hit_dist, counts


class MihEngine:
    """Exact search within the plan's distance; tighter radii are filtered afterwards."""

    def __init__(self, hashes: npt.NDArray[np.uint8], tables: Tables) -> None:
        self._words = as_words(hashes)
        self._tables = tables
        chunks = tables.plan.chunks
        self._starts = np.array([c.start for c in chunks], np.int64)
        self._lengths = np.array([c.length for c in chunks], np.int64)
        self._radii = np.array([c.radius for c in chunks], np.int64)
        sizes = [(1 << c.length) + 1 for c in chunks]
        self._offset_base = np.cumsum([0, *sizes[:-1]]).astype(np.int64)
        self.prefetch = PREFETCH_INLINE if tables.plan.inline else PREFETCH

    @property
    def max_distance(self) -> int:
        return self._tables.plan.max_distance

    def search(self, queries: npt.NDArray[np.uint8], max_distance: int) -> Hits:
        if max_distance > self.max_distance:
            raise ValueError(
                f"tables answer up to distance {self.max_distance}, not {max_distance}"
            )
        q = as_words(queries)
        cap = INITIAL_HITS_PER_QUERY
        while True:
            rows, dist, counts = _search(
                self._words,
                q,
                self._starts,
                self._lengths,
                self._radii,
                self._offset_base,
                self._tables.offsets,
                self._tables.ids,
                self._tables.inline_codes,
                self._tables.plan.inline,
                max_distance,
                cap,
                self.prefetch,
            )
            if counts.size == 0 or int(counts.max()) <= cap:
                break
            cap = int(counts.max())
        keep = np.arange(cap)[None, :] < counts[:, None]
        lims = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        return Hits(lims, rows[keep].astype(np.int64), dist[keep].astype(np.int32))
