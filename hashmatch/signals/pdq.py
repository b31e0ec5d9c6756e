"""PDQ: Meta's 256-bit perceptual hash, the industry's interchange format."""

from __future__ import annotations

import numpy as np
import pdqhash

from hashmatch.codec import bits_to_bytes
from hashmatch.images import ImageSource
from hashmatch.signals.base import HashResult, Signal


class PdqSignal(Signal):
    name = "pdq"
    bits = 256
    # The threshold the PDQ authors and python-threatexchange use for a confident match.
    threshold = 31
    # PDQ thresholds at the median, so real images set about 128 bits (126-128 measured
    # on the bundled photos); the PDQ authors discard hashes of quality below 50.
    ones_range = (96, 160)
    min_quality = 50
    # PDQ's blur window follows the input's size, so a half- or quarter-size copy of a
    # fine texture lands 32-124 bits away; hashed at a fixed small size both sides agree
    # (brick 58 -> 0, chessboard 90 -> 14 at 128 px, page 58 -> 4 at 64 px).
    rescaled_sizes = (64, 128)

    def compute(self, image: ImageSource) -> HashResult:
        pixels = np.ascontiguousarray(np.asarray(image.rgb, dtype=np.uint8))
        bits, quality = pdqhash.compute(pixels)
        return HashResult(self.name, bits_to_bytes(bits), int(quality))


PDQ = PdqSignal()
