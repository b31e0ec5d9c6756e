"""Decoding a video's sampled frames with PyAV (FFmpeg, shipped in its wheel) and hashing
each: the caller's side only; nothing here runs on the server.

Frames are those vpdq takes: every int(seconds_per_frame x frame rate)-th, timed at its
number / frame rate (the number from the frame's presentation time, which is vpdq's count
in a constant-rate video; a frame missing there is stood in for by the next one). Until a
sampled frame is due, the decoder skips frames nothing refers to (FFmpeg's skip_frame
NONREF, set packet by packet), which the sampled frames never depend on.

vpdq converts each sampled frame to RGB and takes PDQ's luminance of it. For 8-bit YUV
video that luminance is the frame's own Y plane, stretched from its range to 0-255 (the
ITU-R 601 weights PDQ uses are the ones limited-range video is decoded with), so we hash
the Y plane as it lies in the decoder's buffer, without a conversion or copy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import av
import av.error
import numpy as np
import numpy.typing as npt

from hashmatch.downscale import to_side
from hashmatch.signals.pdq import PDQ
from hashmatch.video import SCALED_SIDE, VideoError, VideoFrame

# Planar 8-bit YUV formats whose first plane is luminance.
_YUV_8BIT = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21"}
)
_LIMITED_RANGE = (16, 235)
_FULL_RANGE = (0, 255)
# A truncated file's frames fall short of its declared length by more than this share.
_SHORT = 0.9


def sampled_frames(
    path: str | os.PathLike[str],
    seconds_per_frame: float,
    *,
    skip: bool = True,
    mirrored: bool = False,
    phase: float = 0.0,
    density: int = 1,
    scaled: bool = False,
) -> Iterator[VideoFrame]:
    """The hashes of vpdq's frames of the video, in order (`mirrored`: of each frame flipped
    left to right; `phase`: sampling from this many seconds in; `density`: also the frames
    that split each gap between two of vpdq's into that many, so those stay a subset;
    `scaled`: after each, its scaled frame, hashmatch.video.hash_video's);
    `skip`: skip frames that are neither sampled nor referred to (False decodes every
    frame, for measuring)."""
    try:
        container = av.open(os.fspath(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise VideoError(f"cannot open video (truncated or damaged?): {_reason(exc)}") from None
    with container:
        if not container.streams.video:
            raise VideoError("not a video: the container has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate or rate <= 0 or stream.time_base is None:
            raise VideoError("the video stream declares no frame rate")
        every = max(1, int(seconds_per_frame * float(rate)))
        splits = sorted({round(k * every / density) for k in range(1, density)} | {every})
        per_tick = float(stream.time_base * rate)  # frames per time-base unit
        start = stream.start_time or 0
        context = stream.codec_context
        if context is None:  # a damaged header can name no codec FFmpeg has
            raise VideoError("the video stream has no decoder: its codec is unknown or damaged")
        offset = due = round(phase * float(rate))  # the first and the next frame to hash
        count, last = 0, -1  # frames out of the decoder; the number of the last hashed

        def number(pts: int | None) -> int:
            return count if pts is None else max(0, round((pts - start) * per_tick))

        damage = None  # why the first undecodable packet failed: it is skipped, as players do
        try:
            for packet in container.demux(stream):
                if skip:
                    ahead = packet.pts is not None and number(packet.pts) < due
                    context.skip_frame = "NONREF" if ahead else "DEFAULT"
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as exc:
                    damage = damage or _reason(exc)
                    continue
                for frame in decoded:
                    at = number(frame.pts)
                    count += 1
                    if at >= due and at > last:
                        yield from _hash_frame(frame, at / float(rate), mirrored, scaled)
                        base = offset + (at - offset) // every * every
                        last, due = at, next(base + s for s in splits if base + s > at)
        except av.error.FFmpegError as exc:
            raise VideoError(
                f"video is truncated or damaged after frame {count}: {_reason(exc)}"
            ) from None
        if not count and damage:
            raise VideoError(f"no decodable video frame: {damage}")
        expected = _declared_seconds(container, stream)
        seconds = (last + 1) / float(rate)
        if count and expected is not None and seconds + every / float(rate) < _SHORT * expected:
            raise VideoError(
                f"video is truncated: frames for {seconds:.1f} s of the {expected:.1f} s declared"
            )


def declared_seconds(path: str | os.PathLike[str]) -> float | None:
    """The length the video's container declares, if it opens and declares one."""
    try:
        with av.open(os.fspath(path), metadata_errors="ignore") as container:
            if not container.streams.video:
                return None
            return _declared_seconds(container, container.streams.video[0])
    except av.error.FFmpegError:
        return None


def _hash_frame(
    frame: av.VideoFrame, timestamp: float, mirrored: bool, scaled: bool
) -> Iterator[VideoFrame]:
    """The frame's vPDQ frame, then (`scaled`) its scaled frame: PDQ of its luminance
    resampled to SCALED_SIDE on the longer side (hashmatch.downscale's tent filter)."""
    columns = slice(frame.width - 1, None, -1) if mirrored else slice(frame.width)
    luma: npt.NDArray[np.uint8 | np.float32]
    if frame.format.name in _YUV_8BIT:
        plane = frame.planes[0]
        rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
        full = frame.format.name.startswith("yuvj") or frame.color_range == 2  # JPEG range
        luma, levels = rows[: frame.height, columns], _FULL_RANGE if full else _LIMITED_RANGE
    else:
        rgb = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.float32)[:, columns]
        luma, levels = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32), _FULL_RANGE
    result = PDQ.hash_luma(luma, levels)
    yield VideoFrame(PDQ.to_hex(result.hash), int(result.quality or 0), timestamp)
    if scaled:
        small = PDQ.hash_luma(to_side(luma, SCALED_SIDE), levels)
        yield VideoFrame(PDQ.to_hex(small.hash), int(small.quality or 0), timestamp, scaled=True)


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
