"""Decoding image files on the caller's machine, once for all signals."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from PIL import Image, ImageOps, UnidentifiedImageError


class ImageError(ValueError):
    """An input that is not a readable image; the message says why."""


@dataclass
class ImageSource:
    """The raw bytes of one image file plus its decoded RGB pixels, decoded on first use."""

    data: bytes
    _rgb: Image.Image | None = field(default=None, repr=False)

    @property
    def rgb(self) -> Image.Image:
        if self._rgb is None:
            self._rgb = decode_rgb(self.data)
        return self._rgb


def decode_rgb(data: bytes) -> Image.Image:
    """Decode to RGB as a viewer would show it (EXIF orientation applied)."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            oriented = ImageOps.exif_transpose(opened)
            return oriented.convert("RGB")
    except UnidentifiedImageError:
        raise ImageError("not a recognised image format") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot decode image: {exc}") from None
