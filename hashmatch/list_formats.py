"""Hash list file formats, for export, import and upload.

- csv: `signal,hexhash[,ref]`, our native interchange form;
- hex: one bare hex hash a line, all of one signal type (given beside the file);
- threatexchange: `<signal_type> <hexhash>` a line, as read and written by
  python-threatexchange's LocalFileSignalExchangeAPI, so Meta HMA /
  ThreatExchange users can load our lists and we can load theirs;
- vpdq-cpp: Meta's vPDQ C++ tool's lines, `frameNumber,quality,hash,timestamp`, one
  video's lines in a block (a blank line ends it): a file the tool wrote is one video;
- and, for reading, JSON lines as `hashmatch hash` prints them.

A video (signal vpdq) is one line in the other formats, its hash python-threatexchange's
vPDQ serialization (a JSON array of "<pdq hex>,<quality>,<timestamp>").

A line that can't be used is reported with its number and why; the rest of
the file still goes in.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from hashmatch.bounds import MAX_VIDEO_FRAMES, SOURCE_REF, OutOfBounds
from hashmatch.codec import HashFormatError
from hashmatch.signals import UnknownSignalError, get_signal
from hashmatch.video import VideoFrame
from hashmatch.video_entries import (
    VPDQ,
    listing_problem,
    pack_frames,
    unpack_frames,
    video_digest,
    vpdq_frames,
)
from hashmatch.vpdq_formats import (
    VpdqFormatError,
    from_cpp_lines,
    from_pytx,
    to_cpp_lines,
    to_pytx,
)

# A line of four comma-separated fields, none quoted: a vpdq-cpp frame (CSV lines have 2-3).
CPP_LINE = re.compile(r"[^,\"{]*(?:,[^,\"{]*){3}")

FORMATS = ("csv", "hex", "threatexchange", "vpdq-cpp")

# Our signal name → python-threatexchange's SignalType.get_name(). Its md5 and
# sha256 types are of video bytes, not of image files, so they do not map.
THREATEXCHANGE_NAMES = {"pdq": "pdq", "vpdq": "vpdq"}
THREATEXCHANGE_UNMAPPED = frozenset(
    {"video_md5", "video_sha256", "url", "url_md5", "raw_text", "trend_query"}
)


@dataclass(frozen=True)
class NewEntry:
    """A hash for a list, with its hasher's quality and the submitter's own reference."""

    signal: str
    hash: bytes
    quality: int | None = None
    source_ref: str | None = None
    variant: str = ""  # which variant of the image (hashmatch.variants); "" as it is
    # A video (signal vpdq): its frames packed (hashmatch.video_entries); `hash` is their digest.
    frames: bytes = b""


class NotExportable(ValueError):
    """An entry the chosen format cannot carry; the message says why."""


def video_entry(frames: Sequence[VideoFrame], source_ref: str | None = None) -> NewEntry:
    """A video as the one entry a list holds (hashmatch.video_entries)."""
    packed = pack_frames(frames)
    return NewEntry(VPDQ, video_digest(packed), None, source_ref, "", packed)


def format_line(entry: NewEntry, fmt: str) -> str:
    if entry.signal == VPDQ:
        return _video_text(entry, fmt)
    if fmt == "vpdq-cpp":
        raise NotExportable(f"vpdq-cpp lines hold videos, not {entry.signal} hashes")
    hex_text = get_signal(entry.signal).to_hex(entry.hash)
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(
            [entry.signal, hex_text, *([entry.source_ref] if entry.source_ref else [])]
        )
        return buf.getvalue()
    if fmt == "hex":
        return hex_text
    if fmt == "threatexchange":
        name = THREATEXCHANGE_NAMES.get(entry.signal)
        if name is None:
            raise NotExportable(f"python-threatexchange has no type for {entry.signal}")
        return f"{name} {hex_text}"
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def _video_text(entry: NewEntry, fmt: str) -> str:
    frames = vpdq_frames(unpack_frames(entry.frames))  # scaled frames stay ours
    if fmt == "vpdq-cpp":
        return to_cpp_lines(frames)  # its last newline and the writer's leave a blank line
    if fmt == "hex":
        raise NotExportable("a vpdq video is no single hex hash")
    if fmt == "threatexchange":
        return f"{VPDQ} {to_pytx(frames)}"
    # Ours: pytx's form with each time in full (pytx keeps 3 digits), so that an exported
    # video imports as the same entry, a duplicate of itself.
    text = json.dumps([f"{f.pdq},{f.quality},{f.timestamp!r}" for f in frames])
    buf = io.StringIO()
    ref = [entry.source_ref] if entry.source_ref else []
    csv.writer(buf, lineterminator="").writerow([VPDQ, text, *ref])
    return buf.getvalue()


class LineError(ValueError):
    pass


def _fields(text: str, bare_signal: str | None) -> tuple[str, str, int | None, str | None]:
    """signal, hex, quality, source ref of one non-blank line."""
    if bare_signal and "," not in text and " " not in text and not text.startswith("{"):
        return bare_signal, text, None, None
    if text.startswith(f"{VPDQ} "):  # python-threatexchange's line of a video
        return VPDQ, text[len(VPDQ) :].strip(), None, None
    if " " in text and "," not in text and not text.startswith("{"):
        name, _, rest = text.partition(" ")
        if name in THREATEXCHANGE_UNMAPPED:
            raise LineError(f"python-threatexchange type {name!r} has no hashmatch equivalent")
        return name, rest.strip(), None, None
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LineError(f"malformed JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(obj, dict):
            raise LineError("malformed JSON: expected an object")
        signal, hex_text, quality = obj.get("signal"), obj.get("hash"), obj.get("quality")
        if not isinstance(signal, str) or not isinstance(hex_text, str):
            raise LineError('malformed JSON: needs string fields "signal" and "hash"')
        if quality is not None and (not isinstance(quality, int) or isinstance(quality, bool)):
            raise LineError('malformed JSON: "quality" must be an integer or null')
        return signal, hex_text, quality, None
    try:
        row = next(csv.reader([text]))
    except csv.Error as exc:  # a field past csv's own limit (128 KiB) among them
        raise LineError(f"malformed CSV: {exc}") from None
    if len(row) == 1 and all(c in "0123456789abcdefABCDEF" for c in text):
        raise LineError("a bare hex hash: give its signal type with --signal")
    if len(row) not in (2, 3):
        raise LineError(f"malformed CSV: expected signal,hexhash[,ref], got {len(row)} fields")
    return row[0].strip(), row[1].strip(), None, (row[2].strip() or None) if len(row) == 3 else None


def parse_line(text: str, bare_signal: str | None = None) -> NewEntry:
    signal_name, hex_text, quality, ref = _fields(text, bare_signal)
    if signal_name.lower() == VPDQ:
        try:
            frames = from_pytx(hex_text)
        except VpdqFormatError as exc:
            raise LineError(str(exc)) from None
        return _listed_video(frames, ref)
    try:
        signal = get_signal(signal_name.lower())
        hash_bytes = signal.parse_hex(hex_text)
    except (UnknownSignalError, HashFormatError) as exc:
        raise LineError(str(exc)) from None
    if reason := signal.degenerate(hash_bytes, quality):
        raise LineError(reason)
    try:
        SOURCE_REF.check(ref)
    except OutOfBounds as exc:
        raise LineError(str(exc)) from None
    return NewEntry(signal.name, hash_bytes, quality, ref)


def is_header(text: str) -> bool:
    return text.replace(" ", "").lower().startswith("signal,hash")


@dataclass(frozen=True)
class Refusal:
    line: int
    reason: str


def _listed_video(frames: Sequence[VideoFrame], ref: str | None = None) -> NewEntry:
    if not frames:
        raise LineError("a vpdq video with no frames")
    if reason := listing_problem(frames):
        raise LineError(reason)
    try:
        SOURCE_REF.check(ref)
    except OutOfBounds as exc:
        raise LineError(str(exc)) from None
    return video_entry(frames, ref)


def _cpp_frame(text: str) -> VideoFrame:
    try:
        (frame,) = from_cpp_lines(text)
    except VpdqFormatError as exc:
        raise LineError(str(exc).removeprefix("line 1: ")) from None
    return frame


class _CppVideo:
    """The vpdq-cpp lines of one video as read so far: its frames, or why it is refused."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.frames: list[VideoFrame] = []
        self.refusal: Refusal | None = None

    def add(self, number: int, text: str) -> None:
        if self.refusal is not None:
            return
        try:
            if len(self.frames) == MAX_VIDEO_FRAMES:
                raise LineError(f"more than {MAX_VIDEO_FRAMES} frames: too long for one video")
            self.frames.append(_cpp_frame(text))
        except LineError as exc:
            self.refusal = Refusal(number, f"vpdq-cpp video from line {self.first}: {exc}")

    def entry(self, refused: Callable[[Refusal], None]) -> NewEntry | None:
        if self.refusal is None:
            try:
                return _listed_video(self.frames)
            except LineError as exc:
                self.refusal = Refusal(self.first, f"vpdq-cpp video: {exc}")
        refused(self.refusal)
        return None


def read_lines(
    lines: Iterable[str], bare_signal: str | None, refused: Callable[[Refusal], None]
) -> Iterator[NewEntry]:
    """The usable entries of a list file; each unusable line goes to `refused`. Lines of
    four fields are a video's vpdq-cpp frames, up to the next line of another kind."""
    video: _CppVideo | None = None
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if CPP_LINE.fullmatch(text):
            video = video or _CppVideo(number)
            video.add(number, text)
            continue
        if video is not None:
            if (entry := video.entry(refused)) is not None:
                yield entry
            video = None
        if not text or text.startswith("#") or (number == 1 and is_header(text)):
            continue
        try:
            yield parse_line(text, bare_signal)
        except LineError as exc:
            refused(Refusal(number, str(exc)))
    if video is not None and (entry := video.entry(refused)) is not None:
        yield entry
