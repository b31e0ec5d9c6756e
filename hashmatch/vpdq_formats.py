"""The two text forms vPDQ hashes travel in, read strictly and within bounds.

- pytx: python-threatexchange's VPDQSignal string, a JSON array of
  "<pdq hex>,<quality>,<timestamp>" items, the timestamp written with 3 significant
  digits (`f"{t:.3}"`: "0.0", "12.0", "1.23e+03"); what HMA banks and pytx exchanges hold.
- cpp: the lines of Meta's vpdq C++ tool, `frameNumber,quality,hash,timestamp`, the
  timestamp with 3 decimals. vPDQ's matching never reads frame numbers; we write a frame's
  position in the list and read any number back without keeping it.

Either parser refuses the whole text at its first bad item or line, naming it (1-based).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from hashmatch.bounds import MAX_VIDEO_FRAMES, MAX_VPDQ_FRAME_CHARS
from hashmatch.codec import HashFormatError
from hashmatch.signals.pdq import PDQ
from hashmatch.video import VideoFrame, frame_problem

# Each item costs at most its characters plus quotes, a comma and a space.
MAX_PYTX_CHARS = MAX_VIDEO_FRAMES * (MAX_VPDQ_FRAME_CHARS + 4) + 2
MAX_CPP_CHARS = MAX_VIDEO_FRAMES * (MAX_VPDQ_FRAME_CHARS + 2)

_QUALITY = re.compile(r"[0-9]{1,3}")
_FRAME_NUMBER = re.compile(r"[0-9]{1,10}")
# What pytx's `:.3` and the C++ tool's fixed 3 decimals print, and plain decimals.
_TIMESTAMP = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


class VpdqFormatError(ValueError):
    """Text that is not a well-formed vPDQ hash; the message names the item or line."""


def to_pytx(frames: Sequence[VideoFrame]) -> str:
    """python-threatexchange's serialization (vpdq_to_json), character for character."""
    return json.dumps([f"{f.pdq},{f.quality},{f.timestamp:.3}" for f in frames])


def from_pytx(text: str) -> list[VideoFrame]:
    """The frames of a pytx vPDQ string; empty text is no frames, as in pytx."""
    if len(text) > MAX_PYTX_CHARS:
        raise VpdqFormatError(
            f"vPDQ JSON is {len(text)} characters, more than the {MAX_PYTX_CHARS} allowed"
        )
    if not text.strip():
        return []
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VpdqFormatError(f"vPDQ JSON is malformed: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise VpdqFormatError("vPDQ JSON is malformed: nested too deeply") from None
    if not isinstance(items, list):
        raise VpdqFormatError('vPDQ JSON must be an array of "hash,quality,timestamp" strings')
    _check_count(len(items), "items")
    frames = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, str):
            raise VpdqFormatError(f'item {number}: not a "hash,quality,timestamp" string')
        fields = _split(item, 3, "hash,quality,timestamp", f"item {number}")
        frames.append(_frame(*fields, where=f"item {number}"))
    return frames


def to_cpp_lines(frames: Sequence[VideoFrame]) -> str:
    """The vpdq C++ tool's hash file: `frameNumber,quality,hash,timestamp` a line."""
    return "".join(
        f"{number},{f.quality},{f.pdq},{f.timestamp:.3f}\n" for number, f in enumerate(frames)
    )


def from_cpp_lines(text: str) -> list[VideoFrame]:
    """The frames of a vpdq C++ hash file; blank lines are skipped, counted all the same."""
    if len(text) > MAX_CPP_CHARS:
        raise VpdqFormatError(
            f"vPDQ lines are {len(text)} characters, more than the {MAX_CPP_CHARS} allowed"
        )
    frames = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"line {number}"
        frame_number, quality, pdq, timestamp = _split(
            line, 4, "frameNumber,quality,hash,timestamp", where
        )
        if not _FRAME_NUMBER.fullmatch(frame_number):
            raise VpdqFormatError(f"{where}: frame number {frame_number[:20]!r} is not a count")
        frames.append(_frame(pdq, quality, timestamp, where=where))
        _check_count(len(frames), "frames")
    return frames


def _check_count(count: int, what: str) -> None:
    if count > MAX_VIDEO_FRAMES:
        raise VpdqFormatError(f"more than {MAX_VIDEO_FRAMES} {what}: too long for one video")


def _split(text: str, count: int, shape: str, where: str) -> list[str]:
    if len(text) > MAX_VPDQ_FRAME_CHARS:
        raise VpdqFormatError(
            f"{where}: {len(text)} characters, more than the {MAX_VPDQ_FRAME_CHARS} a frame takes"
        )
    fields = text.split(",")
    if len(fields) != count:
        raise VpdqFormatError(f"{where}: expected {shape}, got {len(fields)} fields")
    return fields


def _frame(pdq: str, quality: str, timestamp: str, *, where: str) -> VideoFrame:
    try:
        pdq_hex = PDQ.to_hex(PDQ.parse_hex(pdq))
    except HashFormatError as exc:
        raise VpdqFormatError(f"{where}: {exc}") from None
    if not _QUALITY.fullmatch(quality):
        raise VpdqFormatError(f"{where}: quality {quality[:20]!r} is not an integer from 0 to 100")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise VpdqFormatError(f"{where}: timestamp {timestamp[:30]!r} is not a non-negative number")
    values = (pdq_hex, int(quality), float(timestamp))
    if (problem := frame_problem(*values)) is not None:
        raise VpdqFormatError(f"{where}: {problem}")
    return VideoFrame(*values)
