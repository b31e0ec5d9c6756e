"""Hashing an image so that simple edits don't escape the list, on the caller's side.

A perceptual hash changes completely when an image is mirrored, rotated by a
right angle, cropped or framed. Both sides make up for it, and both are ours:

- every image is hashed as a whole, at full size, exactly as every other user of
  the signal hashes it: that hash meets lists that arrive as bare hashes from
  other hotlines;
- every other variant is derived from one shared downscale (hashmatch.downscale):
  a region of it resampled to the signal's small square, then turned as an array.
  A fixed small square also makes a downscaled re-upload meet its listing, where
  PDQ's blur window follows the input's size;
- a check sends the image in its 8 orientations (mirrors and right-angle turns),
  of the picture without its uniform borders (letterbox, frames, screenshot
  padding) where it has some, and two band cuts (a caption over the top or
  bottom): 14 to 16 hashes for PDQ and pHash;
- a listing adds the image's crops: a cropped re-upload is only a part of the
  original, which no hash of the part can be grown back from, so the parts are
  listed.

One signal carries the orientations: PDQ when it is checked, otherwise each
signal; every signal sends the band cuts (pHash's keep its recall on rotation by
a few degrees, brightening, heavy JPEG and watermarks). Each variant has a name,
so a match says which found it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from hashmatch.downscale import Box, Downscale, Luma, sub_box
from hashmatch.images import ImageSource
from hashmatch.signals import HashResult, Signal

Turn = Callable[[Luma], Luma]
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
BORDER_TOLERANCE = 12  # grey levels: a border line is this close to its median throughout
MIN_KEPT = 0.3  # never trim away more than 70% of a side
# A screenshot's padding comes in layers (a title bar, then a margin of another colour):
# each pass trims one layer off every side.
TRIM_PASSES = 3


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


def derived(signal: Signal, small: Downscale, box: Box, turn: int = 0) -> HashResult:
    """The signal's hash of a box of the downscale, turned by ORIENTATIONS[turn]."""
    _, transpose, turned = ORIENTATIONS[turn]
    if signal.square_size:
        return signal.hash_square(
            np.ascontiguousarray(turned(small.square(box, signal.square_size)))
        )
    image = small.crop(box)
    return signal.compute(
        ImageSource(b"", image if transpose is None else image.transpose(transpose))
    )


def oriented(signal: Signal, small: Downscale, box: Box, prefix: str) -> list[Variant]:
    """The box in all 8 orientations, named `prefix` and `prefix+turn`; from one resampled
    square for a signal that hashes squares."""
    names = [prefix if n == "original" else f"{prefix}+{n}" for n, _, _ in ORIENTATIONS]
    if not signal.square_size:
        return [Variant(name, derived(signal, small, box, k)) for k, name in enumerate(names)]
    square = small.square(box, signal.square_size)
    return [
        Variant(name, signal.hash_square(np.ascontiguousarray(turned(square))))
        for name, (_, _, turned) in zip(names, ORIENTATIONS, strict=True)
    ]


def _carriers(signals: Sequence[Signal]) -> set[str]:
    """The signals that carry orientations and band cuts: those that hash squares (PDQ)
    when one is checked, since it covers the variants for all; otherwise every one."""
    perceptual = [s for s in signals if not s.exact]
    squares = [s for s in perceptual if s.square_size]
    return {s.name for s in (squares or perceptual)}


def _crops(signal: Signal, small: Downscale, box: Box, crops: Sequence[Crop]) -> list[Variant]:
    return [Variant(name, derived(signal, small, sub_box(box, *c))) for name, *c in crops]


def probe_variants(source: ImageSource, signals: Sequence[Signal]) -> list[Variant]:
    """What to check an upload with: each signal's hash of the whole image and 2 band
    cuts; the carrier's 8 orientations of the picture (without its borders where it has
    some, then also the whole downscale as is); others' hash of the picture. Exact
    signals (file digests) have only the file's own hash. 14 to 16 for PDQ and pHash."""
    small = Downscale.of(source.rgb)
    trimmed = trim_borders(small.luma)
    picture = trimmed or small.whole
    carriers = _carriers(signals)
    found: list[Variant] = []
    for signal in signals:
        found.append(Variant("original", signal.compute(source)))
        if signal.exact:
            continue
        found += _crops(signal, small, small.whole, BANDS)
        if signal.name not in carriers:
            if trimmed is not None:
                found.append(Variant("trimmed", derived(signal, small, trimmed)))
            continue
        turns = oriented(signal, small, picture, "trimmed" if trimmed else "small")
        # A signal hashed from the image itself already has the whole image as it is.
        found += turns if signal.square_size or trimmed else turns[1:]
        if trimmed is not None and signal.square_size:
            found.append(Variant("small", derived(signal, small, small.whole)))
    return _distinct(found)


def listing_variants(source: ImageSource, signals: Sequence[Signal]) -> list[Variant]:
    """What to list an image under: each signal's hash of the whole image, and from the
    downscale, the whole (for a signal that hashes squares), the picture without its
    borders, and the image's crops and band cuts (cut from the whole image on both
    sides: a caption band's plain bottom rows read as a border)."""
    small = Downscale.of(source.rgb)
    trimmed = trim_borders(small.luma)
    found: list[Variant] = []
    for signal in signals:
        found.append(Variant("original", signal.compute(source)))
        if signal.exact:
            continue
        if signal.square_size:
            found.append(Variant("small", derived(signal, small, small.whole)))
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
