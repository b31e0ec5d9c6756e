"""ahash: 64-bit average hash (imagehash.average_hash).

Threshold: chosen from load_tests/robustness_benchmark.py; see README, "Signals and thresholds".
"""

import imagehash

from hashmatch.signals.imagehash_family import ImagehashSignal

AHASH = ImagehashSignal("ahash", imagehash.average_hash, threshold=3)
