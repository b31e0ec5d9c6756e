"""ahash: 64-bit average hash (imagehash.average_hash).

Threshold: see load_tests/calibrate_thresholds.py and README.
"""

import imagehash

from hashmatch.signals.imagehash_family import ImagehashSignal

AHASH = ImagehashSignal("ahash", imagehash.average_hash, threshold=3)
