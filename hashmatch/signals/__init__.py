"""Registry of signal types, by the name used on the wire, in files and on the CLI."""

from __future__ import annotations

from hashmatch.codec import HashFormatError
from hashmatch.signals.ahash import AHASH
from hashmatch.signals.base import HashResult, Signal
from hashmatch.signals.dhash import DHASH
from hashmatch.signals.md5 import MD5
from hashmatch.signals.pdq import PDQ
from hashmatch.signals.phash import PHASH
from hashmatch.signals.sha256 import SHA256
from hashmatch.signals.whash import WHASH

SIGNALS: dict[str, Signal] = {s.name: s for s in (PDQ, PHASH, DHASH, AHASH, WHASH, MD5, SHA256)}
DEFAULT_SIGNALS: tuple[str, ...] = ("pdq", "phash")


class UnknownSignalError(KeyError):
    def __str__(self) -> str:
        return f"unknown signal {self.args[0]!r} (known: {', '.join(SIGNALS)})"


def get_signal(name: str) -> Signal:
    try:
        return SIGNALS[name]
    except KeyError:
        raise UnknownSignalError(name) from None


def hash_problem(signal_name: str, data: bytes) -> str | None:
    """Why `data` can't be a hash of the named signal (unknown signal, wrong length), or
    None: for readers of rows that no codec checked, which skip such a row, not halt."""
    try:
        get_signal(signal_name).check_bytes(data)
    except (UnknownSignalError, HashFormatError) as exc:
        return str(exc)
    return None


__all__ = [
    "DEFAULT_SIGNALS",
    "SIGNALS",
    "HashResult",
    "Signal",
    "UnknownSignalError",
    "get_signal",
    "hash_problem",
]
