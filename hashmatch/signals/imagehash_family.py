"""The shared shape of the 64-bit hashes computed by the imagehash library."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hashmatch.codec import bits_to_bytes
from hashmatch.images import ImageSource
from hashmatch.signals.base import HashResult, Signal


class ImagehashSignal(Signal):
    bits = 64
    # The bundled photos set 17 to 41 of 64 bits, but page.png's dhash sets all 64:
    # a left-to-right brightening; such a hash is refused as featureless.
    ones_range = (8, 56)

    def __init__(self, name: str, hasher: Callable[..., Any], threshold: int) -> None:
        self.name = name
        self.threshold = threshold
        self._hasher = hasher

    def compute(self, image: ImageSource) -> HashResult:
        return HashResult(self.name, bits_to_bytes(self._hasher(image.rgb).hash))
