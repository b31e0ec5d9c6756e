"""A listed video as one entry: its vPDQ frames packed into one value, and the rules both
sides of the wire share about them (bounds, which frames are matched on, thresholds).

A video is one entry of signal `vpdq`, whatever its length: one opaque match id, one
against a case's or an upload's limits. Its frames travel and are stored packed
(`pack_frames`); the entry's stored hash is the SHA-256 of that packing, so the same
video listed twice is a duplicate and can be removed by its frames. The server
indexes each of its unique frames of quality `MATCH_QUALITY` or more as a PDQ hash
tied to the entry; lower frames are kept for export only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from hashmatch.signals import SIGNALS, Signal

VPDQ = "vpdq"
# vPDQ frames are PDQ hashes: matched at PDQ's distance, below its quality not at all.
FRAME_SIGNAL = "pdq"
FRAME_BYTES = 32
# The entry's stored hash: the SHA-256 of its packed frames.
DIGEST_BYTES = 32
MATCH_QUALITY = 50
# python-threatexchange's vPDQ defaults.
QUERY_MATCH_PERCENT = 80.0
COMPARED_MATCH_PERCENT = 0.0
# Frames in one check or one listed video: 2 h 46 min at vPDQ's one frame a second.
MAX_VIDEO_FRAMES = 10_000

# A frame packed: hash, quality, timestamp (little-endian float64); 41 bytes.
FRAME_DTYPE = np.dtype([("hash", "u1", (FRAME_BYTES,)), ("quality", "u1"), ("timestamp", "<f8")])


def indexed_signal(name: str) -> Signal:
    """The signal whose hashes an index table of this name holds: a video table's rows
    are its frames' PDQ hashes."""
    return SIGNALS[FRAME_SIGNAL if name == VPDQ else name]


class Frame(NamedTuple):
    hash: bytes
    quality: int
    timestamp: float


class VideoEntryError(ValueError):
    """Frames that can't make a video entry or a check; the message names the frame."""


def frame_problem(hash_bytes: bytes, quality: int, timestamp: float) -> str | None:
    """Why this can't be a vPDQ frame, or None."""
    if len(hash_bytes) != FRAME_BYTES:
        return f"hash must be {FRAME_BYTES} bytes, got {len(hash_bytes)}"
    if not 0 <= quality <= 100:
        return f"quality {quality} is not in 0-100"
    if not (math.isfinite(timestamp) and timestamp >= 0):
        return f"timestamp {timestamp} is not a finite number of seconds, at least 0"
    return None


def frame_key(f: Frame) -> bytes:
    """What makes a frame a distinct one to match on; empty for a frame not matched on."""
    return f.hash if f.quality >= MATCH_QUALITY else b""


def check_count(n: int) -> None:
    if not 1 <= n <= MAX_VIDEO_FRAMES:
        raise VideoEntryError(f"a video has 1 to {MAX_VIDEO_FRAMES} frames, got {n}")


def pack_frames(frames: Sequence[Frame]) -> bytes:
    """The frames as one value (FRAME_DTYPE records), each checked first."""
    check_count(len(frames))
    for i, f in enumerate(frames):
        if problem := frame_problem(f.hash, f.quality, f.timestamp):
            raise VideoEntryError(f"frame {i}: {problem}")
    packed = np.zeros(len(frames), FRAME_DTYPE)
    packed["hash"] = np.frombuffer(b"".join(f.hash for f in frames), np.uint8).reshape(-1, 32)
    packed["quality"] = [f.quality for f in frames]
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
    if (records["quality"] > 100).any() or not np.isfinite(records["timestamp"]).all():
        raise VideoEntryError("packed frames hold a quality over 100 or a non-finite time")
    return records


def unpack_frames(packed: bytes) -> list[Frame]:
    records = frame_records(packed)
    return [
        Frame(h.tobytes(), int(q), float(t))
        for h, q, t in zip(records["hash"], records["quality"], records["timestamp"], strict=True)
    ]


def video_digest(packed: bytes) -> bytes:
    """The entry's stored hash: its identity for duplicates and removal, not matched on."""
    return hashlib.sha256(packed).digest()


def matchable(
    hashes: npt.NDArray[np.uint8], qualities: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8]:
    """The unique frame hashes (rows) of quality MATCH_QUALITY or more: what is matched on,
    as pytx's vPDQ matching filters and dedupes both sides."""
    kept = np.ascontiguousarray(hashes[qualities >= MATCH_QUALITY])
    if not len(kept):
        return kept.reshape(0, FRAME_BYTES)
    keys = kept.view(f"V{FRAME_BYTES}").ravel()
    _, first = np.unique(keys, return_index=True)
    return kept[np.sort(first)]


def percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0
