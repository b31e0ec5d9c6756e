"""Scaled frames (hashmatch.video.hash_video(scaled=True)): a listed video's frames
resampled to 160 px, so that a halved copy of a small video still matches with plain vPDQ
checks. Attacks: a halved 320x240 clip that plain vPDQ misses entirely; scaled frames kept
out of every export and of the entry's identity; listing and storing them on both stores
and over the CLI; bad input refused as before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hashmatch.demo.serve_process import ServerProcess
from hashmatch.demo.video_clips import scene, stills, write_video
from hashmatch.list_formats import FORMATS, NotExportable, format_line, video_entry
from hashmatch.video import VideoError, VideoFrame, hash_video
from hashmatch.video_entries import (
    VideoEntryError,
    frame_records,
    matchable_rows,
    pack_frames,
    unpack_frames,
    video_digest,
    vpdq_frames,
)
from hashmatch.video_match import FRAME_THRESHOLD, is_match, match_percentages
from indexer.build import build_snapshot
from indexer.snapshot import read_snapshot
from indexer.store import open_store
from tests.conftest import run_cli
from tests.test_benchmarks import run, table_rows
from tests.test_video_checks import module_server

SIZE = (320, 240)


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 4 s zoom into a photo at 320x240 (one whose halved copy plain vPDQ misses at every
    second), that copy, and cuts between other photos."""
    out = tmp_path_factory.mktemp("clips")
    paths = {name: out / f"{name}.mp4" for name in ("zoom", "halved", "other")}
    zoom = list(scene(stills(3, seed=1), "zoom", size=SIZE, seconds=4))
    write_video(paths["zoom"], zoom)
    half = (SIZE[0] // 2, SIZE[1] // 2)
    halved = [np.asarray(Image.fromarray(f).resize(half, Image.Resampling.BILINEAR)) for f in zoom]
    write_video(paths["halved"], halved)
    write_video(paths["other"], scene(stills(4, seed=2)[1:], "cuts", size=SIZE, seconds=4))
    return paths


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    yield from module_server(tmp_path_factory)


def test_each_sampled_frame_is_followed_by_its_scaled_frame_at_its_time(
    clips: dict[str, Path],
) -> None:
    plain = hash_video(clips["zoom"])
    listed = hash_video(clips["zoom"], scaled=True)
    assert vpdq_frames(listed) == plain  # the vPDQ frames are untouched
    assert [f.scaled for f in listed] == [False, True] * len(plain)
    for frame, small in zip(listed[::2], listed[1::2], strict=True):
        assert small.timestamp == frame.timestamp and small.quality >= 50
        assert small.pdq != frame.pdq


def test_a_halved_small_clip_meets_the_scaled_listing_where_plain_vpdq_misses(
    clips: dict[str, Path],
) -> None:
    listed, copy = hash_video(clips["zoom"], scaled=True), hash_video(clips["halved"])
    plain = vpdq_frames(listed)
    assert len(copy) == len(plain)
    # PDQ's window follows the frame's size: every second of the copy is far from its own.
    assert all(distance(c.pdq, p.pdq) > FRAME_THRESHOLD for c, p in zip(copy, plain, strict=True))
    assert not is_match(match_percentages(copy, plain))
    scaled = [f for f in listed if f.scaled]
    assert all(distance(c.pdq, s.pdq) <= FRAME_THRESHOLD for c, s in zip(copy, scaled, strict=True))
    assert match_percentages(copy, listed)[0] == 100
    # ... and an unrelated clip meets neither.
    assert match_percentages(hash_video(clips["other"]), listed) == (0.0, 0.0)


def test_scaled_frames_are_packed_apart_and_never_exported_nor_in_the_identity(
    clips: dict[str, Path],
) -> None:
    listed = hash_video(clips["zoom"], scaled=True)
    plain = vpdq_frames(listed)
    packed = pack_frames(listed)
    assert unpack_frames(packed) == listed
    assert video_digest(packed) == video_digest(pack_frames(plain))
    records = frame_records(packed)
    assert len(matchable_rows(records["hash"], records["quality"])) == len(listed)
    for fmt in FORMATS:
        try:
            line = format_line(video_entry(listed), fmt)
        except NotExportable:
            continue
        assert line == format_line(video_entry(plain), fmt), fmt


def test_a_video_of_scaled_frames_only_is_refused() -> None:
    only = [VideoFrame("ab" * 32, 90, 0.0, scaled=True)]
    with pytest.raises(VideoEntryError, match="every frame is scaled"):
        pack_frames(only)
    forged = bytearray(pack_frames([VideoFrame("ab" * 32, 90, 0.0)]))
    forged[32] |= 0x80  # the quality byte's scaled flag, set behind the packer's back
    with pytest.raises(VideoEntryError, match="every frame is scaled"):
        frame_records(bytes(forged))
    forged[32] = 0x80 | 101
    with pytest.raises(VideoEntryError, match="quality over 100"):
        frame_records(bytes(forged))


def test_bad_files_are_refused_as_without_scaled_frames(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    data = clips["zoom"].read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    for path in (text, truncated):
        with pytest.raises(VideoError) as plain:
            hash_video(path)
        with pytest.raises(VideoError) as scaled:
            hash_video(path, scaled=True)
        assert str(scaled.value) == str(plain.value)


def test_the_store_keeps_and_indexes_scaled_frames(
    store_url: str, tmp_path: Path, clips: dict[str, Path]
) -> None:
    listed = hash_video(clips["zoom"], scaled=True)
    store = open_store(store_url)
    try:
        store.add_entries("a", [video_entry(listed)])
        (entry,) = store.list_entries("a")
        assert unpack_frames(entry.frames) == listed
        build_snapshot(store, tmp_path / "index")
    finally:
        store.close()
    assert read_snapshot(tmp_path / "index").tables["vpdq"].count == len(listed)


def test_a_listed_small_clip_matches_its_halved_copy_over_the_cli_and_exports_plain(
    one: tuple[ServerProcess, str], clips: dict[str, Path], tmp_path: Path
) -> None:
    proc, url = one
    server = ("--server", proc.address)
    assert run_cli("list", "create", *server, "small").returncode == 0
    up = run_cli("list", "upload", *server, "small", str(clips["zoom"]), "--no-progress")
    assert "list small: added 1, duplicates 0, refused 0" in up.stdout, up.stderr
    done = run_cli("check", *server, str(clips["halved"]), str(clips["other"]))
    halved, other = (json.loads(line) for line in done.stdout.splitlines())
    assert halved["matched"] and halved["matches"][0]["query_match_percent"] == 100
    assert other["matched"] is False

    out = tmp_path / "export.txt"
    assert run_cli("export", "--store", url, "--list", "small", "--format", "vpdq-cpp", str(out))
    plain = vpdq_frames(hash_video(clips["zoom"], scaled=True))
    assert out.read_text() == format_line(video_entry(plain), "vpdq-cpp") + "\n"
    # Its plain frames listed again are the same video: a duplicate.
    again = tmp_path / "again.txt"
    again.write_text(format_line(video_entry(plain), "csv") + "\n")
    dup = run_cli("import", "--store", url, "--list", "small", str(again))
    assert "added 0, duplicates 1" in dup.stdout, dup.stderr


def test_the_robustness_benchmark_lists_scaled_frames_and_checks_by_slots() -> None:
    out = run(
        "video_robustness.py",
        *("--listed", "1", "--unrelated", "1", "--seconds", "4", "--size", "320x240"),
        *("--edits", "downscale", "--densities", "1", "--scaled"),
    )
    rows = [r for r in table_rows(out) if r[0] == "1"]
    assert [r[1] for r in rows] == [
        "downscale 1/2",
        "downscale 1/2, checked phased (16 a second, slots of 1 s)",
        "downscale 1/4",
        "downscale 1/2, checked with scaled frames too (slots)",
        "downscale 1/4, checked with scaled frames too (slots)",
    ]
    assert "checked with scaled frames too (slots), listed at 1 frames/s: 0 false matches" in out
    assert "(listed with scaled frames)" in out
