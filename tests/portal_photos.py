"""The bundled stand-in photos as the page's hashing code sees them, with what the CLI
makes of each, for the JavaScript parity tests (tests/js/).

`python -m tests.portal_photos DIR` writes, at test time and never into the repository,
each photo's decoded pixels (`<name>.rgba`: RGBA, 8 bits, row-major, oriented as
`hashmatch.images.decode_rgb` shows it) and `manifest.json`: the CLI's hash of each photo
(`hashmatch hash`), its listing variants and the entries `hashmatch submit` sends, and the
Python tables the JavaScript mirrors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hashmatch.demo.standins import bundled_photos
from hashmatch.downscale import MAX_SIDE
from hashmatch.hashing import hash_bytes
from hashmatch.images import ImageSource
from hashmatch.signals import DEFAULT_SIGNALS, SIGNALS
from hashmatch.submit_commands import case_entries
from hashmatch.variants import (
    BANDS,
    BORDER_TOLERANCE,
    CROPS,
    LISTING_VARIANT_NAMES,
    MIN_KEPT,
    ORIENTATIONS,
    TRIM_PASSES,
    listing_variants,
)

PAGE_SIGNALS = tuple(SIGNALS[name] for name in DEFAULT_SIGNALS)


def tables() -> dict[str, Any]:
    """The Python definitions the page's variants.js copies."""
    return {
        "signals": list(DEFAULT_SIGNALS),
        "crops": [[name, *box] for name, *box in (*CROPS, *BANDS)],
        "orientations": [name for name, *_ in ORIENTATIONS],
        "listing_variant_names": sorted(LISTING_VARIANT_NAMES),
        "border_tolerance": BORDER_TOLERANCE,
        "min_kept": MIN_KEPT,
        "trim_passes": TRIM_PASSES,
        "max_side": MAX_SIDE,
        "signal_rules": {
            s.name: {
                "bits": s.bits,
                "ones_range": list(s.ones_range) if s.ones_range else None,
                "min_quality": s.min_quality,
                "square_size": s.square_size,
            }
            for s in PAGE_SIGNALS
        },
    }


def photo(path: Path, out: Path) -> dict[str, Any]:
    data = path.read_bytes()
    source = ImageSource(data)
    image = source.rgb
    (out / f"{path.stem}.rgba").write_bytes(image.convert("RGBA").tobytes())
    return {
        "name": path.stem,
        "format": path.suffix.lstrip(".").lower(),
        "width": image.width,
        "height": image.height,
        "hash": {
            h.signal: {"hash": h.hash.hex(), "quality": h.quality}
            for h in hash_bytes(data, PAGE_SIGNALS)
        },
        "variants": [
            {
                "name": v.name,
                "signal": v.hash.signal,
                "hash": v.hash.hash.hex(),
                "quality": v.hash.quality,
            }
            for v in listing_variants(source, PAGE_SIGNALS)
        ],
        "entries": [
            {"signal": e.signal, "hash": e.hash.hex(), "quality": e.quality, "variant": e.variant}
            for e in case_entries((str(path),), PAGE_SIGNALS)
        ],
    }


def dump(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"tables": tables(), "photos": [photo(p, out) for p in bundled_photos()]}
    (out / "manifest.json").write_text(json.dumps(manifest))


if __name__ == "__main__":
    dump(Path(sys.argv[1]))
