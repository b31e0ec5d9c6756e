"""Multi-index hashing tables: the index that makes exact Hamming search sublinear.

Split each hash into chunks with radii r_i such that sum(r_i + 1) > R. Any
entry within distance R of a query then differs from it by at most r_i bits
in some chunk i (pigeonhole), so probing every chunk value within r_i of the
query's chunk, and verifying the entries found there, returns exactly the
entries within R. Tables are direct-addressed: `offsets[v]..offsets[v+1]` are
the positions, in bucket order, of the entries whose chunk equals v.

Hashes are handled as little-endian uint64 words; any fixed bit order works,
because query and entries are split the same way.
"""

from __future__ import annotations

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
# Relative costs used to choose a plan, measured with load_tests/engine_benchmark.py:
# a probe and a candidate fetched by id are random memory reads; an inline
# candidate is read sequentially within its bucket.
PROBE_COST = 1.0
CANDIDATE_COST = 2.0
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
    inline: bool

    def probes(self) -> int:
        return sum(_ball(c.length, c.radius) for c in self.chunks)

    def candidates(self, n: int) -> float:
        return float(sum(_ball(c.length, c.radius) * n / 2**c.length for c in self.chunks))

    def to_json(self) -> dict[str, object]:
        return {
            "bits": self.bits,
            "max_distance": self.max_distance,
            "inline": self.inline,
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
            bool(obj["inline"]),
        )


def _ball(length: int, radius: int) -> int:
    return sum(math.comb(length, k) for k in range(radius + 1))


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


def plan_for(bits: int, max_distance: int, n: int) -> Plan:
    """The cheapest chunking for n entries by the cost model.

    A table has at most about 2n slots (and never more than 2^24), so memory
    stays proportional to the list.
    """
    inline = bits == 64
    longest = min(MAX_CHUNK_BITS, max(8, math.ceil(math.log2(max(n, 2))) + 1))
    candidate_cost = INLINE_CANDIDATE_COST if inline else CANDIDATE_COST
    best: tuple[float, Plan] | None = None
    for m in range(1, bits + 1):
        chunks = _split(bits, m, max_distance)
        if not chunks or max(c.length for c in chunks) > longest:
            continue
        if sum(c.radius + 1 for c in chunks) <= max_distance:
            continue
        plan = Plan(bits, max_distance, chunks, inline)
        if plan.probes() > 200_000:
            continue
        cost = plan.probes() * PROBE_COST + plan.candidates(n) * candidate_cost
        if best is None or cost < best[0]:
            best = (cost, plan)
    if best is None:
        raise ValueError(f"no multi-index plan for {bits} bits within distance {max_distance}")
    return best[1]


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
    """All chunks' tables, concatenated so the search kernel indexes flat arrays."""

    plan: Plan
    offsets: npt.NDArray[np.uint32]  # per chunk: 2^length + 1 slots
    ids: npt.NDArray[np.uint32]  # per chunk: n entry rows in bucket order; + PAD
    inline_codes: npt.NDArray[np.uint64]  # (len(ids), words): ids' hashes in bucket order, or empty


def as_words(hashes: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """(n, nbytes) hash bytes → (n, nbytes / 8) uint64 words, without copying."""
    n, nbytes = hashes.shape
    return np.ascontiguousarray(hashes).view("<u8").reshape(n, nbytes // 8)


def build_tables(hashes: npt.NDArray[np.uint8], plan: Plan) -> Tables:
    words = as_words(hashes)
    n = words.shape[0]
    sizes = [(1 << c.length) + 1 for c in plan.chunks]
    offsets = np.empty(sum(sizes), np.uint32)
    ids = np.zeros(n * len(plan.chunks) + PAD, np.uint32)
    at = 0
    for i, (c, size) in enumerate(zip(plan.chunks, sizes, strict=True)):
        _fill_chunk(words, c.start, c.length, offsets[at : at + size], ids[i * n : (i + 1) * n])
        at += size
    inline = np.zeros((len(ids) if plan.inline else 0, words.shape[1]), np.uint64)
    if plan.inline:
        inline[:-PAD] = words[ids[:-PAD]]
    return Tables(plan, offsets, ids, inline)
