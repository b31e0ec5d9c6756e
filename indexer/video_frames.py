"""A listed video's frames as rows of the index: each distinct frame of quality 50 or more
becomes a PDQ row carrying the video's entry id, list and match id, so the engine
finds frames and a check groups them back into videos; removing the entry (a
tombstone, a compaction) removes every row of it at once.

Rows are kept sorted so that equal frames (a black frame, an intro card shared by
thousands of videos) lie in one run, and the engine indexes each run once: a frame
shared by 10,000 videos costs the search one candidate, not 10,000, and the check
expands its run with array operations."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from hashmatch.video_entries import (
    FRAME_BYTES,
    SCALED_VARIANT,
    VideoEntryError,
    frame_records,
    matchable_frames,
)

FrameRows = tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.uint32],
    npt.NDArray[np.uint8],
    npt.NDArray[np.uint8],
    list[str],
]


def frame_rows(
    entry_ids: Sequence[int],
    list_ids: Sequence[int],
    match_ids: Sequence[bytes],
    videos: Sequence[bytes | None],
    problems: list[str],
) -> FrameRows:
    """(entry ids, list ids, frame hashes, match ids, variants: SCALED_VARIANT for a scaled
    frame, else ""), a row per matchable frame. A video
    whose packed frames are unreadable is left out, and why goes on `problems`: the
    server parses every video it stores, but a build must not die on one that got in."""
    rows: list[int] = []
    frames: list[npt.NDArray[np.uint8]] = []
    variants: list[str] = []
    for k, (entry_id, video) in enumerate(zip(entry_ids, videos, strict=True)):
        try:
            records = frame_records(bytes(video or b""))
        except VideoEntryError as exc:
            problems.append(f"entry {entry_id}: vpdq video unreadable: {exc}")
            continue
        kept, scaled = matchable_frames(records["hash"], records["quality"])
        frames.append(kept)
        variants += [SCALED_VARIANT if s else "" for s in scaled.tolist()]
        rows.extend([k] * len(kept))
    at = np.array(rows, np.int64)
    return (
        np.asarray(entry_ids, np.int64)[at] if len(at) else np.zeros(0, np.int64),
        np.asarray(list_ids, np.uint32)[at] if len(at) else np.zeros(0, np.uint32),
        np.concatenate(frames) if frames else np.zeros((0, FRAME_BYTES), np.uint8),
        np.frombuffer(b"".join(bytes(match_ids[k]) for k in rows), np.uint8).reshape(len(at), -1),
        variants,
    )


def frame_order(hashes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """An order of the rows that puts equal hashes next to each other (stable, so a run
    keeps its videos in entry order): by their first 64 bits, which equal hashes share;
    rows that share only those may interleave, and then merely index as separate runs."""
    prefix = np.ascontiguousarray(hashes[:, :8]).view(">u8").ravel()
    return np.argsort(prefix, kind="stable").astype(np.int64)


def runs(hashes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """Where each run of equal adjacent rows starts, and the row count at the end."""
    if not len(hashes):
        return np.zeros(1, np.int64)
    words = np.ascontiguousarray(hashes).view(np.uint64)
    differs = (words[1:] != words[:-1]).any(axis=1)
    return np.concatenate(([0], np.flatnonzero(differs) + 1, [len(hashes)])).astype(np.int64)
