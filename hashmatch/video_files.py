"""What `hashmatch hash` makes of a video file: its vPDQ hash and digests of its bytes.

A file is a video by its content (hashmatch.video.is_video). A video takes the signals
that apply to videos among those asked (vpdq, and md5 and sha256 of the file bytes, which
StopNCII's `VideoMD5` and python-threatexchange's `video_md5` are); asked for image
signals only, such as the default pdq,phash, it gets vpdq.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from hashmatch.signals import get_signal
from hashmatch.signals.digest import DigestSignal
from hashmatch.video import hash_video
from hashmatch.video_entries import VPDQ
from hashmatch.vpdq_formats import to_pytx


def video_signals(asked: Sequence[str]) -> tuple[str, ...]:
    """The signals a video is hashed with, of those asked."""
    chosen = tuple(
        name for name in asked if name == VPDQ or isinstance(get_signal(name), DigestSignal)
    )
    return chosen or (VPDQ,)


def video_hash_objects(
    path: str | os.PathLike[str], asked: Sequence[str], seconds_per_frame: float = 1.0
) -> list[dict[str, Any]]:
    """One JSON-ready object per signal: vpdq's hash is python-threatexchange's
    serialization, with the number of frames beside it. Raises VideoError or OSError."""
    out: list[dict[str, Any]] = []
    for name in video_signals(asked):
        if name == VPDQ:
            frames = hash_video(path, seconds_per_frame=seconds_per_frame)
            out.append({"signal": VPDQ, "hash": to_pytx(frames), "frames": len(frames)})
        else:
            signal = get_signal(name)
            assert isinstance(signal, DigestSignal)
            digest = signal.compute_file(path)
            out.append({"signal": name, "hash": signal.to_hex(digest.hash), "quality": None})
    return out
