"""Hashing image files on the caller's machine: the only place images are read."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hashmatch.images import ImageError, ImageSource
from hashmatch.signals import HashResult, Signal
from hashmatch.variants import probe_variants


@dataclass(frozen=True)
class FileHashes:
    file: str
    hashes: tuple[HashResult, ...] = ()
    error: str | None = None
    variants: tuple[str, ...] | None = None  # with robust=True, what each hash is of


def hash_bytes(data: bytes, signals: Sequence[Signal]) -> tuple[HashResult, ...]:
    source = ImageSource(data)
    return tuple(signal.compute(source) for signal in signals)


def hash_files(
    paths: Iterable[str], signals: Sequence[Signal], robust: bool = False
) -> Iterator[FileHashes]:
    """Hash each file (with `robust`, in every checking variant: hashmatch.variants);
    an unreadable one yields an error and the rest go on."""
    for path in paths:
        try:
            data = Path(path).read_bytes()
            if robust:
                found = probe_variants(ImageSource(data), signals)
                yield FileHashes(
                    path, tuple(v.hash for v in found), variants=tuple(v.name for v in found)
                )
                continue
            yield FileHashes(path, hash_bytes(data, signals))
        except OSError as exc:
            yield FileHashes(path, error=f"cannot read file: {exc.strerror or exc}")
        except ImageError as exc:
            yield FileHashes(path, error=str(exc))
