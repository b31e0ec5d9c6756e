"""Cryptographic digests of the file bytes: exact matches only."""

from __future__ import annotations

import hashlib
import os

from hashmatch.images import ImageSource
from hashmatch.signals.base import HashResult, Signal


class DigestSignal(Signal):
    threshold = 0
    exact = True

    def __init__(self, name: str, bits: int) -> None:
        self.name = name
        self.bits = bits

    def compute(self, image: ImageSource) -> HashResult:
        return HashResult(self.name, hashlib.new(self.name, image.data).digest())

    def compute_file(self, path: str | os.PathLike[str]) -> HashResult:
        """The digest of a file of any size (a video), read in chunks, not held whole."""
        with open(path, "rb") as file:
            return HashResult(self.name, hashlib.file_digest(file, self.name).digest())
