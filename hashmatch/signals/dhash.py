"""dhash: 64-bit gradient (difference) hash (imagehash.dhash).

Threshold: see load_tests/calibrate_thresholds.py and README.
"""

import imagehash

from hashmatch.signals.imagehash_family import ImagehashSignal

DHASH = ImagehashSignal("dhash", imagehash.dhash, threshold=4)
