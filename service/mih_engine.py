"""Exact Hamming range search over multi-index hashing tables (see indexer/mih.py).

The kernel is compiled with numba and releases the GIL, so one call per core
runs in parallel. It works in phases per query, each a loop of independent
memory reads with software prefetch: probe values (the query's chunk values
XOR masks precomputed per plan), bucket bounds (empty buckets dropped),
bucket contents (fingerprints checked against a lower bound in place, or ids
copied), then the surviving candidates' hashes, verified by popcount as they
arrive. Random reads dominate; keeping many in flight, never stalling on the
second cache line of a read that crosses one, and reading fewer lines per
query are what make it fast.
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

from indexer.mih import FINGERPRINT_LANES, Tables, as_lanes, as_words, ball_masks, chunk_value
from service.engine import Hits, no_hits

# Reads kept in flight per phase (load_tests/experiments/prefetch_distance.py): buckets or
# candidates ahead. Where buckets carry fingerprints, a query probes a few hundred, and
# prefetching all of them before the first is scanned was about 20% faster than 128 ahead
# at 1M PDQ on an AMD EPYC host (on a Xeon, 256 ahead measured equal to 128); where
# candidates are fetched by id (thousands a query), 128 and 256 ahead were equal and 512
# slower. Other hosts differ by more than that, so these are only the defaults: a
# snapshot's large tables get the distance timed fastest where they serve
# (service/prefetch_tuning.py).
PREFETCH = 128
PREFETCH_FINGERPRINTED = 512
INITIAL_HITS_PER_QUERY = 16
# Hits past this many are told from repeats by a bitmap of rows, not a scan; at most the
# initial capacity, so that the hits before it are all stored.
SCAN_HITS = INITIAL_HITS_PER_QUERY
# Ids copied per bucket without a branch (indexer/mih.py PAD keeps the reads in bounds);
# buckets hold about one entry, longer ones copy the rest in a loop.
FIXED_COPY = 4
# Buckets this long or longer are scanned eight fingerprints at a time; shorter ones one
# by one, since a block of eight would read lines the bucket doesn't use.
VECTOR_MIN_BUCKET = 4


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


@intrinsic
def _fingerprint_mask8_intrinsic(
    typingctx: Any, array: Any, index: Any, f0: Any, f1: Any, f2: Any, room: Any
) -> Any:
    """Bit t set when entry t of the eight three-lane fingerprints at array[index:index + 24]
    is within `room` of (f0, f1, f2): one vector XOR, popcount and compare for eight
    entries, where the scalar loop spends three popcounts on each."""
    sig = types.int64(array, index, f0, f1, f2, room)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cg.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i32 = ir.IntType(32)
        v24, v8, v3 = ir.VectorType(i32, 24), ir.VectorType(i32, 8), ir.VectorType(i32, 3)

        def picks(positions: list[int]) -> Any:
            return ir.Constant(ir.VectorType(i32, len(positions)), positions)

        def narrow(value: Any) -> Any:
            return builder.trunc(value, i32) if value.type.width > 32 else value

        data = builder.load(builder.bitcast(ptr, v24.as_pointer()), align=4)
        lanes = ir.Constant(v3, ir.Undefined)
        for k in range(3):
            lanes = builder.insert_element(lanes, narrow(args[2 + k]), i32(k))
        query = builder.shuffle_vector(lanes, ir.Constant(v3, ir.Undefined), picks([0, 1, 2] * 8))
        ctpop = cg.get_or_insert_function(
            builder.module, ir.FunctionType(v24, [v24]), "llvm.ctpop.v24i32"
        )
        bits = builder.call(ctpop, [builder.xor(data, query)])
        undef = ir.Constant(v24, ir.Undefined)
        distance = builder.add(
            builder.add(
                builder.shuffle_vector(bits, undef, picks(list(range(0, 24, 3)))),
                builder.shuffle_vector(bits, undef, picks(list(range(1, 24, 3)))),
            ),
            builder.shuffle_vector(bits, undef, picks(list(range(2, 24, 3)))),
        )
        room = builder.insert_element(ir.Constant(v8, ir.Undefined), narrow(args[5]), i32(0))
        room = builder.shuffle_vector(room, ir.Constant(v8, ir.Undefined), picks([0] * 8))
        within = builder.icmp_signed("<=", distance, room)
        return builder.zext(builder.bitcast(within, ir.IntType(8)), ir.IntType(64))

    return sig, codegen


_fingerprint_mask8 = cast(
    Callable[[Any, Any, Any, Any, Any, Any], int], _fingerprint_mask8_intrinsic
)


@nb.njit(inline="always")
def _prefetch_span(array: Any, first: int, last: int) -> None:
    """Prefetch the first and last element read: a span crossing a cache line
    boundary otherwise stalls on its second line (a fifth of 16-byte id reads, and
    half of the 32-byte rows of an array that is not line-aligned)."""
    _prefetch(array, first)
    _prefetch(array, last)


@nb.njit(inline="always")
def _prefetch_lines(array: Any, first: int, last: int) -> None:
    """Prefetch every cache line from array[first] to array[last]: a bucket of a dozen
    fingerprints spans four lines, and a line left out stalls the scan. Spans of up to six
    lines take no loop (its exit mispredicts): the four lines after the first are asked
    for, repeats clipped to the last, whenever the span passes one line's worth of
    elements. Prefetching only the ends of spans up to two lines' worth long left out the
    middle line of those that straddle three, and cost 1M PDQ queries 8-10%."""
    _prefetch_span(array, first, last)
    per_line = 64 // array.itemsize
    if last - first > per_line:
        for i in range(1, 5):
            _prefetch(array, min(first + i * per_line, last))
        if last - first > 5 * per_line:
            for at in range(first + 5 * per_line, last, per_line):
                _prefetch(array, at)


@nb.njit(inline="always")
def _scan_last(lo: int, hi: int, n_fp: int) -> int:
    """The last fingerprint lane a bucket's scan reads: buckets of VECTOR_MIN_BUCKET or
    more three-lane fingerprints are read in whole blocks of eight (PAD keeps that in bounds)."""
    size = hi - lo
    blocks = int(n_fp == FINGERPRINT_LANES) & int(size >= VECTOR_MIN_BUCKET)
    return (lo + size + blocks * (-size & 7)) * n_fp - 1


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


@nb.njit(inline="always")
def _first_sight(seen: npt.NDArray[np.uint8], row: int) -> bool:
    """Set `row`'s bit in the bitmap `seen`; False if it was set already."""
    bit = np.uint8(1 << (row & 7))
    if seen[row >> 3] & bit:
        return False
    seen[row >> 3] |= bit
    return True


