"""Hashing an image so that simple edits don't escape the list, on the caller's side.

A perceptual hash changes completely when an image is mirrored, rotated by a
right angle, cropped or framed. Both sides make up for it, and both are ours:

- every image is hashed as a whole, at full size, exactly as every other user of
  the signal hashes it: that hash meets lists that arrive as bare hashes from
  other hotlines;
- every other variant is derived from one shared downscale (hashmatch.downscale).
  The orientations and the picture without its borders are the signal's own hash
  of that region of it, turned: for PDQ, PDQ's own filter of the turned luminance,
  a few bits from PDQ of the turned full image, so a mirrored or rotated re-upload
  meets a bare list too. Crops, band cuts and the whole ("small") are the region
  resampled to the signal's small square (PDQ's 64 x 64 buffer): a fixed square
  makes a downscaled re-upload meet its listing, where PDQ's blur window follows
  the input's size;
- a check sends the upload's 7 turns (mirrors and right-angle turns), the
  picture without its uniform borders (letterbox, frames, screenshot padding)
  where it has some, the whole downscale's square and two band cuts (a caption
  over the top or bottom): 14 to 16 hashes for PDQ and pHash;
- a listing adds the image's crops (a cropped re-upload is only a part of the
  original, which no hash of the part can be grown back from, so the parts are
  listed) and its square in all 8 orientations, which a check's one square of a
  downscaled, turned re-upload meets: listed hashes cost the check nothing.

One signal carries the orientations: PDQ when it is checked, otherwise each
signal; every signal sends the band cuts (pHash's keep its recall on rotation by
a few degrees, brightening, heavy JPEG and watermarks). Each variant has a name,
so a match says which found it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from PIL import Image

from hashmatch.downscale import MAX_SIDE, Box, Downscale, Luma, sub_box
from hashmatch.images import ImageSource
from hashmatch.signals import HashResult, Signal

Turn = Callable[[npt.NDArray[Any]], npt.NDArray[Any]]
# (name, PIL transpose, the same turn of a luminance array); a variant named for a turn
# is the upload turned that way, so a re-upload turned by R is found by R's inverse.
ORIENTATIONS: tuple[tuple[str, Image.Transpose | None, Turn], ...] = (
    ("original", None, lambda a: a),
    ("rot90", Image.Transpose.ROTATE_90, lambda a: np.rot90(a, 1)),
    ("rot180", Image.Transpose.ROTATE_180, lambda a: np.rot90(a, 2)),
    ("rot270", Image.Transpose.ROTATE_270, lambda a: np.rot90(a, 3)),
    ("flip", Image.Transpose.FLIP_TOP_BOTTOM, lambda a: a[::-1]),
    ("mirror", Image.Transpose.FLIP_LEFT_RIGHT, lambda a: a[:, ::-1]),
    ("transpose", Image.Transpose.TRANSPOSE, lambda a: a.T),
    ("transverse", Image.Transpose.TRANSVERSE, lambda a: np.rot90(a, 2).T),
)
Crop = tuple[str, float, float, float, float]
# Both sides: a caption band or banner across the top or bottom of a re-upload is
# cut off the upload and matched against the original with the same strip cut off.
BANDS: tuple[Crop, ...] = (
    ("band-top-90", 0.0, 0.10, 1.0, 1.0),
    ("band-bottom-90", 0.0, 0.0, 1.0, 0.90),
)
# Listed crops: (name, left, top, right, bottom) as fractions of the image kept.
CROPS: tuple[Crop, ...] = (
    ("crop-center-90", 0.05, 0.05, 0.95, 0.95),
    ("crop-center-80", 0.10, 0.10, 0.90, 0.90),
    ("crop-center-70", 0.15, 0.15, 0.85, 0.85),
    ("crop-left-80", 0.0, 0.0, 0.80, 1.0),
    ("crop-right-80", 0.20, 0.0, 1.0, 1.0),
    ("crop-top-80", 0.0, 0.0, 1.0, 0.80),
    ("crop-bottom-80", 0.0, 0.20, 1.0, 1.0),
)
ALL_TURNS = tuple(range(len(ORIENTATIONS)))
BORDER_TOLERANCE = 12  # grey levels: a border line is this close to its median throughout
MIN_KEPT = 0.3  # never trim away more than 70% of a side
# A screenshot's padding comes in layers (a title bar, then a margin of another colour):
# each pass trims one layer off every side.
TRIM_PASSES = 3


@runtime_checkable
class HashesLuma(Protocol):
    """A signal that hashes a luminance array of any size as it hashes an image (PDQ)."""

    unblurred_side: int

    def hash_luma(self, luma: Luma) -> HashResult: ...

    def noise_set(self, square: Luma) -> bool: ...


@dataclass(frozen=True)
class Variant:
    name: str
    hash: HashResult


def trim_borders(luma: npt.NDArray[np.float32], passes: int = TRIM_PASSES) -> Box | None:
    """The box inside uniform borders (letterbox, pillarbox, frames, screenshot padding);
    None if there are none."""
    h, w = luma.shape
    if h < 16 or w < 16:
        return None
    least = max(2, min(h, w) // 50)
    left, top, right, bottom = 0, 0, w, h

    def run(lines: npt.NDArray[np.float32], limit: int) -> int:
        """How many lines from the edge are each one colour throughout. Their colours may
        differ: a title bar above a margin, and the line the downscale blends them into."""
        n = 0
        while n < limit and float(np.abs(lines[n] - np.median(lines[n])).max()) <= BORDER_TOLERANCE:
            n += 1
        return n

    for _ in range(passes):
        area = luma[top:bottom, left:right]
        room_h = max(0, (bottom - top - round(h * MIN_KEPT)) // 2)
        room_w = max(0, (right - left - round(w * MIN_KEPT)) // 2)
        cut = (
            run(area.T, room_w),
            run(area, room_h),
            run(area.T[::-1], room_w),
            run(area[::-1], room_h),
        )
        if max(cut) < least:
            break
        left, top, right, bottom = left + cut[0], top + cut[1], right - cut[2], bottom - cut[3]
    return None if (left, top, right, bottom) == (0, 0, w, h) else (left, top, right, bottom)


def derived(signal: Signal, small: Downscale, box: Box) -> HashResult:
    """The signal's hash of a box of the downscale: of its small square resampled from it
    for a signal that hashes squares, of the box's pixels otherwise."""
    if signal.square_size:
        return signal.hash_square(small.square(box, signal.square_size))
    return signal.compute(ImageSource(b"", small.crop(box)))


