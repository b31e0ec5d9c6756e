"""Measure the default match threshold of each signal over the bundled stand-in photos.

For every signal: the distances between each photo and its edited copies
(JPEG q30, half size) and between every pair of unrelated photos. The chosen
threshold is the smallest that matches every edited copy, reported with the
margin left below the closest unrelated pair.

    python load_tests/calibrate_thresholds.py
"""

from __future__ import annotations

import itertools

import numpy as np

from hashmatch.images import ImageSource
from hashmatch.signals import SIGNALS
from hashmatch.standins import EDITS, bundled_photos, same_scene


def distance(a: bytes, b: bytes) -> int:
    return int(np.unpackbits(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).sum())


def main() -> None:
    photos = {p.stem: p.read_bytes() for p in bundled_photos()}
    perceptual = [s for s in SIGNALS.values() if not s.exact]
    originals = {
        name: {s.name: s.compute(ImageSource(data)).hash for s in perceptual}
        for name, data in photos.items()
    }
    edited: dict[str, list[tuple[str, str, int]]] = {s.name: [] for s in perceptual}
    for name, data in photos.items():
        for edit_name, edit in EDITS.items():
            copy = ImageSource(edit(data))
            for s in perceptual:
                d = distance(originals[name][s.name], s.compute(copy).hash)
                edited[s.name].append((name, edit_name, d))
    print(f"{len(photos)} bundled photos, edits: {', '.join(EDITS)}\n")
    print(
        "| signal | bits | worst edited copy | closest unrelated pair | smallest covering"
        " | configured | edited copies matched at configured |"
    )
    print("|---|---|---|---|---|---|---|")
    misses: list[str] = []
    for s in perceptual:
        worst = max(edited[s.name], key=lambda row: row[2])
        unrelated = min(
            (distance(originals[a][s.name], originals[b][s.name]), a, b)
            for a, b in itertools.combinations(photos, 2)
            if not same_scene(a, b)
        )
        covering = worst[2]
        note = "" if covering < unrelated[0] else " (overlaps unrelated!)"
        missed = [f"{n} {e} ({d})" for n, e, d in edited[s.name] if d > s.threshold]
        matched = len(edited[s.name]) - len(missed)
        print(
            f"| {s.name} | {s.bits} | {worst[2]} ({worst[0]}, {worst[1]}) "
            f"| {unrelated[0]} ({unrelated[1]} / {unrelated[2]}) | {covering}{note} "
            f"| {s.threshold} | {matched}/{len(edited[s.name])} |"
        )
        if missed:
            misses.append(f"missed by {s.name} at {s.threshold}: {'; '.join(missed)}")
    print("\n" + "\n".join(misses) if misses else "")


if __name__ == "__main__":
    main()
