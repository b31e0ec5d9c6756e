"""Generated stand-in video clips, made from the bundled photos (hashmatch.demo.standins):
a pan across a still, a zoom into one, cuts between stills, or a still under moving noise.

Only the tests and benchmarks use this, to make small clips on the fly; never any other
content.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from typing import Literal

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

from hashmatch.demo.standins import bundled_photos
from hashmatch.images import decode_rgb

Motion = Literal["pan", "zoom", "cuts", "noise"]
MOTIONS: tuple[Motion, ...] = ("pan", "zoom", "cuts", "noise")
Rgb = npt.NDArray[np.uint8]


def stills(count: int, seed: int = 0) -> list[Image.Image]:
    """`count` bundled photos as RGB, in a seeded order (repeating when more are asked)."""
    photos = bundled_photos()
    order = np.random.default_rng(seed).permutation(len(photos))
    return [decode_rgb(photos[order[i % len(photos)]].read_bytes()) for i in range(count)]


def scene(
    pictures: Sequence[Image.Image],
    motion: Motion,
    *,
    size: tuple[int, int] = (160, 120),
    fps: float = 30,
    seconds: float = 4,
    seed: int = 0,
) -> Iterator[Rgb]:
    """The frames (RGB, `size` = width x height) of a generated clip."""
    width, height = size
    total = max(1, round(fps * seconds))
    rng = np.random.default_rng(seed)
    first = pictures[0]
    for index in range(total):
        t = index / max(1, total - 1)
        if motion == "cuts":
            picture = pictures[min(len(pictures) - 1, int(index / fps / 1.5) % len(pictures))]
            box = (0, 0, picture.width, picture.height)
        elif motion == "pan":  # a window 60% wide sliding left to right
            picture, w = first, 0.6 * first.width
            left = t * (first.width - w)
            box = (round(left), 0, round(left + w), first.height)
        elif motion == "zoom":  # from the whole picture into its centre half
            picture, keep = first, 1 - 0.5 * t
            w, h = first.width * keep, first.height * keep
            x, y = (first.width - w) / 2, (first.height - h) / 2
            box = (round(x), round(y), round(x + w), round(y + h))
        else:  # noise: the still under fresh noise every frame
            picture, box = first, (0, 0, first.width, first.height)
        frame = np.asarray(picture.resize(size, Image.Resampling.BILINEAR, box=box))
        if motion == "noise":
            noisy = frame + rng.normal(0, 12, frame.shape)
            frame = np.clip(noisy, 0, 255).astype(np.uint8)
        yield np.ascontiguousarray(frame[:height, :width])


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[Rgb],
    *,
    fps: float = 30,
    codec: str = "libx264",
    bit_rate: int | None = None,
    options: dict[str, str] | None = None,
) -> None:
    """Encode RGB frames (all of one size) into a video file, its container by the suffix."""
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(os.fspath(path), mode="w") as container:
        stream: av.VideoStream | None = None
        for rgb in frames:
            if stream is None:
                added = container.add_stream(codec, rate=rate, options=options or {})
                assert isinstance(added, av.VideoStream)
                stream = added
                stream.height, stream.width = rgb.shape[0] & ~1, rgb.shape[1] & ~1
                stream.pix_fmt = "yuv420p"
                if bit_rate:
                    stream.bit_rate = bit_rate
            height, width = int(stream.height), int(stream.width)
            even = np.ascontiguousarray(rgb[:height, :width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(even, "rgb24")))
        if stream is not None:
            container.mux(stream.encode(None))