def oriented(
    signal: Signal,
    small: Downscale,
    box: Box,
    prefix: str,
    turns: Sequence[int] = ALL_TURNS,
    enlarge: int = 1,
) -> list[Variant]:
    """The signal's own hash of the box turned by each of ORIENTATIONS[turns], named
    `prefix` and `prefix+turn`: what hashing the turned picture gives, so a turned
    re-upload, turned back, meets its original's hash however that was listed; for a
    signal that hashes luminance, of the picture `enlarge` times as large, if asked."""
    named = [
        (ORIENTATIONS[k], prefix if k == 0 else f"{prefix}+{ORIENTATIONS[k][0]}") for k in turns
    ]
    if isinstance(signal, HashesLuma):
        luma = small.region(box)
        if enlarge > 1:
            luma = np.repeat(np.repeat(luma, enlarge, axis=0), enlarge, axis=1)
        return [Variant(name, signal.hash_luma(turn(luma))) for (_, _, turn), name in named]
    image = small.crop(box)
    return [
        Variant(name, signal.compute(ImageSource(b"", image if t is None else image.transpose(t))))
        for (_, t, _), name in named
    ]


def turned_squares(signal: Signal, small: Downscale, box: Box, prefix: str) -> list[Variant]:
    """The signal's hash of the box's small square in all 8 orientations, turned as an
    array: listed, they meet a downscaled re-upload turned any way, whose own square is
    the turned square (PDQ itself of a downscaled texture is far from its original's)."""
    assert signal.square_size
    square = small.square(box, signal.square_size)
    return [
        Variant(prefix if n == "original" else f"{prefix}+{n}", signal.hash_square(turn(square)))
        for n, _, turn in ORIENTATIONS
    ]


def _carriers(signals: Sequence[Signal], primaries: dict[str, HashResult]) -> set[str]:
    """The signals that carry orientations: those that hash squares (PDQ) when one is
    checked and its hash of the image is good enough to list, since it covers the
    variants for all; otherwise the others (a list holds no PDQ of an image whose PDQ
    quality is too low, so its turns must be found by the other signals, and sending
    them too would break the 16-hash budget), or every one if there are no others."""
    perceptual = [s for s in signals if not s.exact]
    squares = [
        s
        for s in perceptual
        if s.square_size and s.degenerate(primaries[s.name].hash, primaries[s.name].quality) is None
    ]
    others = [s for s in perceptual if not s.square_size]
    return {s.name for s in (squares or others or perceptual)}


