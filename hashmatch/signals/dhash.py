"""dhash: 64-bit gradient (difference) hash (imagehash.dhash).

Threshold: chosen from load_tests/robustness_benchmark.py; see README, "Signals and thresholds".
"""

import imagehash

from hashmatch.signals.imagehash_family import ImagehashSignal

DHASH = ImagehashSignal("dhash", imagehash.dhash, threshold=4)
