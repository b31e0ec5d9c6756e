"""Frame-level measurement for downscaled re-uploads (issue 26): how far a listed video's
sampled frame lies from the same frame of its halved and quartered copy, for the plain
vPDQ hash and for candidate per-frame variants, and how close unrelated frames come.

    .venv/bin/python load_tests/video_scale_frames.py --listed 20 --unrelated 40   # 3 min

No server: each listed video (load_tests/video_robustness.py's generated clips) is
encoded, halved and quartered (resized, encoded again), and each of its 1-s frames is
hashed from the decoded luminance by every candidate. Candidates:

- plain: vPDQ's PDQ of the frame (PDQ's blur window follows the frame's size);
- square N: the luminance resampled (hashmatch.downscale.resample, a tent as wide as
  the reduction) to N x N, then PDQ of that (N = 64: PDQ's own buffer, hashed as is);
- side N: resampled so its longer side is N (aspect kept), then PDQ of that; side 160
  is what hash_video(scaled=True) lists (hashmatch.video.SCALED_SIDE).

A frame "meets" its copy when within 31 bits; a video is met when 80% of its seconds
are, by the plain or the candidate hash (both sides hashed the same way; "checked plain":
only the listing adds the candidate, the copy sends its plain hash). Unrelated
pairs: every sampled frame of --unrelated videos (other photos, generated pictures)
against every listed frame.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import video_robustness
from robustness_benchmark import generated
from video_robustness import resized, split_photos, video_frames

from hashmatch.demo.video_clips import write_video
from hashmatch.downscale import resample
from hashmatch.signals.pdq import PDQ

Luma = npt.NDArray[np.float32]
LIMITED = (16.0, 235.0)


def stretched(luma: Luma) -> Luma:
    black, white = LIMITED
    return np.clip((luma - black) * np.float32(255 / (white - black)), 0, 255)


def plain(luma: Luma) -> bytes:
    return PDQ.hash_luma(luma, LIMITED).hash


def square(n: int) -> Callable[[Luma], bytes]:
    def hashed(luma: Luma) -> bytes:
        small = stretched(resample(luma, n, n))
        if n == 64:
            return PDQ.hash_square(small).hash
        return PDQ.hash_luma(small).hash

    return hashed


def side(n: int) -> Callable[[Luma], bytes]:
    def hashed(luma: Luma) -> bytes:
        h, w = luma.shape
        scale = n / max(h, w)
        small = stretched(resample(luma, max(1, round(h * scale)), max(1, round(w * scale))))
        return PDQ.hash_luma(small).hash

    return hashed


CANDIDATES: dict[str, Callable[[Luma], bytes]] = {
    "plain": plain,
    "square 64": square(64),
    "square 32->64": lambda luma: (
        PDQ.hash_square(stretched(resample(resample(luma, 32, 32), 64, 64))).hash
    ),
    "square 128": square(128),
    "side 128": side(128),
    "side 80": side(80),
    "side 160": side(160),
    "square 256": square(256),
}


def sampled_luma(path: Path) -> list[Luma]:
    """The Y plane of every int(rate)-th frame (vPDQ's 1 s sampling), as float32."""
    out: list[Luma] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        every = max(1, int(float(stream.average_rate or 30)))
        for k, frame in enumerate(container.decode(stream)):
            if k % every:
                continue
            plane = frame.planes[0]
            rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
            out.append(rows[: frame.height, : frame.width].astype(np.float32))
    return out


def distance(a: bytes, b: bytes) -> int:
    return int.from_bytes(bytes(x ^ y for x, y in zip(a, b, strict=True))).bit_count()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listed", type=int, default=20)
    parser.add_argument("--unrelated", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--size", default="320x240")
    args = parser.parse_args(argv)
    video_robustness.SIZE = tuple(map(int, args.size.split("x")))  # type: ignore[assignment]
    listed_photos, other_photos = split_photos()
    factors = {"1/2": 0.5, "1/4": 0.25}
    # per candidate: listed hashes; per factor, per-frame distances to the copy's frame
    listed: dict[str, list[bytes]] = {c: [] for c in CANDIDATES}
    moved: dict[str, dict[str, list[int]]] = {c: {f: [] for f in factors} for c in CANDIDATES}
    # per factor, per video: per candidate, per frame met?
    videos_met: dict[str, dict[str, list[float]]] = {
        c: {f: [] for f in factors} for c in CANDIDATES
    }
    checked_plain: dict[str, dict[str, list[float]]] = {
        c: {f: [] for f in factors} for c in CANDIDATES
    }
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for i in range(args.listed):
            fps = 30.0 if i % 2 == 0 else 24.0
            frames = video_frames(listed_photos, seed=i, fps=fps, seconds=args.seconds)
            write_video(work / "listed.mp4", frames, fps=fps)
            original = sampled_luma(work / "listed.mp4")
            hashes = {c: [fn(y) for y in original] for c, fn in CANDIDATES.items()}
            for c in CANDIDATES:
                listed[c] += hashes[c]
            for name, factor in factors.items():
                write_video(work / "copy.mp4", resized(frames, factor), fps=fps)
                copy = sampled_luma(work / "copy.mp4")
                plain_ds = [
                    distance(plain(y), h) for y, h in zip(copy, hashes["plain"], strict=False)
                ]
                for c, fn in CANDIDATES.items():
                    ds = [distance(fn(y), h) for y, h in zip(copy, hashes[c], strict=False)]
                    moved[c][name] += ds
                    # a sampled second matches when its plain or its variant hash does
                    either = [min(d, p) <= 31 for d, p in zip(ds, plain_ds, strict=True)]
                    videos_met[c][name].append(sum(either) / len(either))
                    # listed with the candidate too, checked plain: the copy's plain hash
                    # against the listed plain and candidate hashes
                    cross = [distance(plain(y), h) for y, h in zip(copy, hashes[c], strict=False)]
                    plainly = [min(d, p) <= 31 for d, p in zip(cross, plain_ds, strict=True)]
                    checked_plain[c][name].append(sum(plainly) / len(plainly))
            print(f"listed {i + 1}/{args.listed}", file=sys.stderr)
        closest = {c: 256 for c in CANDIDATES}
        within = dict.fromkeys(CANDIDATES, 0)
        within_plain = dict.fromkeys(CANDIDATES, 0)  # their plain hash, our candidate
        pairs = 0
        for j in range(args.unrelated):
            pictures = [*other_photos, *(generated(10_000 + 8 * j + k, 512) for k in range(8))]
            frames = video_frames(pictures, seed=100_000 + j, fps=30.0, seconds=args.seconds)
            write_video(work / "other.mp4", frames, fps=30.0)
            lumas = sampled_luma(work / "other.mp4")
            for c, fn in CANDIDATES.items():
                theirs = np.frombuffer(b"".join(listed[c]), np.uint8).reshape(-1, 32)
                for y in lumas:
                    ours = np.frombuffer(fn(y), np.uint8)
                    d = np.unpackbits(theirs ^ ours, axis=1).sum(axis=1)
                    closest[c] = min(closest[c], int(d.min()))
                    within[c] += int((d <= 31).sum())
                    d = np.unpackbits(theirs ^ np.frombuffer(plain(y), np.uint8), axis=1)
                    within_plain[c] += int((d.sum(axis=1) <= 31).sum())
            pairs += len(lumas) * len(listed["plain"])
            print(f"unrelated {j + 1}/{args.unrelated}", file=sys.stderr)
    print(f"\n{args.listed} listed videos at {args.size}, {len(listed['plain'])} sampled frames\n")
    print(
        "| candidate | frames of 1/2 within 31 | median (max) bits | videos >= 80% (plain or it) "
        "| the same, checked plain "
        "| frames of 1/4 within 31 | median (max) bits | videos >= 80% (plain or it) "
        "| the same, checked plain "
        f"| unrelated frame pairs within 31 (of {pairs}) | closest unrelated "
        "| unrelated plain frames within 31 of a listed candidate |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in CANDIDATES:
        cells = []
        for f in factors:
            ds = moved[c][f]
            cells += [
                f"{sum(d <= 31 for d in ds) / len(ds):.0%}",
                f"{int(np.median(ds))} ({max(ds)})",
                f"{sum(v >= 0.8 for v in videos_met[c][f])}/{len(videos_met[c][f])}",
                f"{sum(v >= 0.8 for v in checked_plain[c][f])}/{len(checked_plain[c][f])}",
            ]
        print(f"| {c} | {' | '.join(cells)} | {within[c]} | {closest[c]} | {within_plain[c]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
