"""Video hashing benchmark: how fast we hash video on one core, against Meta's vpdq in the
same run, and how closely our frame hashes agree with vpdq's.

    .venv/bin/python load_tests/video_benchmark.py            # about 3 min on a quiet host

Clips are generated here from the photos bundled in scikit-image's wheel (pans, zooms,
cuts, noise; hashmatch.demo.video_clips) and never anything else.

- speed: --seconds of 1280x720, 30 frame/s H.264 (x264 defaults), hashed at one frame a
  second with the process pinned to one core: decoding alone, our hash decoding every
  frame, our hash skipping unreferenced frames (the default), and Meta's vpdq
  (thread_count=1); and what a phased check hashes (hashmatch.video.hash_video_phased:
  16 a second, the CLI's default check; and every frame, 30 a second). Video seconds
  hashed per CPU second (x real time) and per wall second, the best of --rounds;
- agreement: per clip, our frames against vpdq's at the same times (vpdq keeps repeated
  frames, we drop them), per-frame Hamming distance and quality difference, and the match
  percentages python-threatexchange's compare_hash gives our hash against vpdq's;
- pytx: our serialization through python-threatexchange's vPDQ code and back, and vpdq's
  hashes as pytx writes them read by us.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from pathlib import Path

import av
import vpdq
from threatexchange.extensions.vpdq.vpdq import VPDQSignal
from threatexchange.extensions.vpdq.vpdq_util import (
    VpdqCompactFeature,
    json_to_vpdq,
    vpdq_to_json,
)

from hashmatch.demo.video_clips import MOTIONS, Rgb, scene, stills, write_video
from hashmatch.video import CHECK_PHASES, VideoFrame, hash_video_phased
from hashmatch.video_decoding import sampled_frames
from hashmatch.video_match import match_percentages
from hashmatch.vpdq_formats import from_pytx, to_pytx


def one_core() -> int:
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def hd_clip(path: Path, seconds: float, size: tuple[int, int]) -> Path:
    if not path.exists():
        pictures = stills(6, seed=11)
        part = seconds / 3
        frames: Iterator[Rgb] = chain(
            scene(pictures[:1], "pan", size=size, seconds=part, seed=1),
            scene(pictures[1:2], "zoom", size=size, seconds=part, seed=2),
            scene(pictures[2:], "cuts", size=size, seconds=seconds - 2 * part, seed=3),
        )
        write_video(path, frames)
    return path


def timed(run: Callable[[], object], rounds: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the round with the least CPU."""
    best = (float("inf"), float("inf"))
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        took = (time.perf_counter() - wall, time.process_time() - cpu)
        best = min(best, took, key=lambda t: t[1])
    return best


def decode_only(path: Path) -> None:
    with av.open(str(path)) as container:
        for _ in container.decode(video=0):
            pass


