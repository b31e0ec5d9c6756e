"""Video check benchmark: CheckVideo over gRPC against N listed videos of synthetic vPDQ
frames, beside python-threatexchange's VPDQIndex on the same data in the same run.

    .venv/bin/pip install -q -e '.[bench]' vpdq
    .venv/bin/python load_tests/video_match_benchmark.py --videos 100000 --frames 60

The listed videos are N x F uniform random frames (one a second: 60 frames is 60 s).
The fill goes straight to a snapshot (the indexer's own table build, frames as rows
of their video), not through the store: the store is not what is measured. Queries:
half are listed videos re-encoded (12 of 256 bits flipped a frame) and trimmed to
three quarters, half unrelated videos; every answer is checked (the right video,
100% query match; no match for the unrelated). Ours: `hashmatch serve` in its own
process, CheckVideo from one client in turn (latency) and from several at once
(throughput). The peer: pytx's VPDQIndex (a FAISS IndexBinaryFlat over the distinct
frames, and its own grouping into videos) in this process, one check at a time as its
API takes them; its answers must equal ours.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from proc import rss_mb

from hashmatch.client import MatchClient
from hashmatch.demo.serve_process import running_server
from hashmatch.video import VideoFrame
from indexer.build import make_table
from indexer.snapshot import write_snapshot
from indexer.store import MATCH_ID_BYTES

SEED = 20261202


def frames_of(rows: npt.NDArray[np.uint8], count: int) -> list[VideoFrame]:
    return [VideoFrame(rows[t].tobytes().hex(), 90, float(t)) for t in range(count)]


def listed_frames(videos: int, frames: int) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(SEED).integers(0, 256, (videos * frames, 32), dtype=np.uint8)


def query_videos(
    hashes: npt.NDArray[np.uint8], videos: int, frames: int, count: int
) -> tuple[list[list[VideoFrame]], list[int]]:
    """`count` queries: even ones a listed video edited and trimmed, odd ones unrelated;
    with the listed video each should match (-1: none)."""
    rng = np.random.default_rng(SEED + 1)
    out, expected = [], []
    for k in range(count):
        if k % 2:
            out.append(frames_of(rng.integers(0, 256, (frames, 32), dtype=np.uint8), frames))
            expected.append(-1)
            continue
        v = int(rng.integers(0, videos))
        rows = hashes[v * frames : (v + 1) * frames].copy()
        bits = np.unpackbits(rows, axis=1)
        for row in bits:
            row[rng.choice(256, 12, replace=False)] ^= 1
        kept = np.packbits(bits, axis=1)[frames // 8 : frames // 8 + frames * 3 // 4]
        out.append(frames_of(kept, len(kept)))
        expected.append(v)
    return out, expected


def build(hashes: npt.NDArray[np.uint8], videos: int, frames: int, root: Path) -> float:
    started = time.perf_counter()
    entry_ids = np.repeat(np.arange(1, videos + 1, dtype=np.int64), frames)
    match_ids = np.repeat(
        np.random.default_rng(SEED + 2).integers(0, 256, (videos, MATCH_ID_BYTES), np.uint8),
        frames,
        axis=0,
    )
    table = make_table("vpdq", entry_ids, np.zeros(len(hashes), np.uint32), hashes, match_ids)
    write_snapshot(root, ("bench",), [table], 0)
    return time.perf_counter() - started


def match_ids_of(videos: int) -> list[str]:
    rows = np.random.default_rng(SEED + 2).integers(0, 256, (videos, MATCH_ID_BYTES), np.uint8)
    return [r.tobytes().hex() for r in rows]


def ours(
    root: Path, queries: list[list[VideoFrame]], expected: list[int], ids: list[str], args: Any
) -> dict[str, float]:
    with running_server(root, "--no-auth", start_timeout=600) as proc:
        with MatchClient(proc.address) as client:
            for q, want in zip(queries, expected, strict=True):  # warm, and check every answer
                got = client.check_video(q).matches
                assert [m.match_id for m in got] == ([ids[want]] if want >= 0 else []), want
                assert want < 0 or got[0].query_match_percent == 100
            latencies = []
            for q in queries:
                started = time.perf_counter()
                client.check_video(q)
                latencies.append(time.perf_counter() - started)
        done = [0]
        stop = time.monotonic() + args.seconds

        def load(k: int) -> None:
            with MatchClient(proc.address) as client:
                while time.monotonic() < stop:
                    client.check_video(queries[k % len(queries)])
                    done[0] += 1
                    k += args.clients

        threads = [threading.Thread(target=load, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rss = rss_mb(proc.process.pid)
    return {
        "sequential_per_s": len(queries) / sum(latencies),
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": float(np.percentile(latencies, 99)) * 1e3,
        "concurrent_per_s": done[0] / args.seconds,
        "server_rss_mb": rss,
    }


def peer(
    hashes: npt.NDArray[np.uint8],
    videos: int,
    frames: int,
    queries: list[list[VideoFrame]],
    expected: list[int],
    limit: int,
) -> dict[str, float] | str:
    try:
        from threatexchange.extensions.vpdq.vpdq_index import VPDQIndex
    except ImportError as exc:
        return f"python-threatexchange's vPDQ extension does not import: {exc}"
    from hashmatch.vpdq_formats import to_pytx

    before = rss_mb()
    started = time.perf_counter()
    index = VPDQIndex.build(
        (to_pytx(frames_of(hashes[v * frames : (v + 1) * frames], frames)), v)
        for v in range(videos)
    )
    built = time.perf_counter() - started
    asked = list(zip(queries, expected, strict=True))[:limit]
    texts = [to_pytx(q) for q, _ in asked]
    started = time.perf_counter()
    answers = [index.query(t) for t in texts]
    seconds = time.perf_counter() - started
    for (_, want), found in zip(asked, answers, strict=True):
        assert [m.metadata for m in found] == ([want] if want >= 0 else []), want
    return {
        "build_s": built,
        "sequential_per_s": len(asked) / seconds,
        "p50_ms": seconds / len(asked) * 1e3,
        "rss_mb": rss_mb() - before,
        "checked": len(asked),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=60, help="frames a video (1 a second)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--peer-queries", type=int, default=40, help="pytx's checks timed")
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    hashes = listed_frames(args.videos, args.frames)
    queries, expected = query_videos(hashes, args.videos, args.frames, args.queries)
    print(f"{args.videos:,} listed videos x {args.frames} frames = {len(hashes):,} frames")
    with tempfile.TemporaryDirectory(prefix="video-bench-") as tmp:
        root = Path(tmp) / "index"
        seconds = build(hashes, args.videos, args.frames, root)
        print(f"snapshot built and written in {seconds:.1f} s")
        mine = ours(root, queries, expected, match_ids_of(args.videos), args)
    print(
        f"hashmatch CheckVideo over gRPC: {mine['sequential_per_s']:.1f} checks/s one at a time "
        f"(p50 {mine['p50_ms']:.1f} ms, p99 {mine['p99_ms']:.1f} ms); "
        f"{mine['concurrent_per_s']:.1f} checks/s from {args.clients} clients; "
        f"server RSS {mine['server_rss_mb']:.0f} MB"
    )
    if args.no_peer:
        return
    theirs = peer(hashes, args.videos, args.frames, queries, expected, args.peer_queries)
    if isinstance(theirs, str):
        print(f"peer not measured: {theirs}")
        sys.exit(0)
    print(
        f"python-threatexchange VPDQIndex in process: {theirs['sequential_per_s']:.2f} checks/s "
        f"one at a time ({theirs['p50_ms']:.0f} ms each, {theirs['checked']:.0f} checked), "
        f"built in {theirs['build_s']:.0f} s, +{theirs['rss_mb']:.0f} MB"
    )
    print(
        f"ratio, one check at a time: {mine['sequential_per_s'] / theirs['sequential_per_s']:.0f}x"
    )


if __name__ == "__main__":
    main()
