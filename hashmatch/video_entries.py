"""A listed video as one entry: its vPDQ frames packed into one value, and the rules both
sides of the wire share about them (bounds, which frames are matched on, thresholds).

A video is one entry of signal `vpdq`, whatever its length: one opaque match id, one
against a case's or an upload's limits. Its frames travel and are stored packed
(`pack_frames`); the entry's stored hash is the SHA-256 of that packing, so the same
video listed twice is a duplicate and can be removed by its frames. The server
indexes each of its distinct frames of quality 50 or more as a PDQ hash
tied to the entry; lower frames are kept for export only.

A listing may hold scaled frames too (hashmatch.video.hash_video(scaled=True)): packed
among the others with SCALED set in their quality byte, indexed and matched on like
them, never exported, and left out of the entry's digest, which stays that of its vPDQ
frames (a video exported and imported again is still a duplicate of itself).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from hashmatch.bounds import MAX_VIDEO_FRAMES
from hashmatch.signals import SIGNALS, Signal
from hashmatch.signals.pdq import PDQ
from hashmatch.video import VideoFrame
from hashmatch.video_match import MIN_FRAME_QUALITY, slot_of

VPDQ = "vpdq"
# vPDQ frames are PDQ hashes: matched at PDQ's distance, below its quality not at all.
FRAME_SIGNAL = "pdq"
FRAME_BYTES = 32
# The entry's stored hash: the SHA-256 of its packed frames.
DIGEST_BYTES = 32

# A frame packed: hash, quality, timestamp (little-endian float64); 41 bytes.
FRAME_DTYPE = np.dtype([("hash", "u1", (FRAME_BYTES,)), ("quality", "u1"), ("timestamp", "<f8")])
# Set in a packed frame's quality byte: a scaled frame (quality 0-100 in the low 7 bits).
SCALED = 0x80
# The index's variant of a scaled frame's row (a plain frame's is ""): the compared-match
# share is counted over a listed video's plain frames and its scaled ones apart.
SCALED_VARIANT = "scaled"
_QUALITY = SCALED - 1


def indexed_signal(name: str) -> Signal:
    """The signal whose hashes an index table of this name holds: a video table's rows
    are its frames' PDQ hashes."""
    return SIGNALS[FRAME_SIGNAL if name == VPDQ else name]


class VideoEntryError(ValueError):
    """Frames that can't make a video entry or a check; the message names the frame."""


def frame_of(hash_bytes: bytes, quality: int, timestamp: float, scaled: bool = False) -> VideoFrame:
    """A frame from its raw hash, checked; ValueError saying what is wrong."""
    if len(hash_bytes) != FRAME_BYTES:
        raise ValueError(f"hash must be {FRAME_BYTES} bytes, got {len(hash_bytes)}")
    return VideoFrame(hash_bytes.hex(), quality, timestamp, scaled)


def check_count(n: int) -> None:
    if not 1 <= n <= MAX_VIDEO_FRAMES:
        raise VideoEntryError(f"a video has 1 to {MAX_VIDEO_FRAMES} frames, got {n}")


def first_matchable(
    frames: Sequence[VideoFrame], slot_seconds: float | None = None
) -> list[VideoFrame]:
    """The first frame of each distinct hash matched on (with slot_seconds, of each in
    each slot): what a check needs to send."""
    first: dict[tuple[str, int], VideoFrame] = {}
    for f in frames:
        if f.quality >= MIN_FRAME_QUALITY:
            slot = 0 if slot_seconds is None else slot_of(f.timestamp, slot_seconds)
            first.setdefault((f.pdq, slot), f)
    return list(first.values())


def pack_frames(frames: Sequence[VideoFrame]) -> bytes:
    """The frames (each checked when made) as one value of FRAME_DTYPE records."""
    check_count(len(frames))
    if all(f.scaled for f in frames):
        raise VideoEntryError("every frame is scaled: a video has vPDQ frames")
    packed = np.zeros(len(frames), FRAME_DTYPE)
    hashes = bytes.fromhex("".join(f.pdq for f in frames))
    packed["hash"] = np.frombuffer(hashes, np.uint8).reshape(-1, FRAME_BYTES)
    packed["quality"] = [f.quality | (SCALED if f.scaled else 0) for f in frames]
    packed["timestamp"] = [f.timestamp for f in frames]
    return packed.tobytes()


