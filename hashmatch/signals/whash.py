"""whash: 64-bit Haar wavelet hash (imagehash.whash).

Threshold: see load_tests/calibrate_thresholds.py and README.
"""

import imagehash

from hashmatch.signals.imagehash_family import ImagehashSignal

WHASH = ImagehashSignal("whash", imagehash.whash, threshold=2)
