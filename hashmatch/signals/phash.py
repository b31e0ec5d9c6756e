"""phash: 64-bit DCT-based perceptual hash (imagehash.phash).

Threshold: chosen from load_tests/robustness_benchmark.py; see README, "Signals and thresholds".
"""

import imagehash

from hashmatch.signals.imagehash_family import ImagehashSignal

PHASH = ImagehashSignal("phash", imagehash.phash, threshold=7)
