"""Benign stand-in photos (those bundled in scikit-image's wheel) and the edits
abusers use on re-uploads, applied in memory on the caller's side.

Only the demo, the calibration script and the tests use this; nothing here
ever runs on the server.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from PIL import Image

PHOTO_SUFFIXES = (".png", ".jpg")

# Photos that show the same scene (a stereo pair, one chessboard in two colour
# modes): they are expected to match each other and so are never "unrelated".
SAME_SCENE: tuple[frozenset[str], ...] = (
    frozenset({"chessboard_GRAY", "chessboard_RGB"}),
    frozenset({"motorcycle_left", "motorcycle_right"}),
)


def bundled_photos() -> list[Path]:
    """The single-frame photos shipped inside scikit-image's wheel, by name."""
    try:
        data = resources.files("skimage") / "data"
    except ModuleNotFoundError:
        raise RuntimeError(
            "the stand-in photos come with scikit-image: pip install 'hashmatch[demo]'"
        ) from None
    photos = sorted(Path(str(p)) for p in data.iterdir() if p.name.endswith(PHOTO_SUFFIXES))
    if not photos:
        raise RuntimeError(f"no bundled photos found under {data}")
    return photos


def same_scene(a: str, b: str) -> bool:
    return any(a in group and b in group for group in SAME_SCENE)


def _encode(image: Image.Image, fmt: str, **options: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def jpeg(data: bytes, quality: int) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        return _encode(im.convert("RGB"), "JPEG", quality=quality)


def scale(data: bytes, factor: float) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        size = (max(1, round(im.width * factor)), max(1, round(im.height * factor)))
        return _encode(im.convert("RGB").resize(size, Image.Resampling.LANCZOS), "PNG")


Edit = Callable[[bytes], bytes]

EDITS: dict[str, Edit] = {
    "jpeg q30": lambda d: jpeg(d, 30),
    "half size": lambda d: scale(d, 0.5),
}