def speed(args: argparse.Namespace, work: Path) -> None:
    size = (args.width, args.height)
    clip = hd_clip(
        work / f"speed_{args.width}x{args.height}_{args.seconds}s.mp4", args.seconds, size
    )
    core = one_core()
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        frames, rate = stream.frames, stream.average_rate
    print(
        f"\n## Speed: {args.seconds:g} s of {args.width}x{args.height} at {rate} frame/s "
        f"H.264 ({frames} frames), 1 frame/s hashed, pinned to core {core}"
    )
    print(f"{cpu_model()}; best of {args.rounds} rounds by CPU time\n")
    methods: dict[str, Callable[[], object]] = {
        "decode every frame, no hashing": lambda: decode_only(clip),
        "ours, decoding every frame": lambda: list(sampled_frames(clip, 1.0, skip=False)),
        "ours, skipping unreferenced frames (default)": lambda: list(sampled_frames(clip, 1.0)),
        "Meta vpdq (C++, thread_count=1)": lambda: vpdq.computeHash(str(clip), thread_count=1),
        f"ours, phased check ({CHECK_PHASES} a second, the CLI's default check)": lambda: (
            hash_video_phased(clip)
        ),
        "ours, phased check at 30 a second (every frame)": lambda: hash_video_phased(
            clip, phases=30
        ),
    }
    results = {name: timed(run, args.rounds) for name, run in methods.items()}
    peer_cpu = results["Meta vpdq (C++, thread_count=1)"][1]
    print(
        "| method | CPU s | wall s | x real time (CPU) | x real time (wall) | vpdq's CPU / ours |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, (wall, cpu) in results.items():
        print(
            f"| {name} | {cpu:.2f} | {wall:.2f} | {args.seconds / cpu:.1f} | "
            f"{args.seconds / wall:.1f} | {peer_cpu / cpu:.2f} |"
        )


def agreement_clips(
    work: Path, seconds: float, sizes: Sequence[tuple[int, int]]
) -> Iterator[tuple[str, Path]]:
    pictures = stills(8, seed=5)
    for size in sizes:
        for k, motion in enumerate(MOTIONS):
            for fps in (30.0,) if size[0] > 640 else (30.0, 24.0, 30000 / 1001):
                name = f"{motion} {size[0]}x{size[1]} {fps:.2f} fps"
                path = work / f"agree_{motion}_{size[0]}_{fps:.2f}.mp4"
                if not path.exists():
                    chosen = pictures[k : k + 3]
                    write_video(
                        path, scene(chosen, motion, size=size, fps=fps, seconds=seconds), fps=fps
                    )
                yield name, path


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def agreement(args: argparse.Namespace, work: Path) -> None:
    clips = f"generated clips of {args.clip_seconds:g} s"
    print(f"\n## Agreement with Meta's vpdq {vpdq_version()}: {clips}\n")
    print(
        "| clip | our frames | vpdq's | at vpdq's times | distance median / max "
        "| quality diff max | pytx query / compared % |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    all_distances: list[int] = []
    for name, path in agreement_clips(work, args.clip_seconds, args.sizes):
        ours = list(sampled_frames(path, 1.0))
        meta = vpdq.computeHash(str(path), thread_count=1)
        theirs = {round(f.timestamp, 3): f for f in meta}
        paired = [
            (f, theirs[round(f.timestamp, 3)]) for f in ours if round(f.timestamp, 3) in theirs
        ]
        distances = [distance(f.pdq, m.hex) for f, m in paired]
        spread = f"{statistics.median(distances):g} / {max(distances)}" if distances else "-"
        quality = max((abs(f.quality - m.quality) for f, m in paired), default=0)
        all_distances += distances
        meta_pytx = vpdq_to_json([VpdqCompactFeature.from_vpdq_feature(f) for f in meta])
        compared = VPDQSignal.compare_hash(to_pytx(ours), meta_pytx).distance
        print(
            f"| {name} | {len(ours)} | {len(meta)} | {len(paired)}/{len(ours)} | "
            f"{spread} | {quality} | "
            f"{compared.query_match_percent:.0f} / {compared.compared_match_percent:.0f} |"
        )
    print(
        f"\nall frames: {len(all_distances)}, distance median {statistics.median(all_distances)}, "
        f"max {max(all_distances)}"
    )


def pytx_round_trip(args: argparse.Namespace, work: Path) -> None:
    checked = 0
    for _, path in agreement_clips(work, args.clip_seconds, args.sizes):
        ours = list(sampled_frames(path, 1.0))
        text = to_pytx(ours)
        VPDQSignal.validate_signal_str(text)
        assert vpdq_to_json(json_to_vpdq(text)) == text
        meta = vpdq.computeHash(str(path), thread_count=1)
        features = [VpdqCompactFeature.from_vpdq_feature(f) for f in meta]
        read = from_pytx(vpdq_to_json(features))
        assert [(f.pdq, f.quality) for f in read] == [(f.pdq_hex, f.quality) for f in features]
        assert match_percentages(read, ours) == match_percentages(
            [VideoFrame(f.pdq_hex, f.quality, f.timestamp) for f in features], ours
        )
        checked += 1
    print(
        f"\n## pytx: {checked} clips' hashes written by us read and rewritten unchanged by "
        "python-threatexchange's vPDQ code; vpdq's hashes as pytx writes them read by us"
    )


def vpdq_version() -> str:
    from importlib.metadata import version

    return version("vpdq")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30, help="length of the speed clip")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clip-seconds", type=float, default=8, help="each agreement clip's")
    parser.add_argument(
        "--sizes",
        type=lambda text: [tuple(map(int, s.split("x"))) for s in text.split(",")],
        default=[(160, 120), (640, 360), (1280, 720)],
        help="agreement clips' sizes, WxH,...",
    )
    parser.add_argument(
        "--only", choices=("speed", "agreement", "pytx"), help="run one part, not all three"
    )
    parser.add_argument("--work", type=Path, help="keep the generated clips here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        parts = {"speed": speed, "agreement": agreement, "pytx": pytx_round_trip}
        for name, part in parts.items():
            if args.only in (None, name):
                part(args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
