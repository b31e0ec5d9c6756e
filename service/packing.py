"""Refusing a submission that packs many distinct hashes within the match threshold of
each other: a flood of near-identical entries would make every check of that point
costly (and say nothing a single entry doesn't).

The variants of one image (its crops, trims and rescales lie 6-18 bits apart by
design) and the frames of one video belong together, so only entries of *other*
images count. HashEntry.image numbers an entry's image; an entry without a number
begins a new image, unless it names a variant: then it belongs to the image before
it, as `hashmatch submit` sends an image's variants after the image itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from hashmatch.list_formats import NewEntry
from hashmatch.signals import SIGNALS
from hashmatch.v1 import submission_pb2
from service.engine import FaissRangeEngine

# Entries of other images one entry may lie within the threshold of.
MAX_NEAR_OTHERS = 16
# Entries of one signal that may share an image: an image's listing variants are fewer.
MAX_PER_IMAGE = 64
# Entries compared with each other at once (pairwise: the cost grows with the square).
CHUNK = 10_000


def image_numbers(messages: Sequence[submission_pb2.HashEntry]) -> list[int]:
    """Each entry's image: its own number, or (unnumbered) a negative one by the rule above."""
    numbers = []
    implicit = 0
    for m in messages:
        if m.HasField("image"):
            numbers.append(m.image)
            continue
        if not m.variant or implicit == 0:
            implicit -= 1
        numbers.append(implicit)
    return numbers


def packed(entries: Sequence[NewEntry], images: Sequence[int]) -> dict[int, str]:
    """The positions of entries to refuse, with the reason: too many entries of one image,
    or within the threshold of more than MAX_NEAR_OTHERS entries of other images."""
    refused: dict[int, str] = {}
    by_signal: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(entries):
        # A video is one entry: its frames lie close by nature and are not compared here.
        known = SIGNALS.get(e.signal)
        if known is not None and not known.exact:
            by_signal[e.signal].append(i)
    for name, positions in by_signal.items():
        signal = SIGNALS[name]
        sizes: dict[int, int] = defaultdict(int)
        for i in positions:
            sizes[images[i]] += 1
            if sizes[images[i]] > MAX_PER_IMAGE:
                refused[i] = (
                    f"more than {MAX_PER_IMAGE} {name} hashes given as one image "
                    f"(image {images[i]})"
                )
        for at in range(0, len(positions), CHUNK):
            chunk = positions[at : at + CHUNK]
            if len(chunk) <= MAX_NEAR_OTHERS:
                continue
            hashes = np.frombuffer(b"".join(entries[i].hash for i in chunk), np.uint8)
            hashes = hashes.reshape(len(chunk), signal.nbytes)
            hits = FaissRangeEngine.from_hashes(signal.bits, hashes).search(
                hashes, signal.threshold
            )
            image = np.array([images[i] for i in chunk], np.int64)
            owner = np.repeat(np.arange(len(chunk)), np.diff(hits.lims))
            others = np.bincount(owner[image[owner] != image[hits.rows]], minlength=len(chunk))
            for k in np.flatnonzero(others > MAX_NEAR_OTHERS).tolist():
                refused.setdefault(
                    chunk[k],
                    f"within the {name} threshold of {int(others[k])} hashes of other images "
                    f"in this submission (at most {MAX_NEAR_OTHERS}); number an image's "
                    "variants, or a video's frames, as one image (HashEntry.image)",
                )
    return refused
