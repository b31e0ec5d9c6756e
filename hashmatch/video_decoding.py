"""Decoding a video's sampled frames with PyAV (FFmpeg, shipped in its wheel) and hashing
each: the caller's side only; nothing here runs on the server.

vpdq converts each sampled frame to RGB and takes PDQ's luminance of it. For 8-bit YUV
video that luminance is the frame's own Y plane, stretched from its range to 0-255 (the
ITU-R 601 weights PDQ uses are the ones limited-range video is decoded with), so we hash
the Y plane and skip the conversion, which costs more than PDQ itself at 720p.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from fractions import Fraction

import av
import av.error
import numpy as np
import numpy.typing as npt

from hashmatch.signals.pdq import PDQ
from hashmatch.video import VideoError, VideoFrame

# Planar 8-bit YUV formats whose first plane is luminance.
_YUV_8BIT = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21"}
)
# A truncated file's last frame falls short of its declared length by more than this share.
_SHORT = 0.9


def sampled_frames(path: str | os.PathLike[str], seconds_per_frame: float) -> Iterator[VideoFrame]:
    """vpdq's frames (every int(seconds_per_frame x frame rate)-th decoded frame, at its
    number / frame rate), hashed in order."""
    try:
        container = av.open(os.fspath(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise VideoError(f"cannot open video (truncated or damaged?): {_reason(exc)}") from None
    with container:
        if not container.streams.video:
            raise VideoError("not a video: the container has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate or rate <= 0:
            raise VideoError("the video stream declares no frame rate")
        every = max(1, int(seconds_per_frame * float(rate)))
        expected = _declared_seconds(container, stream)
        number = -1
        try:
            for number, frame in enumerate(container.decode(stream)):
                if number % every == 0:
                    yield _hash_frame(frame, float(number / Fraction(rate)))
        except av.error.FFmpegError as exc:
            raise VideoError(
                f"video is truncated or damaged after frame {number + 1}: {_reason(exc)}"
            ) from None
        decoded = (number + 1) / float(rate)
        if number >= 0 and expected is not None and decoded < _SHORT * expected - 1:
            raise VideoError(
                f"video is truncated: frames for {decoded:.1f} s of the {expected:.1f} s declared"
            )


def _hash_frame(frame: av.VideoFrame, timestamp: float) -> VideoFrame:
    result = PDQ.hash_luma(_luma(frame))
    return VideoFrame(PDQ.to_hex(result.hash), int(result.quality or 0), timestamp)


def _luma(frame: av.VideoFrame) -> npt.NDArray[np.float32]:
    """PDQ's luminance (0-255) of a decoded frame."""
    if frame.format.name in _YUV_8BIT:
        plane = frame.planes[0]
        rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
        y: npt.NDArray[np.float32] = rows[: frame.height, : frame.width].astype(np.float32)
        if frame.format.name.startswith("yuvj") or frame.color_range == 2:  # full (JPEG) range
            return y
        stretched: npt.NDArray[np.float32] = np.clip((y - 16) * np.float32(255 / 219), 0, 255)
        return stretched
    rgb: npt.NDArray[np.float32] = frame.to_ndarray(format="rgb24").astype(np.float32)
    luma: npt.NDArray[np.float32] = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return luma


def _declared_seconds(
    container: av.container.InputContainer, stream: av.VideoStream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    else:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def _reason(exc: av.error.FFmpegError) -> str:
    return str(getattr(exc, "strerror", None) or exc)
