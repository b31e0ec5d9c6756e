"""Hex codec for fixed-length hashes: the interchange text form of every signal.

Bits are packed most significant first, the convention PDQ's reference
implementation, python-threatexchange and imagehash all share, so our hex
strings are theirs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class HashFormatError(ValueError):
    """A hash that is not well-formed for its signal type; the message says why."""


def hex_to_bytes(text: str, bits: int) -> bytes:
    """Exactly bits/4 hex digits, either case, and nothing else: not even whitespace,
    which `bytes.fromhex` would skip, turning a full-length field into a short hash.
    (A file reader may strip whitespace around a whole field before calling this.)"""
    want = bits // 4
    if len(text) != want:
        raise HashFormatError(f"expected {want} hex characters, got {len(text)}")
    if text.isascii() and text.isalnum():
        try:
            return bytes.fromhex(text)  # exact: with no whitespace, nothing is skipped
        except ValueError:
            pass
    bad = next(i for i, c in enumerate(text) if c not in _HEX_DIGITS)
    raise HashFormatError(f"not hex: contains {text[bad]!r} at position {bad}")


def bytes_to_hex(data: bytes) -> str:
    return data.hex()


def bits_to_bytes(bits: npt.ArrayLike) -> bytes:
    """Pack a 0/1 vector (most significant bit first) into bytes."""
    return np.packbits(np.asarray(bits, dtype=np.uint8).ravel()).tobytes()
