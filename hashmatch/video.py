"""vPDQ: Meta's video hash, computed on the caller's machine, the only place a video is read.

A video's hash is the PDQ hash and quality of one frame per `seconds_per_frame`, each with
its time. Frames are chosen as Meta's vpdq does (every int(seconds_per_frame x frame rate)-th
decoded frame, timed at its number / frame rate) so that our hashes meet lists made with it.
A frame identical to the one kept before it is dropped (vPDQ's optional pruning at distance
0): matching counts each distinct hash once anyway. Frames of low quality are kept, for
export; matching ignores them (hashmatch.video_match).

A listing can add a scaled frame beside each sampled one (`hash_video(scaled=True)`): PDQ
of the frame's luminance resampled to SCALED_SIDE pixels on its longer side. PDQ's blur
window follows the frame's size, so halving a 320x240 frame moves its hash 20-54 bits; the
scaled frame of the listed video is close to the halved copy's plain hash (and to its
scaled one), so a downscaled re-upload is found with plain vPDQ checks
(load_tests/video_scale_frames.py measures the candidates). Scaled frames are matched on,
never exported: the exported hash stays vPDQ's.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from hashmatch.bounds import MAX_VIDEO_FRAMES, MAX_VIDEO_SECONDS

_PDQ_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class VideoFrame:
    """One sampled frame: its PDQ hash (64 lowercase hex), quality (0-100) and time (s);
    `scaled`: PDQ of the frame resampled to SCALED_SIDE, not vPDQ's own hash of it."""

    pdq: str
    quality: int
    timestamp: float
    scaled: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.timestamp, int) and not isinstance(self.timestamp, bool):
            object.__setattr__(self, "timestamp", float(self.timestamp))
        if (problem := frame_problem(self.pdq, self.quality, self.timestamp)) is not None:
            raise ValueError(problem)


def frame_problem(pdq: object, quality: object, timestamp: object) -> str | None:
    """Why these can't be one frame of a vPDQ hash, or None."""
    if not isinstance(pdq, str) or not _PDQ_HEX.fullmatch(pdq):
        return "the PDQ hash must be 64 lowercase hex digits"
    if not isinstance(quality, int) or isinstance(quality, bool) or not 0 <= quality <= 100:
        return f"quality {quality!r} is not an integer from 0 to 100"
    if not isinstance(timestamp, float) or math.isnan(timestamp):
        return f"timestamp {timestamp!r} is not a number"
    if timestamp < 0:
        return f"timestamp {timestamp!r} is negative"
    if timestamp > MAX_VIDEO_SECONDS:
        return f"timestamp {timestamp!r} is past {MAX_VIDEO_SECONDS:.0f} seconds"
    return None


# Frames hashed per step at most: every frame of a 30 frame/s video at 1 s.
MAX_DENSITY = 30
# The longer side of a scaled frame: half of 320x240, the smallest common video size, so
# that its halved copy's plain hash is the listed scaled hash but for encoding.
SCALED_SIDE = 160


# A phased check hashes this many frames per sampled second (hash_video's density: at
# 24-30 frame/s each frame is at most one from a hashed one), each second's frames one
# slot of the query. Chosen by load_tests/video_robustness.py --phases: 8 misses trims
# mid-way between its frames; every frame (30) finds no more than 16, at twice the frames.
CHECK_PHASES = 16


class VideoError(ValueError):
    """A file that is not a video, is truncated or damaged, or has no decodable frame;
    the message says which."""


class VideoTooLong(VideoError):
    """More frames sampled than one video may have (MAX_VIDEO_FRAMES)."""


