"""Hex codec for fixed-length hashes: the interchange text form of every signal.

Bits are packed most significant first, the convention PDQ's reference
implementation, python-threatexchange and imagehash all share, so our hex
strings are theirs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class HashFormatError(ValueError):
    """A hash that is not well-formed for its signal type; the message says why."""


def hex_to_bytes(text: str, bits: int) -> bytes:
    want = bits // 4
    cleaned = text.strip().lower()
    if len(cleaned) != want:
        raise HashFormatError(f"expected {want} hex characters, got {len(cleaned)}")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        bad = next(c for c in cleaned if c not in "0123456789abcdef")
        raise HashFormatError(f"not hex: contains {bad!r}") from None


def bytes_to_hex(data: bytes) -> str:
    return data.hex()


def bits_to_bytes(bits: npt.ArrayLike) -> bytes:
    """Pack a 0/1 vector (most significant bit first) into bytes."""
    return np.packbits(np.asarray(bits, dtype=np.uint8).ravel()).tobytes()
