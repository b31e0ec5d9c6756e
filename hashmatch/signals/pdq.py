"""PDQ: Meta's 256-bit perceptual hash, the industry's interchange format."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
import pdqhash

from hashmatch.codec import bits_to_bytes
from hashmatch.downscale import Taps, gather
from hashmatch.images import ImageSource
from hashmatch.signals.base import HashResult, Signal

# PDQ's DCT: the 16 lowest frequencies after the constant one, over 64 samples.
_FREQ = np.arange(1, 17)[:, None]
_DCT = np.sqrt(2 / 64) * np.cos(np.pi / 128 * _FREQ * (2 * np.arange(64)[None, :] + 1))
# Coefficients are compared at this precision (grey levels): a symmetric picture (a
# chessboard) has coefficients that are zero but for rounding, and rounding must not set
# their bits, or its mirror image would hash 48 bits away from the mirrored hash.
_PRECISION = 0.01
# The reference hashes nothing narrower: all bits zero, quality 0.
_MIN_SIDE = 5
# PDQ thresholds its coefficients at their median: when that is under this share of the
# largest, as for a regular pattern whose energy lies at a few of PDQ's frequencies (a
# chessboard: 5e-4 or less, halved, turned and recompressed), half the bits are set by
# noise. The bundled and generated photos measure 3e-3 or more, whatever the edit.
_NOISE_SHARE = 1e-3


class PdqSignal(Signal):
    name = "pdq"
    bits = 256
    # The threshold the PDQ authors and python-threatexchange use for a confident match.
    threshold = 31
    # PDQ thresholds at the median, so real images set about 128 bits (126-128 measured
    # on the bundled photos); the PDQ authors discard hashes of quality below 50.
    ones_range = (96, 160)
    min_quality = 50
    # PDQ reduces every image to a 64 x 64 luminance buffer before its DCT.
    square_size = 64
    # The reference's filter is ceil(side / 128) wide: a side this long or shorter is
    # sampled down to 64 without a blur.
    unblurred_side = 128

    def compute(self, image: ImageSource) -> HashResult:
        pixels = np.ascontiguousarray(np.asarray(image.rgb, dtype=np.uint8))
        bits, quality = pdqhash.compute(pixels)
        return HashResult(self.name, bits_to_bytes(bits), int(quality))

    def hash_luma(
        self, luma: npt.NDArray[np.float32 | np.uint8], levels: tuple[float, float] = (0, 255)
    ) -> HashResult:
        """PDQ of a luminance array of any size, by the reference's own filter and sampling
        (pdqhash less its conversion from RGB, which took 40% of its time): of a 512-px
        downscale it is a few bits from PDQ of the full image (at most 24 on the bundled
        photos at 1024 px, textures included), where hash_square of the downscale's
        square, resampled by another filter, differs by up to 108 on textures.

        `levels`: the values of black and white in `luma`, such as video's (16, 235); the
        64 x 64 buffer is stretched from them to 0-255, as the whole frame would be (the
        filter is linear), without a pass over the whole frame."""
        height, width = luma.shape
        if min(height, width) < _MIN_SIDE:
            return HashResult(self.name, bytes(self.nbytes), 0)
        square = gather(luma, _jarosz_taps(height), _jarosz_taps(width))
        black, white = levels
        if (black, white) != (0, 255):
            square = np.clip((square - black) * np.float32(255 / (white - black)), 0, 255)
        return self.hash_square(square)

    def hash_square(self, luma: npt.NDArray[np.float32]) -> HashResult:
        """PDQ's steps after its blur and decimation, with its bit order and quality: the
        reference's own buffer of an image and this one differ by its filter only."""
        coefficients = np.round(_coefficients(luma) / _PRECISION)
        bits = (coefficients > np.median(coefficients)).ravel()[::-1]
        gradients = sum(
            int(np.floor(np.abs(np.diff(luma, axis=axis)) * (100 / 255)).sum()) for axis in (0, 1)
        )
        return HashResult(self.name, bits_to_bytes(bits), min(100, gradients // 90))

    def noise_set(self, square: npt.NDArray[np.float32]) -> bool:
        """Whether half the bits of this 64 x 64 buffer's hash are set by noise: true of a
        regular pattern, whose hash of a small copy then depends on how it was resampled
        and compressed rather than on the picture."""
        magnitudes = np.abs(_coefficients(square))
        return float(np.median(magnitudes)) < _NOISE_SHARE * float(magnitudes.max())


def _coefficients(luma: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """PDQ's 16 x 16 DCT coefficients of a 64 x 64 buffer, in grey levels."""
    result: npt.NDArray[np.float64] = _DCT @ luma.astype(np.float64) @ _DCT.T
    return result


PDQ = PdqSignal()


@lru_cache(maxsize=256)
def _jarosz_taps(n: int) -> Taps:
    """PDQ's buffer along a side of n pixels, as taps for its 64 samples: two passes of a
    box filter ceil(n / 128) wide (reaching one more ahead than behind when even) whose
    windows shrink at the edges, then input floor((i + 0.5) n / 64) kept for sample i."""
    window = -(-n // 128)
    ahead = (window + 2) // 2 - 1
    behind = window - 1 - ahead
    offsets = np.arange(-behind, ahead + 1)

    def count(at: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        return np.minimum(at + ahead, n - 1) - np.maximum(at - behind, 0) + 1

    samples = ((np.arange(64) + 0.5) * n / 64).astype(np.intp)
    middle = samples[:, None] + offsets  # the first pass's outputs the second averages
    inputs = middle[:, :, None] + offsets
    weights = (((middle >= 0) & (middle < n)) / count(samples)[:, None])[:, :, None] * (
        ((inputs >= 0) & (inputs < n)) / count(np.clip(middle, 0, n - 1))[:, :, None]
    )
    return (
        np.clip(inputs, 0, n - 1).reshape(64, -1),
        weights.reshape(64, -1).astype(np.float32),
    )
