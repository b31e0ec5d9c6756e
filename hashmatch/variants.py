"""Hashing an image so that simple edits don't escape the list, on the caller's side.

A perceptual hash changes completely when an image is mirrored, rotated by a
right angle, cropped or framed. Two places can make up for that:

- when checking, an upload is hashed in every orientation (the 8 symmetries
  of the square) and with uniform borders trimmed: this covers mirrors,
  90/180/270° turns, letterboxing and added frames, and it works against every
  list, including lists that arrive as bare hashes from other hotlines;
- when listing from an image (a victim's own photo), crops are hashed too: a
  cropped re-upload is only a part of the original, which no hash of the part
  can be grown back from, so the parts must be listed;
- on both sides, a signal whose hash depends on the input's size (PDQ) also
  hashes the image resized to fixed small squares, so a downscaled re-upload
  meets the listed image at the same size.

Each variant has a name, so a match can say which scheme found it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pdqhash
from PIL import Image

from hashmatch.codec import bits_to_bytes
from hashmatch.images import ImageSource
from hashmatch.signals import SIGNALS, HashResult, Signal

# pdqhash.compute_dihedral's order, as PIL transposes of the image (checked in the tests).
ORIENTATIONS: tuple[tuple[str, Image.Transpose | None], ...] = (
    ("original", None),
    ("rot90", Image.Transpose.ROTATE_90),
    ("rot180", Image.Transpose.ROTATE_180),
    ("rot270", Image.Transpose.ROTATE_270),
    ("flip", Image.Transpose.FLIP_TOP_BOTTOM),
    ("mirror", Image.Transpose.FLIP_LEFT_RIGHT),
    ("transpose", Image.Transpose.TRANSPOSE),
    ("transverse", Image.Transpose.TRANSVERSE),
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
BORDER_TOLERANCE = 12  # grey levels: a border row is this close to its mean throughout
MIN_KEPT = 0.3  # never trim away more than 70% of a side


@dataclass(frozen=True)
class Variant:
    name: str
    hash: HashResult


def trim_borders(image: Image.Image) -> Image.Image | None:
    """The image without uniform borders (letterbox, pillarbox, frames, screenshot
    padding); None if it has none."""
    grey = np.asarray(image.convert("L"), dtype=np.int16)
    h, w = grey.shape
    if h < 16 or w < 16:
        return None

    def flat(line: np.ndarray, colour: float) -> bool:
        return bool(np.abs(line - colour).max() <= BORDER_TOLERANCE)

    def run(lines: np.ndarray, limit: int) -> int:
        colour = float(np.median(lines[0]))
        n = 0
        while n < limit and flat(lines[n], colour):
            n += 1
        return n

    max_h, max_w = int(h * (1 - MIN_KEPT) / 2), int(w * (1 - MIN_KEPT) / 2)
    top, bottom = run(grey, max_h), run(grey[::-1], max_h)
    left, right = run(grey.T, max_w), run(grey.T[::-1], max_w)
    if max(top, bottom, left, right) < max(2, min(h, w) // 50):
        return None
    return image.crop((left, top, w - right, h - bottom))


def _hash(signal: Signal, image: Image.Image) -> HashResult:
    return signal.compute(ImageSource(b"", image))


def oriented(signal: Signal, image: Image.Image) -> list[Variant]:
    """The image's hash in all 8 orientations, each hashed from the turned pixels.

    Not pdqhash.compute_dihedral: its orientations differ from the hash of the
    turned image by 14 to over 31 bits on the bundled photos, so a mirrored
    re-upload is missed about half the time (load_tests/robustness_benchmark.py,
    scheme 'dihedral'); hashing the turned image is exact.
    """
    return [
        Variant(name, _hash(signal, image if t is None else image.transpose(t)))
        for name, t in ORIENTATIONS
    ]


def dihedral(image: Image.Image) -> list[Variant]:
    """PDQ's own 8 orientations from one pass (pdqhash.compute_dihedral), for comparison."""
    pixels = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    vectors, quality = pdqhash.compute_dihedral(pixels)
    return [
        Variant(name, HashResult("pdq", bits_to_bytes(np.asarray(v)), int(quality)))
        for (name, _), v in zip(ORIENTATIONS, vectors, strict=True)
    ]


def _crops(signal: Signal, image: Image.Image, crops: Sequence[Crop]) -> list[Variant]:
    w, h = image.size
    return [
        Variant(
            name,
            _hash(signal, image.crop((round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h)))),
        )
        for name, x0, y0, x1, y1 in crops
    ]


def rescaled(image: Image.Image, size: int) -> Image.Image:
    return image.resize((size, size), Image.Resampling.LANCZOS)


def probe_variants(source: ImageSource, signals: Sequence[Signal]) -> list[Variant]:
    """What to check an upload with: every orientation, of the image, of the image
    without its borders and at the signal's fixed sizes. Exact signals (file digests)
    have only the file's own hash."""
    image = source.rgb
    trimmed = trim_borders(image)
    found: list[Variant] = []
    for signal in signals:
        if signal.exact:
            found.append(Variant("original", signal.compute(source)))
            continue
        found += oriented(signal, image)
        if trimmed is not None:
            found += [Variant(f"trimmed+{v.name}", v.hash) for v in oriented(signal, trimmed)]
        found += _crops(signal, image, BANDS)
        for size in signal.rescaled_sizes:
            small = oriented(signal, rescaled(image, size))
            found += [Variant(f"scale-{size}+{v.name}", v.hash) for v in small]
    return _distinct(found)


def listing_variants(source: ImageSource, signals: Sequence[Signal]) -> list[Variant]:
    """What to list an image under: itself, without its borders, its crops, and at the
    signal's fixed sizes."""
    image = source.rgb
    trimmed = trim_borders(image)
    found: list[Variant] = []
    for signal in signals:
        found.append(Variant("original", signal.compute(source)))
        if signal.exact:
            continue
        if trimmed is not None:
            found.append(Variant("trimmed", _hash(signal, trimmed)))
        found += _crops(signal, image, (*CROPS, *BANDS))
        found += [
            Variant(f"scale-{size}", _hash(signal, rescaled(image, size)))
            for size in signal.rescaled_sizes
        ]
    return _distinct(found)


# Every name listing_variants can give: an anonymous victim's case may name these and
# nothing else (hashmatch.bounds).
LISTING_VARIANT_NAMES = frozenset(
    {
        "original",
        "trimmed",
        *(name for name, *_ in (*CROPS, *BANDS)),
        *(f"scale-{size}" for signal in SIGNALS.values() for size in signal.rescaled_sizes),
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
