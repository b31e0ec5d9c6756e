"""whash: 64-bit Haar wavelet hash (imagehash.whash).

Threshold: chosen from load_tests/robustness_benchmark.py; see README, "Signals and thresholds".
"""

import imagehash

from hashmatch.signals.imagehash_family import ImagehashSignal

WHASH = ImagehashSignal("whash", imagehash.whash, threshold=2)