def frame_records(packed: bytes) -> npt.NDArray[np.void]:
    """The FRAME_DTYPE records of a packed video; VideoEntryError if it is not one."""
    n, extra = divmod(len(packed), FRAME_DTYPE.itemsize)
    if extra:
        raise VideoEntryError(
            f"packed frames are {len(packed)} bytes, not a whole number of "
            f"{FRAME_DTYPE.itemsize}-byte frames"
        )
    check_count(n)
    records = np.frombuffer(packed, FRAME_DTYPE)
    if ((records["quality"] & _QUALITY) > 100).any() or not np.isfinite(records["timestamp"]).all():
        raise VideoEntryError("packed frames hold a quality over 100 or a non-finite time")
    if (records["quality"] & SCALED).all():
        raise VideoEntryError("every frame is scaled: a video has vPDQ frames")
    return records


def unpack_frames(packed: bytes) -> list[VideoFrame]:
    """Every frame, scaled ones marked; vpdq_frames for what an export holds."""
    records = frame_records(packed)
    return [
        VideoFrame(h.tobytes().hex(), int(q) & _QUALITY, float(t), bool(q & SCALED))
        for h, q, t in zip(records["hash"], records["quality"], records["timestamp"], strict=True)
    ]


def vpdq_frames(frames: Sequence[VideoFrame]) -> list[VideoFrame]:
    """The video's vPDQ hash: its frames but the scaled ones, what every export holds."""
    return [f for f in frames if not f.scaled]


def listing_problem(frames: Sequence[VideoFrame]) -> str | None:
    """Why these frames must not go on a list as a video, or None: a video with nothing to
    match on, or with a frame matched on that no list may hold (featureless: PDQ's rule).
    Scaled frames are never exported, so a listing may hide no more than its export shows:
    each follows a frame of the video matched on, at its time (one scaled frame each)."""
    unpaired = Counter(
        f.timestamp for f in frames if not f.scaled and f.quality >= MIN_FRAME_QUALITY
    )
    usable = 0
    for i, f in enumerate(frames):
        if f.scaled:
            if not unpaired[f.timestamp]:
                return (
                    f"frame {i}: a scaled frame at {f.timestamp!r} s follows no frame of the "
                    f"video of quality {MIN_FRAME_QUALITY} or more at its time"
                )
            unpaired[f.timestamp] -= 1
        if f.quality < MIN_FRAME_QUALITY:
            continue
        usable += 1
        if reason := PDQ.degenerate(bytes.fromhex(f.pdq), f.quality):
            return f"frame {i}: {reason}"
    if not usable:
        return f"no frame of quality {MIN_FRAME_QUALITY} or more: nothing to match on"
    return None


def video_digest(packed: bytes) -> bytes:
    """The entry's stored hash: its identity for duplicates and removal, not matched on;
    of its vPDQ frames only (a video without scaled frames: of its whole packing)."""
    records = (
        np.frombuffer(packed, FRAME_DTYPE) if len(packed) % FRAME_DTYPE.itemsize == 0 else None
    )
    if records is not None and (records["quality"] & SCALED).any():
        packed = records[(records["quality"] & SCALED) == 0].tobytes()
    return hashlib.sha256(packed).digest()


def matchable_rows(
    hashes: npt.NDArray[np.uint8], qualities: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8]:
    """hashmatch.video_match.matchable over arrays, for the millions of frames of an index
    build: the distinct hashes (rows) of quality MIN_FRAME_QUALITY or more, scaled or not."""
    return matchable_frames(hashes, qualities)[0]


def matchable_frames(
    hashes: npt.NDArray[np.uint8], qualities: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """matchable_rows, and which of them are scaled frames (a hash both scaled and not is
    its first frame's)."""
    usable = (qualities & _QUALITY) >= MIN_FRAME_QUALITY
    kept = np.ascontiguousarray(hashes[usable])
    scaled = (qualities[usable] & SCALED) != 0
    if not len(kept):
        return kept.reshape(0, FRAME_BYTES), scaled
    keys = kept.view(f"V{FRAME_BYTES}").ravel()
    _, first = np.unique(keys, return_index=True)
    first = np.sort(first)
    return kept[first], scaled[first]


def percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0
