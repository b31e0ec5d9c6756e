"""PDQ: Meta's 256-bit perceptual hash, the industry's interchange format."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pdqhash

from hashmatch.codec import bits_to_bytes
from hashmatch.images import ImageSource
from hashmatch.signals.base import HashResult, Signal

# PDQ's DCT: the 16 lowest frequencies after the constant one, over 64 samples.
_FREQ = np.arange(1, 17)[:, None]
_DCT = np.sqrt(2 / 64) * np.cos(np.pi / 128 * _FREQ * (2 * np.arange(64)[None, :] + 1))
# Coefficients are compared at this precision (grey levels): a symmetric picture (a
# chessboard) has coefficients that are zero but for rounding, and rounding must not set
# their bits, or its mirror image would hash 48 bits away from the mirrored hash.
_PRECISION = 0.01


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

    def compute(self, image: ImageSource) -> HashResult:
        pixels = np.ascontiguousarray(np.asarray(image.rgb, dtype=np.uint8))
        bits, quality = pdqhash.compute(pixels)
        return HashResult(self.name, bits_to_bytes(bits), int(quality))

    def hash_square(self, luma: npt.NDArray[np.float32]) -> HashResult:
        """PDQ's steps after its blur and decimation, with its bit order and quality: the
        reference's own buffer of an image and this one differ by its filter only."""
        coefficients = np.round(_DCT @ luma.astype(np.float64) @ _DCT.T / _PRECISION)
        bits = (coefficients > np.median(coefficients)).ravel()[::-1]
        gradients = sum(
            int(np.floor(np.abs(np.diff(luma, axis=axis)) * (100 / 255)).sum()) for axis in (0, 1)
        )
        return HashResult(self.name, bits_to_bytes(bits), min(100, gradients // 90))


PDQ = PdqSignal()
