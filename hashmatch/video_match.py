"""vPDQ's matching rule, as python-threatexchange applies it, as a pure function.

Each side's frames are reduced to distinct hashes of quality >= 50; the query-match
percentage is the share of the query's frames within `threshold` of some frame of the
other video, the compared-match percentage the same the other way round. pytx calls two
videos a match when query-match >= 80% and compared-match >= 0%.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from hashmatch.video import VideoFrame

FRAME_THRESHOLD = 31
MIN_FRAME_QUALITY = 50
QUERY_MATCH_PERCENT = 80.0
COMPARED_MATCH_PERCENT = 0.0


def matchable(frames: Sequence[VideoFrame], min_quality: int = MIN_FRAME_QUALITY) -> list[str]:
    """The distinct PDQ hashes of quality >= min_quality, first occurrence first."""
    return list(dict.fromkeys(f.pdq for f in frames if f.quality >= min_quality))


def frame_words(hashes: Sequence[str]) -> npt.NDArray[np.uint64]:
    """PDQ hex hashes as rows of four 64-bit words, for popcount distances."""
    raw = np.frombuffer(bytes.fromhex("".join(hashes)), dtype=">u8")
    return raw.astype(np.uint64).reshape(len(hashes), 4)


def match_percentages(
    query: Sequence[VideoFrame],
    listed: Sequence[VideoFrame],
    threshold: int = FRAME_THRESHOLD,
    min_quality: int = MIN_FRAME_QUALITY,
) -> tuple[float, float]:
    """(query-match %, compared-match %) of two videos; 0 for a side with no usable frame."""
    ours, theirs = matchable(query, min_quality), matchable(listed, min_quality)
    if not ours or not theirs:
        return 0.0, 0.0
    close = _close(frame_words(ours), frame_words(theirs), threshold)
    return (
        100.0 * int(close.any(axis=1).sum()) / len(ours),
        100.0 * int(close.any(axis=0).sum()) / len(theirs),
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