# Containers by their first bytes (offset, bytes). Images are not among them, though FFmpeg
# opens a PNG or GIF as a one-frame video: an image is hashed as an image.
_MAGIC: tuple[tuple[str, int, bytes], ...] = (
    ("MP4/QuickTime", 4, b"ftyp"),
    ("QuickTime", 4, b"moov"),
    ("QuickTime", 4, b"mdat"),
    ("QuickTime", 4, b"wide"),
    ("QuickTime", 4, b"free"),
    ("Matroska/WebM", 0, b"\x1a\x45\xdf\xa3"),
    ("AVI", 8, b"AVI "),
    ("FLV", 0, b"FLV\x01"),
    ("ASF/WMV", 0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"),
    ("MPEG program stream", 0, b"\x00\x00\x01\xba"),
    ("MPEG video", 0, b"\x00\x00\x01\xb3"),
    ("Ogg", 0, b"OggS"),
    ("YUV4MPEG2", 0, b"YUV4MPEG2 "),
)
_TS_PACKET = 188
# ISO media files whose major brand says image (HEIF, AVIF), not video.
_IMAGE_BRANDS = frozenset(
    {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
)


def container_name(head: bytes) -> str | None:
    """The container these first bytes (at least 1 KiB of the file, if it has them) open,
    or None when they open no video container we read."""
    for name, offset, magic in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if name == "AVI" and not head.startswith(b"RIFF"):
                continue
            if magic == b"ftyp" and head[8:12] in _IMAGE_BRANDS:
                return None
            return name
    if len(head) > 2 * _TS_PACKET and all(
        head[i] == 0x47 for i in range(0, 3 * _TS_PACKET, _TS_PACKET)
    ):
        return "MPEG transport stream"
    return None


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether the file's content opens as a video container (by its bytes, not its name).
    An unreadable file is not a video."""
    try:
        with open(path, "rb") as file:
            return container_name(file.read(1024)) is not None
    except OSError:
        return False


def hash_video(
    path: str | os.PathLike[str],
    *,
    seconds_per_frame: float = 1.0,
    mirrored: bool = False,
    phase: float = 0.0,
    density: int = 1,
    scaled: bool = False,
) -> list[VideoFrame]:
    """The vPDQ hash of a video file: one frame per `seconds_per_frame` (0: every frame).

    A robust check can send more than the plain hash: `mirrored` hashes each frame flipped
    left to right, to find a mirrored re-upload (PDQ has no mirror invariance); `phase`
    starts sampling that many seconds in, to meet the frames of a listed video that the
    upload was trimmed from (vPDQ samples from the start, so a trim of 0.4 s puts every
    sampled frame of a pan 0.4 s away from the listed ones). `density` hashes that many
    frames per step, vPDQ's and those evenly between: a dense listing, measured by
    load_tests/video_robustness.py against trims out of phase. `scaled` adds, after each
    sampled frame, its scaled frame (same time, `scaled=True`), for a listing to meet
    downscaled re-uploads; only those a list may hold (quality 50 or more, not
    featureless), of plain frames a list may hold, and only as many as fit in
    MAX_VIDEO_FRAMES beside the plain ones.

    Raises VideoError for a file that is not a video, is truncated or damaged, has no
    decodable frame or more than MAX_VIDEO_FRAMES sampled frames; OSError if unreadable."""
    from hashmatch.video_decoding import sampled_frames

    for name, value in (("seconds_per_frame", seconds_per_frame), ("phase", phase)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} {value!r} must be 0 or more")
    if not 1 <= density <= MAX_DENSITY:
        raise ValueError(f"density {density!r} must be 1 to {MAX_DENSITY}")
    with open(path, "rb") as file:
        head = file.read(1024)
    if container_name(head) is None:
        raise VideoError("not a video: the content is no video container (MP4, WebM, AVI, ...)")
    from hashmatch.signals.pdq import PDQ

    frames: list[VideoFrame] = []
    extra: dict[int, VideoFrame] = {}  # scaled frames, by the index of their plain frame
    # Whether the plain frame a scaled one follows was kept and is matched on: a listing
    # hides no more frames than its export shows (video_entries.listing_problem).
    pairable = False
    for frame in sampled_frames(
        path, seconds_per_frame, mirrored=mirrored, phase=phase, density=density, scaled=scaled
    ):
        if frame.scaled:
            if pairable and PDQ.degenerate(bytes.fromhex(frame.pdq), frame.quality) is None:
                extra[len(frames) - 1] = frame
            continue
        if frames and frames[-1].pdq == frame.pdq:
            pairable = False
            continue
        pairable = PDQ.degenerate(bytes.fromhex(frame.pdq), frame.quality) is None
        if len(frames) == MAX_VIDEO_FRAMES:
            raise VideoTooLong(f"more than {MAX_VIDEO_FRAMES} frames sampled: too long to hash")
        frames.append(frame)
    if not frames:
        raise VideoError("no decodable video frame")
    kept = set(sorted(extra)[: MAX_VIDEO_FRAMES - len(frames)])
    return [g for k, f in enumerate(frames) for g in ((f, extra[k]) if k in kept else (f,))]


def hash_video_phased(
    path: str | os.PathLike[str], *, seconds_per_frame: float = 1.0, phases: int = CHECK_PHASES
) -> tuple[list[VideoFrame], float]:
    """(frames, slot_seconds) of a phased check: each sampled step's frame at `phases`
    phases (hash_video's density), the frames of one step one slot, so that an upload
    trimmed by a fraction of a step still meets the listed frames (hashmatch.video_match).

    A video too long for MAX_VIDEO_FRAMES at that many phases is hashed at fewer, as
    its declared length allows, and at one (the plain hash) if its length misled. A last
    step cut short is left out (unless it is the only one): a trim puts its few frames
    between two listed ones with neither in reach, one slot that could never match."""
    from hashmatch.video_decoding import declared_seconds
    from hashmatch.video_match import slot_of, slot_problem

    if (problem := slot_problem(seconds_per_frame)) is not None:  # each step is one slot
        raise ValueError(f"seconds_per_frame: {problem}")
    seconds = declared_seconds(path)
    if seconds is not None:
        steps = math.ceil(seconds / seconds_per_frame) + 1
        phases = max(1, min(phases, MAX_VIDEO_FRAMES // steps))
    try:
        frames = hash_video(path, seconds_per_frame=seconds_per_frame, density=phases)
    except VideoTooLong:
        if phases == 1:
            raise
        phases = 1
        frames = hash_video(path, seconds_per_frame=seconds_per_frame)
    end = frames[-1].timestamp if seconds is None else seconds
    last = slot_of(frames[-1].timestamp, seconds_per_frame)
    if last > slot_of(frames[0].timestamp, seconds_per_frame) and end < seconds_per_frame * (
        last + 1 - 1 / phases
    ):
        frames = [f for f in frames if slot_of(f.timestamp, seconds_per_frame) < last]
    return frames, seconds_per_frame
