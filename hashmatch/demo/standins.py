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

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from hashmatch.images import decode_rgb

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

# The edits every PDQ service finds with one hash per image (tests rely on it).
EDITS: dict[str, Edit] = {
    "jpeg q30": lambda d: jpeg(d, 30),
    "half size": lambda d: scale(d, 0.5),
}


# The robustness benchmark's transforms: what abusers do to re-uploads to dodge a
# block. Each takes and returns a decoded RGB image; JPEG ones round-trip through
# the encoder.


def _jpeg_image(image: Image.Image, quality: int) -> Image.Image:
    with Image.open(io.BytesIO(_encode(image, "JPEG", quality=quality))) as im:
        return im.convert("RGB")


def _resize(image: Image.Image, factor: float) -> Image.Image:
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _crop(image: Image.Image, x0: float, y0: float, x1: float, y1: float) -> Image.Image:
    w, h = image.size
    return image.crop((round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h)))


def _pad(
    image: Image.Image, left: int, top: int, right: int, bottom: int, colour: str
) -> Image.Image:
    out = Image.new("RGB", (image.width + left + right, image.height + top + bottom), colour)
    out.paste(image, (left, top))
    return out


def _letterbox(image: Image.Image) -> Image.Image:
    """Black bars to a 16:9 frame (or, for a wide image, top and bottom)."""
    w, h = image.size
    if w / h < 16 / 9:
        side = (round(h * 16 / 9) - w) // 2
        return _pad(image, side, 0, side, 0, "black")
    bar = (round(w * 9 / 16) - h) // 2
    return _pad(image, 0, bar, 0, bar, "black")


def _screenshot(image: Image.Image) -> Image.Image:
    """White margins and a grey title bar, as a phone screenshot of the image."""
    w = image.width
    framed = _pad(image, w // 20, w // 6, w // 20, w // 4, "white")
    ImageDraw.Draw(framed).rectangle((0, 0, framed.width, w // 12), fill=(60, 60, 60))
    return framed


def _text_overlay(image: Image.Image) -> Image.Image:
    """A caption band over the bottom of the image, about 8% of its area."""
    out = image.copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, round(h * 0.92), w, h), fill=(0, 0, 0))
    font = ImageFont.load_default(size=max(10, h // 20))
    draw.text((w // 20, round(h * 0.925)), "lol look at this", fill=(255, 255, 255), font=font)
    return out


def _watermark(image: Image.Image) -> Image.Image:
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    font = ImageFont.load_default(size=max(12, image.height // 8))
    ImageDraw.Draw(layer).text(
        (image.width // 10, image.height // 2 - image.height // 16),
        "@reuploader",
        fill=(255, 255, 255, 90),
        font=font,
    )
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def _noise(image: Image.Image, sigma: float) -> Image.Image:
    rng = np.random.default_rng(0)
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(
        0, sigma, (image.height, image.width, 3)
    )
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


Transform = Callable[[Image.Image], Image.Image]

TRANSFORMS: dict[str, Transform] = {
    "jpeg q90": lambda im: _jpeg_image(im, 90),
    "jpeg q50": lambda im: _jpeg_image(im, 50),
    "jpeg q30": lambda im: _jpeg_image(im, 30),
    "jpeg q10": lambda im: _jpeg_image(im, 10),
    "resize 1/2 (1/4 area)": lambda im: _resize(im, 0.5),
    "resize 1/4 (1/16 area)": lambda im: _resize(im, 0.25),
    "upscale 2x": lambda im: _resize(im, 2.0),
    "crop 5% each side": lambda im: _crop(im, 0.05, 0.05, 0.95, 0.95),
    "crop 10% each side": lambda im: _crop(im, 0.10, 0.10, 0.90, 0.90),
    "crop 20% off the left": lambda im: _crop(im, 0.20, 0.0, 1.0, 1.0),
    "crop to top-left 75%": lambda im: _crop(im, 0.0, 0.0, 0.75, 0.75),
    "mirror": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "flip upside down": lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    "rotate 90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "rotate 180": lambda im: im.transpose(Image.Transpose.ROTATE_180),
    "rotate 270": lambda im: im.transpose(Image.Transpose.ROTATE_270),
    "rotate 3 degrees": lambda im: im.rotate(3, resample=Image.Resampling.BICUBIC),
    "grayscale": lambda im: im.convert("L").convert("RGB"),
    "brightness +30%": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
    "contrast -30%": lambda im: ImageEnhance.Contrast(im).enhance(0.7),
    "blur radius 2": lambda im: im.filter(ImageFilter.GaussianBlur(2)),
    "noise sigma 10": lambda im: _noise(im, 10),
    "text overlay (8% of area)": _text_overlay,
    "watermark": _watermark,
    "border 10% white": lambda im: _pad(
        im, im.width // 10, im.height // 10, im.width // 10, im.height // 10, "white"
    ),
    "letterbox 16:9": _letterbox,
    "screenshot padding": _screenshot,
    "mirror + jpeg q50": lambda im: _jpeg_image(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 50),
    "crop 10% each side + jpeg q50": lambda im: _jpeg_image(_crop(im, 0.1, 0.1, 0.9, 0.9), 50),
    "resize 1/2 + rotate 90 + jpeg q70": lambda im: _jpeg_image(
        _resize(im, 0.5).transpose(Image.Transpose.ROTATE_90), 70
    ),
    "letterbox + jpeg q50": lambda im: _jpeg_image(_letterbox(im), 50),
}


def reupload(data: bytes, transform: Transform) -> bytes:
    """The image file `data` edited by `transform` and encoded again, in memory, as PNG:
    lossless, so what the edit itself loses is all the copy loses."""
    return _encode(transform(decode_rgb(data)), "PNG")
