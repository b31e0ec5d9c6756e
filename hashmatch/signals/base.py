"""The one interface every signal type implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

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

    @abstractmethod
    def compute(self, image: ImageSource) -> HashResult:
        """Hash one image; runs only on the caller's machine."""
