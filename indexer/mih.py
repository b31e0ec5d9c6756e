"""Multi-index hashing tables: the index that makes exact Hamming search sublinear.

Split each hash into chunks with radii r_i such that sum(r_i + 1) > R. Any
entry within distance R of a query then differs from it by at most r_i bits
in some chunk i (pigeonhole), so probing every chunk value within r_i of the
query's chunk, and verifying the entries found there, returns exactly the
entries within R. Tables are direct-addressed by chunk value, their entries
in bucket order.

Each probe is a random read, so the bucket bounds are kept small enough to
stay in cache: one byte per chunk value, relative to a 32-bit base every
2^shift values. A bucket entry carries `fingerprint_lanes` 32-bit lanes of
its hash: for 64-bit hashes the whole code, for longer ones (as memory
allows) three lanes disjoint from the chunk, whose distance plus the probe's
chunk distance is a lower bound of the true distance. Entries are rejected
in the bucket by that bound, and only the rare survivor's full hash is
fetched; with no fingerprint every candidate is fetched by id.

Hashes are handled as little-endian uint64 words (and uint32 lanes); any
fixed bit order works, because query and entries are split the same way.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numba as nb
import numpy as np
import numpy.typing as npt

# Bucket reads copy a fixed number of ids without branching; the padding keeps
# those reads inside the array.
PAD = 8
# Below this many entries a FAISS IndexBinaryFlat scan beats the tables
# (crossover measured by load_tests/engine_benchmark.py --crossover).
MIH_MIN_ENTRIES = 3000
MAX_CHUNK_BITS = 24
# Bucket bounds: a byte per chunk value, relative to a base every 2^shift values (at most).
MAX_BOUNDS_SHIFT = 6
# Fingerprints cost 4 bytes a lane per entry and chunk; past this budget a table does
# without them (a 10M PDQ list would need 1.9 GB).
FINGERPRINT_BUDGET_BYTES = 1 << 30
# 96 bits: a random entry passes the bound at distance 31 about once in 2,600, so still
# almost every candidate is rejected in its bucket, and a bucket of a dozen entries spans
# a quarter fewer cache lines than with 128 (the random reads the search waits on).
FINGERPRINT_LANES = 3
# Relative costs used to choose a plan (load_tests/experiments/plan_costs.py times the
# pick beside its neighbours): a probe reads bucket bounds (mostly cached) and its bucket
# (a random read, ~35 ns at 1M PDQ); a candidate fetched by id is two more random reads;
# a fingerprinted candidate is compared in its bucket, eight at a time (~0.9 ns); a
# 64-bit code held inline, one at a time.
PROBE_COST = 1.0
CANDIDATE_COST = 2.0
FINGERPRINT_CANDIDATE_COST = 0.03
INLINE_CANDIDATE_COST = 0.1


@dataclass(frozen=True)
class Chunk:
    start: int
    length: int
    radius: int


@dataclass(frozen=True)
class Plan:
    bits: int
    max_distance: int
    chunks: tuple[Chunk, ...]
    # 32-bit lanes of each entry's hash kept in its buckets: all of them (exact in place),
    # FINGERPRINT_LANES disjoint from the chunk (a lower bound), or none (fetch by id).
    fingerprint_lanes: int

    def __post_init__(self) -> None:
        if not self.exact_in_bucket:
            for c in self.chunks:
                if len(self.lanes_of(c)) < self.fingerprint_lanes:
                    raise ValueError(
                        f"chunk at bit {c.start} leaves fewer than {self.fingerprint_lanes} "
                        f"of the {self.bits // 32} lanes for its fingerprint"
                    )

    @property
    def exact_in_bucket(self) -> bool:
        return self.fingerprint_lanes == self.bits // 32

    def probes(self) -> int:
        return sum(_ball(c.length, c.radius) for c in self.chunks)

    def candidates(self, n: int) -> float:
        return float(sum(_ball(c.length, c.radius) * n / 2**c.length for c in self.chunks))

    def lanes_of(self, chunk: Chunk) -> tuple[int, ...]:
        """The hash lanes a chunk's buckets carry: all, or the first ones it doesn't touch."""
        if self.exact_in_bucket:
            return tuple(range(self.bits // 32))
        touched = {chunk.start >> 5, (chunk.start + chunk.length - 1) >> 5}
        free = [w for w in range(self.bits // 32) if w not in touched]
        return tuple(free[: self.fingerprint_lanes])

    def to_json(self) -> dict[str, object]:
        return {
            "bits": self.bits,
            "max_distance": self.max_distance,
            "fingerprint_lanes": self.fingerprint_lanes,
            "chunks": [[c.start, c.length, c.radius] for c in self.chunks],
        }

    @staticmethod
    def from_json(obj: dict[str, object]) -> Plan:
        chunks = obj["chunks"]
        assert isinstance(chunks, list)
        return Plan(
            int(str(obj["bits"])),
            int(str(obj["max_distance"])),
            tuple(Chunk(int(s), int(n), int(r)) for s, n, r in chunks),
            int(str(obj["fingerprint_lanes"])),
        )


def _ball(length: int, radius: int) -> int:
    return sum(math.comb(length, k) for k in range(radius + 1))


def ball_masks(length: int, radius: int) -> tuple[list[int], list[int]]:
    """Every XOR mask of at most `radius` of `length` bits, nearest first, with its weight."""
    masks, weights = [], []
    for k in range(radius + 1):
        for bits in itertools.combinations(range(length), k):
            masks.append(sum(1 << b for b in bits))
            weights.append(k)
    return masks, weights


def _split(bits: int, m: int, max_distance: int) -> tuple[Chunk, ...]:
    """m near-equal chunks; the first (R mod m) + 1 get radius R // m, the rest one less."""
    lengths = [bits // m + (1 if i < bits % m else 0) for i in range(m)]
    base, extra = divmod(max_distance, m)
    chunks, start = [], 0
    for i, length in enumerate(lengths):
        radius = base if i <= extra else base - 1
        if radius >= 0:
            chunks.append(Chunk(start, length, radius))
        start += length
    return tuple(chunks)


def plans(
    bits: int, max_distance: int, n: int, fingerprint_lanes: int | None = None
) -> list[tuple[float, Plan]]:
    """Every chunking the planner considers for n entries, with its modelled cost.

    A table has at most about 2n slots (and never more than 2^24), so memory
    stays proportional to the list. 64-bit hashes sit whole in their buckets;
    longer ones carry fingerprints while they fit the budget, unless
    `fingerprint_lanes` says otherwise.
    """
    longest = min(MAX_CHUNK_BITS, max(8, math.ceil(math.log2(max(n, 2))) + 1))
    found = []
    for m in range(1, bits + 1):
        chunks = _split(bits, m, max_distance)
        if not chunks or max(c.length for c in chunks) > longest:
            continue
        if sum(c.radius + 1 for c in chunks) <= max_distance:
            continue
        lanes = fingerprint_lanes
        if lanes is None:
            affordable = n * len(chunks) * 4 * FINGERPRINT_LANES <= FINGERPRINT_BUDGET_BYTES
            lanes = bits // 32 if bits == 64 else FINGERPRINT_LANES if affordable else 0
        plan = Plan(bits, max_distance, chunks, lanes)
        if plan.probes() > 200_000:
            continue
        candidate_cost = (
            INLINE_CANDIDATE_COST
            if plan.exact_in_bucket
            else FINGERPRINT_CANDIDATE_COST
            if lanes
            else CANDIDATE_COST
        )
        found.append((plan.probes() * PROBE_COST + plan.candidates(n) * candidate_cost, plan))
    return found


def plan_for(bits: int, max_distance: int, n: int, fingerprint_lanes: int | None = None) -> Plan:
    """The cheapest chunking for n entries by the cost model (see `plans`)."""
    found = plans(bits, max_distance, n, fingerprint_lanes)
    if not found:
        raise ValueError(f"no multi-index plan for {bits} bits within distance {max_distance}")
    return min(found, key=lambda costed: costed[0])[1]


@nb.njit(inline="always")
def chunk_value(words: npt.NDArray[np.uint64], start: int, length: int) -> np.uint32:
    word = start >> 6
    offset = start & 63
    v = words[word] >> np.uint64(offset)
    if offset + length > 64:
        v |= words[word + 1] << np.uint64(64 - offset)
    return np.uint32(v & np.uint64((1 << length) - 1))


@nb.njit(nogil=True, cache=True)
def _fill_chunk(
    words: npt.NDArray[np.uint64],
    start: int,
    length: int,
    offsets: npt.NDArray[np.uint32],
    ids: npt.NDArray[np.uint32],
) -> None:
    """Counting sort of the entries by one chunk's value (stable, O(n + 2^length))."""
    n = words.shape[0]
    values = np.empty(n, np.uint32)
    offsets[:] = 0
    for i in range(n):
        v = chunk_value(words[i], start, length)
        values[i] = v
        offsets[v + 1] += 1
    for slot in range(offsets.shape[0] - 1):
        offsets[slot + 1] += offsets[slot]
    fill = offsets[:-1].copy()
    for i in range(n):
        ids[fill[values[i]]] = i
        fill[values[i]] += 1


@dataclass(frozen=True)
class Tables:
    """All chunks' tables, concatenated so the search kernel indexes flat arrays.

    Chunk c's bucket for value v spans entries bases[B + (v >> s)] + rel[R + v] up to
    the same for v + 1, where s = shifts[c] and B, R are the chunk's first positions in
    `bases` and `rel` (see bound_positions)."""

    plan: Plan
    bases: npt.NDArray[np.uint32]  # per chunk: (2^length >> shift) + 1 block starts
    rel: npt.NDArray[np.uint8]  # per chunk: 2^length + 1 bucket starts, less their block's
    shifts: npt.NDArray[np.int64]  # per chunk: log2 of the values a base covers
    ids: npt.NDArray[np.uint32]  # per chunk: n entry rows in bucket order; + PAD
    fingerprints: npt.NDArray[np.uint32]  # (len(ids), plan.fingerprint_lanes), bucket order

    def bound_positions(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Where each chunk's bases and rel begin."""
        lengths = [c.length for c in self.plan.chunks]
        rel_sizes = [(1 << n) + 1 for n in lengths]
        base_sizes = [((1 << n) >> int(s)) + 1 for n, s in zip(lengths, self.shifts, strict=True)]
        return (
            np.cumsum([0, *base_sizes[:-1]]).astype(np.int64),
            np.cumsum([0, *rel_sizes[:-1]]).astype(np.int64),
        )


def as_words(hashes: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """(n, nbytes) hash bytes → (n, nbytes / 8) uint64 words, without copying."""
    n, nbytes = hashes.shape
    return np.ascontiguousarray(hashes).view("<u8").reshape(n, nbytes // 8)


def as_lanes(hashes: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    """(n, nbytes) hash bytes → (n, nbytes / 4) uint32 lanes, without copying."""
    n, nbytes = hashes.shape
    return np.ascontiguousarray(hashes).view("<u4").reshape(n, nbytes // 4)


def _relative_bounds(
    offsets: npt.NDArray[np.uint32],
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8], int]:
    """Bucket starts as a base per block plus a byte each, with the widest block that
    keeps every byte below 256 (crowded buckets narrow it, down to one value a block)."""
    values = len(offsets) - 1
    # A block never spans more values than the chunk has (short chunks in small lists'
    # plans), so every chunk has (values >> shift) + 1 bases, as bound_positions counts.
    for shift in range(min(MAX_BOUNDS_SHIFT, values.bit_length() - 1), -1, -1):
        bases = offsets[: values : 1 << shift]
        bases = np.append(bases, offsets[-1])
        rel = offsets - np.repeat(bases, 1 << shift)[: len(offsets)]
        if int(rel.max()) < 256:
            return bases.astype(np.uint32), rel.astype(np.uint8), shift
    raise AssertionError("one value per block always fits")


def build_tables(hashes: npt.NDArray[np.uint8], plan: Plan) -> Tables:
    words = as_words(hashes)
    n = words.shape[0]
    m = len(plan.chunks)
    ids = np.zeros(n * m + PAD, np.uint32)
    lanes = as_lanes(hashes)
    fingerprints = np.zeros((len(ids), plan.fingerprint_lanes), np.uint32)
    bases, rels, shifts = [], [], []
    for i, c in enumerate(plan.chunks):
        offsets = np.empty((1 << c.length) + 1, np.uint32)
        rows = ids[i * n : (i + 1) * n]
        _fill_chunk(words, c.start, c.length, offsets, rows)
        base, rel, shift = _relative_bounds(offsets)
        bases.append(base)
        rels.append(rel)
        shifts.append(shift)
        if plan.fingerprint_lanes:
            fingerprints[i * n : (i + 1) * n] = lanes[rows][:, list(plan.lanes_of(c))]
    return Tables(
        plan,
        np.concatenate(bases),
        np.concatenate(rels),
        np.array(shifts, np.int64),
        ids,
        fingerprints,
    )