def _enlargement(signal: Signal, small: Downscale, square: Luma) -> int:
    """How many times to enlarge a small upload before hashing its turns: once, unless the
    signal's hash of it is set by noise (a chessboard) and a side of it is too short for
    the signal to blur. Its original was listed by its hash at full size, where such a
    pattern's bits come from the signal's blur, which an enlarged copy goes through too
    (a halved chessboard turned back: 96 bits away at its own size, 22 enlarged twice);
    at the upload's own size they come from how it was shrunk and compressed. Listed
    squares can't stand in: a list refuses a pattern's square (32 of 256 bits set)."""
    if not isinstance(signal, HashesLuma) or not signal.noise_set(square):
        return 1
    shortest, longest = (int(f(small.luma.shape)) for f in (min, max))
    blurred = signal.unblurred_side + 1
    if shortest >= blurred:
        return 1
    return max(1, min(-(-blurred // shortest), MAX_SIDE // longest))


def _crops(signal: Signal, small: Downscale, box: Box, crops: Sequence[Crop]) -> list[Variant]:
    return [Variant(name, derived(signal, small, sub_box(box, *c))) for name, *c in crops]


def probe_variants(source: ImageSource, signals: Sequence[Signal]) -> list[Variant]:
    """What to check an upload with: each signal's hash of the whole image, of its 2 band
    cuts and of the picture without its borders where it has some; the carrier's 7 turns
    of the whole image (a bare list holds whole images, some with plain edges that read as
    borders) and, for a signal that hashes squares, the whole downscale's square. Exact
    signals (file digests) have only the file's own hash. 14 to 16 for PDQ and pHash,
    whichever carries the turns. A small upload whose hash is set by noise has its turns
    hashed from a copy enlarged enough for the signal to blur (_enlargement)."""
    small = Downscale.of(source.rgb)
    trimmed = trim_borders(small.luma)
    primaries = {signal.name: signal.compute(source) for signal in signals}
    carriers = _carriers(signals, primaries)
    found: list[Variant] = []
    for signal in signals:
        found.append(Variant("original", primaries[signal.name]))
        if signal.exact:
            continue
        found += _crops(signal, small, small.whole, BANDS)
        if trimmed is not None:
            found += oriented(signal, small, trimmed, "trimmed", (0,))
        square = small.square(small.whole, signal.square_size) if signal.square_size else None
        if signal.name in carriers:
            enlarge = 1 if square is None else _enlargement(signal, small, square)
            found += oriented(signal, small, small.whole, "small", ALL_TURNS[1:], enlarge)
        if square is not None:
            found.append(Variant("small", signal.hash_square(square)))
    return _distinct(found)


def listing_variants(source: ImageSource, signals: Sequence[Signal]) -> list[Variant]:
    """What to list an image under: each signal's hash of the whole image, and from the
    downscale, the whole's square in all 8 orientations (for a signal that hashes squares:
    a check sends one square, of the re-upload as it is, and a downscaled, turned texture
    meets no turn of the full-size hash), the picture without its borders, and the image's
    crops and band cuts (cut from the whole image on both sides: a caption band's plain
    bottom rows read as a border)."""
    small = Downscale.of(source.rgb)
    trimmed = trim_borders(small.luma)
    found: list[Variant] = []
    for signal in signals:
        found.append(Variant("original", signal.compute(source)))
        if signal.exact:
            continue
        if signal.square_size:
            found += turned_squares(signal, small, small.whole, "small")
        if trimmed is not None:
            found.append(Variant("trimmed", derived(signal, small, trimmed)))
        found += _crops(signal, small, small.whole, (*CROPS, *BANDS))
    return _distinct(found)


# Every name listing_variants can give: an anonymous victim's case may name these and
# nothing else (hashmatch.bounds).
LISTING_VARIANT_NAMES = frozenset(
    {
        "original",
        "small",
        *(f"small+{name}" for name, *_ in ORIENTATIONS[1:]),
        "trimmed",
        *(name for name, *_ in (*CROPS, *BANDS)),
    }
)


def _distinct(variants: list[Variant]) -> list[Variant]:
    """One variant per (signal, hash), the first named: symmetric images repeat hashes."""
    seen: set[tuple[str, bytes]] = set()
    kept = []
    for v in variants:
        key = (v.hash.signal, v.hash.hash)
        if key not in seen:
            seen.add(key)
            kept.append(v)
    return kept
