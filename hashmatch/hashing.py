"""Hashing image files on the caller's machine: the only place images are read."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hashmatch.images import ImageError, ImageSource
from hashmatch.signals import HashResult, Signal
from hashmatch.variants import listing_variants, probe_variants

# "check": the variants a check sends (hashmatch.variants.probe_variants); "list": those
# an image is listed under (listing_variants); None: each signal's hash of the image.
Variants = Literal["check", "list"] | None


@dataclass(frozen=True)
class FileHashes:
    file: str
    hashes: tuple[HashResult, ...] = ()
    error: str | None = None
    variants: tuple[str, ...] | None = None  # with variants, what each hash is of


def hash_bytes(data: bytes, signals: Sequence[Signal]) -> tuple[HashResult, ...]:
    source = ImageSource(data)
    return tuple(signal.compute(source) for signal in signals)


def hash_files(
    paths: Iterable[str], signals: Sequence[Signal], variants: Variants = "check"
) -> Iterator[FileHashes]:
    """Hash each file, by default in every variant a check sends, so that a mirrored,
    turned, letterboxed or captioned re-upload is still found; an unreadable file
    yields an error and the rest go on."""
    for path in paths:
        try:
            data = Path(path).read_bytes()
            if variants is None:
                yield FileHashes(path, hash_bytes(data, signals))
                continue
            made = probe_variants if variants == "check" else listing_variants
            found = made(ImageSource(data), signals)
            yield FileHashes(
                path, tuple(v.hash for v in found), variants=tuple(v.name for v in found)
            )
        except OSError as exc:
            yield FileHashes(path, error=f"cannot read file: {exc.strerror or exc}")
        except ImageError as exc:
            yield FileHashes(path, error=str(exc))