@nb.njit(nogil=True, cache=True)
def _search(
    words: npt.NDArray[np.uint64],
    queries: npt.NDArray[np.uint64],
    query_lanes: npt.NDArray[np.uint32],
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    shifts: npt.NDArray[np.int64],
    base_at: npt.NDArray[np.int64],
    rel_at: npt.NDArray[np.int64],
    bases: npt.NDArray[np.uint32],
    rel: npt.NDArray[np.uint8],
    ids: npt.NDArray[np.uint32],
    fingerprints: npt.NDArray[np.uint32],
    fingerprint_of: npt.NDArray[np.int64],
    masks: npt.NDArray[np.int64],
    mask_weights: npt.NDArray[np.int64],
    mask_chunk: npt.NDArray[np.int64],
    max_distance: int,
    cap: int,
    prefetch: int,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    n = words.shape[0]
    n_words = words.shape[1]
    flat = words.reshape(-1)
    nq = queries.shape[0]
    m = starts.shape[0]
    n_fp = fingerprints.shape[1]
    fp_flat = fingerprints.reshape(-1)
    # The probe's chunk distance adds to a fingerprint's only when their bits are disjoint.
    disjoint = 0 if n_fp == 2 * n_words else 1
    # A 64-bit code whole in its bucket is compared as one word, not two lanes.
    whole_word = n_fp == 2 and disjoint == 0
    codes = fp_flat.view(np.uint64) if whole_word else np.empty(0, np.uint64)
    hit_rows = np.empty((nq, cap), np.uint32)
    hit_dist = np.empty((nq, cap), np.int32)
    counts = np.zeros(nq, np.int64)
    probes = masks.shape[0]
    rel_slot = np.empty(probes, np.int64)
    base_slot = np.empty(probes, np.int64)
    next_base_slot = np.empty(probes, np.int64)
    lo = np.empty(probes, np.int64)
    hi = np.empty(probes, np.int64)
    limit = np.empty(probes, np.int64)
    owner = np.empty(probes, np.int64)
    query_fp = np.empty((m, max(n_fp, 1)), np.uint32)
    chunk_values = np.empty(m, np.int64)
    cand = np.empty(1 << 11, np.int64)
    seen = np.zeros(0, np.uint8)
    d = prefetch
    for qi in range(nq):
        q = queries[qi]
        q_lanes = query_lanes[qi]
        # 1. every chunk value within the chunk's radius of the query's
        for c in range(m):
            chunk_values[c] = chunk_value(q, starts[c], lengths[c])
            for w in range(n_fp):
                query_fp[c, w] = q_lanes[fingerprint_of[c, w]]
        for k in range(probes):
            c = mask_chunk[k]
            v = chunk_values[c] ^ masks[k]
            rel_slot[k] = rel_at[c] + v
            base_slot[k] = base_at[c] + (v >> shifts[c])
            next_base_slot[k] = base_at[c] + ((v + 1) >> shifts[c])
        # 2. bucket bounds (non-empty ones only: about a third of the buckets probed are empty)
        for k in range(min(d, probes)):
            _prefetch_span(rel, rel_slot[k], rel_slot[k] + 1)
            _prefetch(bases, base_slot[k])
        total = 0
        filled = 0
        for k in range(probes):
            if k + d < probes:
                _prefetch_span(rel, rel_slot[k + d], rel_slot[k + d] + 1)
                _prefetch(bases, base_slot[k + d])
            c = mask_chunk[k]
            first = np.int64(bases[base_slot[k]]) + np.int64(rel[rel_slot[k]])
            end = np.int64(bases[next_base_slot[k]]) + np.int64(rel[rel_slot[k] + 1])
            room = max_distance - disjoint * mask_weights[k]
            lo[filled] = c * n + first
            hi[filled] = c * n + end
            limit[filled] = room
            owner[filled] = c
            filled += int((end > first) & (room >= 0))
            total += int(end - first)
        if total + 8 > cand.shape[0]:
            cand = np.empty(2 * total + 8, np.int64)
        # 3. bucket contents: entry rows that may be within reach
        nc = 0
        if n_fp == 0:
            for k in range(min(d, filled)):
                _prefetch_span(ids, lo[k], lo[k] + FIXED_COPY - 1)
            for k in range(filled):
                if k + d < filled:
                    _prefetch_span(ids, lo[k + d], lo[k + d] + FIXED_COPY - 1)
                s = lo[k]
                size = hi[k] - s
                for j in range(FIXED_COPY):
                    cand[nc + j] = ids[s + j]
                for j in range(FIXED_COPY, size):
                    cand[nc + j] = ids[s + j]
                nc += size
        else:
            for k in range(min(d, filled)):
                _prefetch_lines(fp_flat, lo[k] * n_fp, _scan_last(lo[k], hi[k], n_fp))
            for k in range(filled):
                if k + d < filled:
                    f = k + d
                    _prefetch_lines(fp_flat, lo[f] * n_fp, _scan_last(lo[f], hi[f], n_fp))
                c = owner[k]
                room = limit[k]
                if n_fp == FINGERPRINT_LANES:
                    # PDQ's layout: this loop sees every candidate.
                    f0 = query_fp[c, 0]
                    f1 = query_fp[c, 1]
                    f2 = query_fp[c, 2]
                    s = lo[k]
                    e = hi[k]
                    if e - s < VECTOR_MIN_BUCKET:
                        for j in range(s, e):
                            bound = _popcount(np.uint64(fingerprints[j, 0] ^ f0))
                            bound += _popcount(np.uint64(fingerprints[j, 1] ^ f1))
                            if bound + _popcount(np.uint64(fingerprints[j, 2] ^ f2)) <= room:
                                cand[nc] = ids[j]
                                nc += 1
                        continue
                    for j in range(s, e, 8):
                        passed = _fingerprint_mask8(fp_flat, 3 * j, f0, f1, f2, room)
                        if passed:
                            # Rare (a hit, or about one random entry in 2,600); the block's
                            # entries past the bucket's end are not this probe's.
                            for t in range(min(8, e - j)):
                                if (passed >> t) & 1:
                                    cand[nc] = ids[j + t]
                                    nc += 1
                    continue
                if whole_word:
                    code = q[0]
                    for j in range(lo[k], hi[k]):
                        if _popcount(codes[j] ^ code) <= room:
                            cand[nc] = ids[j]
                            nc += 1
                    continue
                for j in range(lo[k], hi[k]):
                    bound = 0
                    for w in range(n_fp):
                        bound += _popcount(np.uint64(fingerprints[j, w] ^ query_fp[c, w]))
                    if bound <= room:
                        cand[nc] = ids[j]
                        nc += 1
        # 4. candidate hashes, verified as they arrive
        found = 0
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
                if found < SCAN_HITS:
                    found = _record(hit_rows, hit_dist, qi, found, row, dist, cap)
                    if found == SCAN_HITS:
                        # Many hits (a flood of near-identical entries): rescanning them for
                        # each new one is quadratic, so repeats are found by a bitmap of rows.
                        if seen.shape[0] == 0:
                            seen = np.zeros((n >> 3) + 1, np.uint8)
                        for t in range(found):
                            _first_sight(seen, int(hit_rows[qi, t]))
                elif _first_sight(seen, row):
                    if found < cap:
                        hit_rows[qi, found] = row
                        hit_dist[qi, found] = dist
                    found += 1
        if found >= SCAN_HITS:
            if found <= cap:
                for t in range(found):
                    seen[hit_rows[qi, t] >> 3] = 0
            else:
                seen[:] = 0
        counts[qi] = found
    return hit_rows, hit_dist, counts


class MihEngine:
    """Exact search within the plan's distance; tighter distances prune as they go."""

    def __init__(self, hashes: npt.NDArray[np.uint8], tables: Tables) -> None:
        self._words = as_words(hashes)
        self._tables = tables
        plan = tables.plan
        chunks = plan.chunks
        self._starts = np.array([c.start for c in chunks], np.int64)
        self._lengths = np.array([c.length for c in chunks], np.int64)
        self._base_at, self._rel_at = tables.bound_positions()
        self._fingerprint_of = np.array([plan.lanes_of(c) for c in chunks], np.int64).reshape(
            len(chunks), plan.fingerprint_lanes
        )
        masks, weights, owners = [], [], []
        for i, c in enumerate(chunks):
            chunk_masks, chunk_weights = ball_masks(c.length, c.radius)
            masks += chunk_masks
            weights += chunk_weights
            owners += [i] * len(chunk_masks)
        self._masks = np.array(masks, np.int64)
        self._mask_weights = np.array(weights, np.int64)
        self._mask_chunk = np.array(owners, np.int64)
        self.prefetch = PREFETCH_FINGERPRINTED if plan.fingerprint_lanes else PREFETCH

    @property
    def max_distance(self) -> int:
        return self._tables.plan.max_distance

    def search(self, queries: npt.NDArray[np.uint8], max_distance: int) -> Hits:
        if max_distance > self.max_distance:
            raise ValueError(
                f"tables answer up to distance {self.max_distance}, not {max_distance}"
            )
        q = as_words(queries)
        t = self._tables
        cap = INITIAL_HITS_PER_QUERY
        while True:
            rows, dist, counts = _search(
                self._words,
                q,
                as_lanes(queries),
                self._starts,
                self._lengths,
                t.shifts,
                self._base_at,
                self._rel_at,
                t.bases,
                t.rel,
                t.ids,
                t.fingerprints,
                self._fingerprint_of,
                self._masks,
                self._mask_weights,
                self._mask_chunk,
                max_distance,
                cap,
                self.prefetch,
            )
            most = int(counts.max()) if counts.size else 0
            if most == 0:
                # Most checks match nothing; skip the gathering below (a third of a unary call).
                return no_hits(len(q))
            if most <= cap:
                break
            cap = most
        if len(q) == 1:
            found = int(counts[0])
            return Hits(
                np.array([0, found], np.int64),
                rows[0, :found].astype(np.int64),
                dist[0, :found].astype(np.int32),
            )
        keep = np.arange(cap)[None, :] < counts[:, None]
        lims = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        return Hits(lims, rows[keep].astype(np.int64), dist[keep].astype(np.int32))
