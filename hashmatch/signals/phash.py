"""phash: 64-bit DCT-based perceptual hash (imagehash.phash).

Threshold: see load_tests/calibrate_thresholds.py and README.
"""

import imagehash

from hashmatch.signals.imagehash_family import ImagehashSignal

PHASH = ImagehashSignal("phash", imagehash.phash, threshold=10)
