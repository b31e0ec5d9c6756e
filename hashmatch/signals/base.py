"""The one interface every signal type implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hashmatch.codec import HashFormatError, bytes_to_hex, hex_to_bytes
from hashmatch.images import ImageSource


@dataclass(frozen=True)
class HashResult:
    signal: str
    hash: bytes
    quality: int | None = None


class Signal(ABC):
    """A hash type: its name, bit length, hex codec, default threshold and local hasher.

    `exact` signals (cryptographic digests) match only at distance 0 and are
    looked up by value rather than searched by Hamming distance.
    """

    name: str
    bits: int
    threshold: int
    exact: bool = False
    # How many bits a hash of a real image sets; outside it, the hash carries too little
    # information and would match many innocent images (None: no bound).
    ones_range: tuple[int, int] | None = None
    min_quality: int | None = None
    # The side of the square luminance buffer the hash is taken from, for signals that can
    # hash such a buffer directly (hash_square): hashmatch.variants then derives each
    # variant from one resampled square and turns it as an array, not as an image.
    square_size: int | None = None

    @property
    def nbytes(self) -> int:
        return self.bits // 8

    def parse_hex(self, text: str) -> bytes:
        try:
            return hex_to_bytes(text, self.bits)
        except HashFormatError as exc:
            raise HashFormatError(f"{self.name} hash: {exc}") from None

    def check_bytes(self, data: bytes) -> bytes:
        if len(data) != self.nbytes:
            raise HashFormatError(f"{self.name} hash must be {self.nbytes} bytes, got {len(data)}")
        return data

    def to_hex(self, data: bytes) -> str:
        return bytes_to_hex(data)

    def degenerate(self, data: bytes, quality: int | None = None) -> str | None:
        """Why this hash must not go on a list, or None.

        A list entry that matches a flat or featureless image would block huge
        numbers of innocent uploads (and is how a malicious submitter poisons a list).
        """
        ones = int.from_bytes(data, "big").bit_count()
        if ones == 0 or ones == self.bits:
            return f"{self.name} hash has all bits {'one' if ones else 'zero'}: a featureless image"
        if self.ones_range and not self.ones_range[0] <= ones <= self.ones_range[1]:
            low, high = self.ones_range
            return (
                f"{self.name} hash sets {ones} of {self.bits} bits (real images set {low} to "
                f"{high}): too little information, it would match many innocent images"
            )
        if self.min_quality is not None and quality is not None and quality < self.min_quality:
            return (
                f"{self.name} quality {quality} is below {self.min_quality}: too little detail "
                "to match safely"
            )
        return None

    @abstractmethod
    def compute(self, image: ImageSource) -> HashResult:
        """Hash one image; runs only on the caller's machine."""

    def hash_square(self, luma: npt.NDArray[np.float32]) -> HashResult:
        """Hash a square_size x square_size luminance buffer (0-255)."""
        raise NotImplementedError(f"{self.name} hashes images, not luminance squares")
