"""vPDQ's matching rule, as python-threatexchange applies it, as a pure function.

Each side's frames are reduced to distinct hashes of quality >= 50; the query-match
percentage is the share of the query's frames within `threshold` of some frame of the
other video, the compared-match percentage the same the other way round. pytx calls two
videos a match when query-match >= 80% and compared-match >= 0%.

A phased check (`slot_seconds`) sends each sampled second's frame at several phases, so
that an upload trimmed by a fraction of a second still meets the listed frames: its frames
whose timestamps fall in one slot count as ONE frame of the query, which matches when any
of them does. query_units is the single definition of those units, for the server and the
benchmarks; without slots each distinct hash is one (pytx's rule, unchanged).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np
import numpy.typing as npt

from hashmatch.video import VideoFrame

FRAME_THRESHOLD = 31
MIN_FRAME_QUALITY = 50
QUERY_MATCH_PERCENT = 80.0
COMPARED_MATCH_PERCENT = 0.0
# A slot longer than this is no sampled second of a video: a request naming one is refused.
MAX_SLOT_SECONDS = 60.0
# Nor is one shorter than a frame at 1000 frame/s; a time over a shorter one can overflow.
MIN_SLOT_SECONDS = 0.001


def matchable(frames: Sequence[VideoFrame], min_quality: int = MIN_FRAME_QUALITY) -> list[str]:
    """The distinct PDQ hashes of quality >= min_quality, first occurrence first."""
    return list(dict.fromkeys(f.pdq for f in frames if f.quality >= min_quality))


def slot_problem(slot_seconds: float) -> str | None:
    """Why this can't be a slot's length, or None."""
    if not (math.isfinite(slot_seconds) and MIN_SLOT_SECONDS <= slot_seconds <= MAX_SLOT_SECONDS):
        return (
            f"slot_seconds {slot_seconds!r} must be from {MIN_SLOT_SECONDS:g} to "
            f"{MAX_SLOT_SECONDS:g} seconds"
        )
    return None


def slot_of(timestamp: float, slot_seconds: float) -> int:
    """The slot a frame at this time falls in: slots are [k, k + 1) x slot_seconds."""
    return math.floor(timestamp / slot_seconds)


def query_units(
    frames: Sequence[VideoFrame],
    min_quality: int = MIN_FRAME_QUALITY,
    slot_seconds: float | None = None,
) -> tuple[list[str], list[tuple[int, ...]]]:
    """(the distinct hashes of quality >= min_quality, the query's units as indices into
    them). Without slot_seconds each hash is a unit; with it, each slot's hashes are one,
    a hash seen in several slots counting in its earliest only: a frame counts once, however
    often it is sent (so one frame shared with a listed video, sent in every slot, does not
    make every slot match), as in pytx's rule, to which this reduces when every slot has
    one frame. Units are disjoint, whatever the frames' order."""
    hashes = matchable(frames, min_quality)
    if slot_seconds is None:
        return hashes, [(i,) for i in range(len(hashes))]
    if (problem := slot_problem(slot_seconds)) is not None:
        raise ValueError(problem)
    row = {h: i for i, h in enumerate(hashes)}
    earliest: dict[int, int] = {}
    for f in frames:
        if f.quality >= min_quality:
            r, slot = row[f.pdq], slot_of(f.timestamp, slot_seconds)
            earliest[r] = min(slot, earliest.get(r, slot))
    slots: dict[int, list[int]] = {}
    for r, slot in earliest.items():
        slots.setdefault(slot, []).append(r)
    return hashes, [tuple(sorted(rows)) for _, rows in sorted(slots.items())]


def unit_membership(units: Sequence[tuple[int, ...]], rows: int) -> list[list[int]]:
    """For each of `rows` hashes, the units it is in."""
    membership: list[list[int]] = [[] for _ in range(rows)]
    for u, unit in enumerate(units):
        for r in unit:
            membership[r].append(u)
    return membership


def units_matched(membership: Sequence[Sequence[int]], hit: Collection[int]) -> int:
    """How many units have a hash among the `hit` rows (unit_membership gives each row's
    units): a unit matches when any of its hashes does. Costs the hits, not the units."""
    return len({u for r in hit for u in membership[r]})


def frame_words(hashes: Sequence[str]) -> npt.NDArray[np.uint64]:
    """PDQ hex hashes as rows of four 64-bit words, for popcount distances."""
    raw = np.frombuffer(bytes.fromhex("".join(hashes)), dtype=">u8")
    return raw.astype(np.uint64).reshape(len(hashes), 4)


def match_percentages(
    query: Sequence[VideoFrame],
    listed: Sequence[VideoFrame],
    threshold: int = FRAME_THRESHOLD,
    min_quality: int = MIN_FRAME_QUALITY,
    slot_seconds: float | None = None,
) -> tuple[float, float]:
    """(query-match %, compared-match %) of two videos; 0 for a side with no usable frame.
    The query-match counts the query's units (query_units: its distinct hashes, or with
    slot_seconds its slots); the compared-match each distinct listed frame, a listing's
    plain frames and its scaled ones apart, the more met of the two (an exact copy meets
    all of it, as a downscaled one does)."""
    ours, units = query_units(query, min_quality, slot_seconds)
    theirs = matchable(listed, min_quality)
    if not ours or not theirs:
        return 0.0, 0.0
    close = _close(frame_words(ours), frame_words(theirs), threshold)
    hit = np.flatnonzero(close.any(axis=1)).tolist()
    scaled = {f.pdq: f.scaled for f in reversed(listed) if f.quality >= min_quality}
    kinds = np.array([scaled[h] for h in theirs])
    met: npt.NDArray[np.bool_] = np.asarray(close.any(axis=0))
    return (
        100.0 * units_matched(unit_membership(units, len(ours)), hit) / len(units),
        max(100.0 * float(met[kinds == k].mean()) for k in set(kinds.tolist())),
    )


def is_match(
    percentages: tuple[float, float],
    query_percent: float = QUERY_MATCH_PERCENT,
    compared_percent: float = COMPARED_MATCH_PERCENT,
) -> bool:
    return percentages[0] >= query_percent and percentages[1] >= compared_percent


def _close(
    a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64], threshold: int
) -> npt.NDArray[np.bool_]:
    """a x b matrix of distance <= threshold, a block of rows at a time (~32 MB at most)."""
    out = np.empty((len(a), len(b)), dtype=bool)
    block = max(1, (1 << 22) // (4 * len(b)))
    for start in range(0, len(a), block):
        rows = a[start : start + block]
        distances = np.bitwise_count(rows[:, None, :] ^ b[None, :, :]).sum(axis=2)
        out[start : start + block] = distances <= threshold
    return out
