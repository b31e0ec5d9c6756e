"""The one small copy of an image that every robust variant is derived from.

A plain check decodes the image and hashes it once at full size. Each variant (an
orientation, the picture without its borders, a crop, a band cut) is then taken
from this copy, at most MAX_SIDE pixels a side, rather than from another pass over
the full pixels: resampling a region of it to a hash's small square costs well under
a millisecond. The listing side and the checking side both derive their variants
this way, so they meet; the primary hash of the full image is left as every other
user of the signal computes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from PIL import Image

# PDQ's reference reader downsamples to 512 too; every hash here works on 64 pixels or fewer.
MAX_SIDE = 512

Box = tuple[int, int, int, int]  # left, top, right, bottom, in the downscale's pixels
Luma = npt.NDArray[np.float32]
# For each output along one side: the inputs it takes (outputs x taps) and their weights.
Taps = tuple[npt.NDArray[np.intp], Luma]


@dataclass(frozen=True)
class Downscale:
    rgb: Image.Image
    luma: Luma  # ITU-R 601 luminance, the weights PDQ uses, 0-255

    @classmethod
    def of(cls, image: Image.Image) -> Downscale:
        factor = -(-max(image.size) // MAX_SIDE)
        if factor == 1:
            return cls(image, np.asarray(image.convert("L"), dtype=np.float32))
        if image.width % factor == 0 and image.height % factor == 0:
            # Whole blocks: reduce() averages each, which turning the image only reorders.
            small = image.reduce(factor)
            return cls(small, np.asarray(small.convert("L"), dtype=np.float32))
        # Otherwise reduce() averages a part block at one edge only, and PIL's box resize
        # rounds its windows one way (a 21 x 513 image and its quarter turn came out 38 PDQ
        # bits apart), so the downscale of a turned image would not be the turned
        # downscale; the luminance is resampled with the symmetric taps below instead. The
        # colour copy, for signals that hash images, need not be exact.
        size = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
        luma = resample(np.asarray(image.convert("L")), size[1], size[0])
        return cls(image.resize(size, Image.Resampling.BOX), luma)

    @property
    def whole(self) -> Box:
        return (0, 0, self.rgb.width, self.rgb.height)

    def crop(self, box: Box) -> Image.Image:
        return self.rgb.crop(box)

    def region(self, box: Box) -> Luma:
        left, top, right, bottom = box
        return self.luma[top:bottom, left:right]

    def square(self, box: Box, size: int) -> Luma:
        """The box's luminance resampled to size x size, symmetrically: turning the square
        is resampling the turned box."""
        return resample(self.region(box), size, size)


def resample(luma: npt.NDArray[np.float32 | np.uint8], height: int, width: int) -> Luma:
    """Resample with a tent filter as wide as the reduction."""
    return gather(luma, _taps(luma.shape[0], height), _taps(luma.shape[1], width))


def to_side(luma: npt.NDArray[np.float32 | np.uint8], side: int) -> Luma:
    """Resampled so that its longer side is `side` pixels, its aspect kept."""
    height, width = luma.shape
    scale = side / max(height, width)
    return resample(luma, max(1, round(height * scale)), max(1, round(width * scale)))


def gather(luma: npt.NDArray[np.float32 | np.uint8], row_taps: Taps, col_taps: Taps) -> Luma:
    """Filter and sample separably: each output takes a few inputs per side, gathered one
    tap at a time: a dense product spent most of its time in the BLAS threads on a busy
    machine, and gathering all taps at once held twice the image."""
    (rows, row_weights), (cols, col_weights) = row_taps, col_taps
    height, width = rows.shape[0], cols.shape[0]
    tall = np.zeros((height, luma.shape[1]), np.float32)
    for k in range(rows.shape[1]):
        tall += row_weights[:, k, None] * luma[rows[:, k]]
    out = np.zeros((height, width), np.float32)
    for k in range(cols.shape[1]):
        out += col_weights[None, :, k] * tall[:, cols[:, k]]
    return out


def sub_box(box: Box, x0: float, y0: float, x1: float, y1: float) -> Box:
    """The part of `box` between the given fractions of its width and height."""
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    return (left + round(x0 * w), top + round(y0 * h), left + round(x1 * w), top + round(y1 * h))


@lru_cache(maxsize=256)
def _taps(n: int, size: int) -> Taps:
    """For each of `size` outputs, the inputs (of n) it takes and their weights: those within
    one output pixel of its centre (one input pixel when enlarging), weighted by a tent.
    The second half mirrors the first, so output size-1-i is output i reversed exactly."""
    scale = n / size
    half = max(1.0, scale)
    centres = (np.arange(size) + 0.5) * scale
    inputs = np.floor(centres - half).astype(np.intp)[:, None] + np.arange(int(2 * half) + 3)
    weights = np.clip(1 - np.abs(inputs + 0.5 - centres[:, None]) / half, 0, None)
    weights[(inputs < 0) | (inputs >= n)] = 0
    weights /= weights.sum(axis=1, keepdims=True)
    second = np.arange(size) >= (size + 1) // 2
    mirrored = size - 1 - np.arange(size)
    inputs = np.where(second[:, None], n - 1 - inputs[mirrored, ::-1], inputs)
    weights = np.where(second[:, None], weights[mirrored, ::-1], weights)
    return np.clip(inputs, 0, n - 1), np.asarray(weights, dtype=np.float32)
