"""Hashing videos (vPDQ) on the caller's side, on small clips generated from the bundled
photos: frame choice and times, agreement with PDQ of the decoded frames and with Meta's
vpdq, matching after re-encoding, and a clear VideoError for every bad input."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from pathlib import Path

import av
import numpy as np
import pdqhash
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

import hashmatch.video as video
from hashmatch.codec import bits_to_bytes
from hashmatch.demo.standins import bundled_photos
from hashmatch.demo.video_clips import scene, stills, write_video
from hashmatch.signals.pdq import PDQ
from hashmatch.video import VideoError, hash_video, hash_video_phased, is_video
from hashmatch.video_decoding import sampled_frames
from hashmatch.video_match import is_match, match_percentages
from hashmatch.vpdq_formats import from_pytx, to_pytx
from tests.conftest import run_cli

SIZE = (160, 120)


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A few clips, made once: a pan, cuts between other photos, a still held, and the pan
    re-encoded at a low bit rate and at half size."""
    out = tmp_path_factory.mktemp("clips")
    pictures = stills(6, seed=3)
    paths = {name: out / f"{name}.mp4" for name in ("pan", "cuts", "still", "small", "lowrate")}
    write_video(paths["pan"], scene(pictures[:1], "pan", size=SIZE, seconds=4))
    write_video(paths["cuts"], scene(pictures[1:], "cuts", size=SIZE, seconds=6))
    still = np.asarray(pictures[2].resize(SIZE))
    write_video(paths["still"], [still] * 90)
    halves = (
        np.asarray(Image.fromarray(f).resize((80, 60), Image.Resampling.BILINEAR))
        for f in scene(pictures[:1], "pan", size=SIZE, seconds=4)
    )
    write_video(paths["small"], halves)
    write_video(paths["lowrate"], scene(pictures[:1], "pan", size=SIZE, seconds=4), bit_rate=40_000)
    return paths


def test_one_frame_a_second_timed_from_the_start(clips: dict[str, Path]) -> None:
    frames = hash_video(clips["pan"])
    assert [f.timestamp for f in frames] == [0.0, 1.0, 2.0, 3.0]
    assert all(f.quality >= 50 for f in frames)
    assert len({f.pdq for f in frames}) == 4


def test_seconds_per_frame_chooses_the_sampling(clips: dict[str, Path]) -> None:
    assert [f.timestamp for f in hash_video(clips["pan"], seconds_per_frame=0.5)] == [
        i / 2 for i in range(8)
    ]
    every = hash_video(clips["pan"], seconds_per_frame=0)
    assert len(every) > 100 and every[1].timestamp == pytest.approx(1 / 30)
    later = hash_video(clips["pan"], phase=0.5)
    assert [f.timestamp for f in later] == [0.5, 1.5, 2.5, 3.5]
    assert [f.pdq for f in later] == [f.pdq for f in every[15::30]]
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="seconds_per_frame"):
            hash_video(clips["pan"], seconds_per_frame=bad)
        with pytest.raises(ValueError, match="phase"):
            hash_video(clips["pan"], phase=bad)


def test_a_held_still_is_one_frame_and_cuts_keep_each_change(clips: dict[str, Path]) -> None:
    assert len(hash_video(clips["still"])) == 1
    cuts = hash_video(clips["cuts"])
    assert all(a.pdq != b.pdq for a, b in itertools.pairwise(cuts))


def test_skipping_frames_changes_no_hash(clips: dict[str, Path]) -> None:
    for name in ("pan", "cuts"):
        every = [f for f in sampled_frames(clips[name], 1.0, skip=False)]
        assert list(sampled_frames(clips[name], 1.0, skip=True)) == every


def test_frame_hashes_are_pdq_of_the_decoded_frames(clips: dict[str, Path]) -> None:
    """Against the reference PDQ (pdqhash) of each sampled frame converted to RGB, as
    vpdq hashes it: the Y plane shortcut costs a few bits at most."""
    with av.open(str(clips["cuts"])) as container:
        rgb = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    for frame in hash_video(clips["cuts"]):
        bits, quality = pdqhash.compute(rgb[round(frame.timestamp * 30)])
        assert distance(frame.pdq, bits_to_bytes(bits).hex()) <= 8
        assert abs(frame.quality - quality) <= 3


def test_frame_hashes_agree_with_meta_vpdq(clips: dict[str, Path]) -> None:
    """Meta's own vpdq (PyPI `vpdq`, built against Debian's FFmpeg): the same frame times
    (ours less repeated frames) and a few bits apart."""
    vpdq = pytest.importorskip("vpdq")
    for name in ("pan", "cuts", "lowrate"):
        theirs = {
            round(f.timestamp, 3): f for f in vpdq.computeHash(str(clips[name]), thread_count=1)
        }
        ours = hash_video(clips[name])
        assert {f.timestamp for f in ours} <= set(theirs)
        for frame in ours:
            meta = theirs[frame.timestamp]
            assert distance(frame.pdq, meta.hex) <= 8, (name, frame.timestamp)
            assert abs(frame.quality - meta.quality) <= 2


def test_re_encoded_and_downscaled_copies_match_unrelated_clips_do_not(
    clips: dict[str, Path],
) -> None:
    listed = hash_video(clips["pan"])
    for copy in ("lowrate", "small"):
        assert is_match(match_percentages(hash_video(clips[copy]), listed)), copy
    assert match_percentages(hash_video(clips["cuts"]), listed) == (0.0, 0.0)


def test_a_mirrored_copy_matches_by_its_mirrored_hash_only(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    with av.open(str(clips["cuts"])) as container:
        flipped = [f.to_ndarray(format="rgb24")[:, ::-1] for f in container.decode(video=0)]
    mirror = tmp_path / "mirror.mp4"
    write_video(mirror, flipped)
    listed = hash_video(clips["cuts"])
    assert not is_match(match_percentages(hash_video(mirror), listed))
    back = hash_video(mirror, mirrored=True)
    assert is_match(match_percentages(back, listed))
    assert [f.timestamp for f in back] == [f.timestamp for f in listed]


@pytest.mark.parametrize(
    ("suffix", "codec"), [(".mkv", "libx264"), (".webm", "libvpx-vp9"), (".avi", "mpeg4")]
)
def test_other_containers_are_videos_by_content(tmp_path: Path, suffix: str, codec: str) -> None:
    path = tmp_path / f"clip{suffix}"
    write_video(path, scene(stills(1), "zoom", size=SIZE, seconds=2), codec=codec)
    renamed = path.rename(tmp_path / "clip.jpg")  # the name says nothing
    assert is_video(renamed)
    assert [f.timestamp for f in hash_video(renamed)] == [0.0, 1.0]


def _image_files(tmp_path: Path) -> list[Path]:
    photo = bundled_photos()[0]
    gif = tmp_path / "animated.gif"
    frames = [Image.open(photo).convert("RGB").resize(SIZE)] * 2
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    text = tmp_path / "notes.mp4"
    text.write_text("just some text, named like a video\n" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(random.Random(1).randbytes(5000))
    heif = tmp_path / "photo.mp4"  # an ISO media file, but of an image (HEIF's brand)
    heif.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(1000))
    return [photo, gif, text, empty, noise, heif]


def test_images_and_other_files_are_not_videos(tmp_path: Path) -> None:
    for path in _image_files(tmp_path):
        assert not is_video(path), path
        with pytest.raises(VideoError, match=r"^not a video"):
            hash_video(path)
    assert not is_video(tmp_path / "missing.mp4")
    with pytest.raises(FileNotFoundError):
        hash_video(tmp_path / "missing.mp4")


def test_truncated_files_are_refused_as_truncated(tmp_path: Path, clips: dict[str, Path]) -> None:
    data = clips["cuts"].read_bytes()  # moov after the frames, as encoders write it
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="truncated"):
        hash_video(cut)
    front = tmp_path / "front.mp4"  # moov first ("faststart"), so the header survives the cut
    with (
        av.open(str(clips["cuts"])) as source,
        av.open(str(front), "w", options={"movflags": "faststart"}) as out,
    ):
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(video=0):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    whole = front.read_bytes()
    assert [f.timestamp for f in hash_video(front)] == [
        f.timestamp for f in hash_video(clips["cuts"])
    ]
    front.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(VideoError, match="truncated"):
        hash_video(front)


def test_a_video_without_decodable_frames_is_refused(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    """A well-formed container whose every packet is zeros: nothing decodes."""
    blank = tmp_path / "blank.mkv"
    with av.open(str(clips["cuts"])) as source, av.open(str(blank), "w") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(video=0):
            if packet.dts is None:
                continue
            zeros = av.Packet(bytes(packet.size))
            zeros.pts, zeros.dts, zeros.time_base = packet.pts, packet.dts, packet.time_base
            zeros.stream = stream
            out.mux(zeros)
    assert is_video(blank)
    with pytest.raises(VideoError, match="no decodable video frame"):
        hash_video(blank)


def test_a_file_of_sound_only_is_no_video(tmp_path: Path) -> None:
    sound = tmp_path / "sound.mp4"
    with av.open(str(sound), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        silence = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        silence.sample_rate = 8000
        for _ in range(10):
            container.mux(stream.encode(silence))
        container.mux(stream.encode(None))
    assert is_video(sound)  # an MP4 container: what is inside is found on opening it
    with pytest.raises(VideoError, match="no video stream"):
        hash_video(sound)


def test_too_many_frames_are_refused(
    clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(video, "MAX_VIDEO_FRAMES", 3)
    with pytest.raises(VideoError, match="more than 3 frames"):
        hash_video(clips["pan"])


def test_density_hashes_vpdqs_frames_and_those_evenly_between(clips: dict[str, Path]) -> None:
    plain = hash_video(clips["pan"])
    dense = hash_video(clips["pan"], density=8)
    assert len(plain) == 4 and len(dense) == 8 * len(plain)
    assert set(plain) <= set(dense)  # a dense listing matches whatever a plain one does
    gaps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(dense)]
    assert max(gaps) - min(gaps) <= 1 / 30 + 1e-9  # 30 frame/s split 4, 4, 3, 4, ...
    assert [f.timestamp for f in hash_video(clips["pan"], density=30)[:31]] == [
        k / 30 for k in range(31)
    ]
    for wrong in (0, -1, 31):
        with pytest.raises(ValueError, match="density"):
            hash_video(clips["pan"], density=wrong)


def test_a_phased_hash_is_every_frame_each_second_one_slot(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    frames, slot = hash_video_phased(clips["pan"])
    assert slot == 1.0 and frames == hash_video(clips["pan"], density=video.CHECK_PHASES)
    assert set(hash_video(clips["pan"])) <= set(frames)  # the plain hash's frames among them
    # 4.5 s: the last half second could meet no listed frame when trimmed out of phase.
    write_video(tmp_path / "short.mp4", list(scene(stills(1, seed=3), "pan", seconds=4.5)))
    cut, _ = hash_video_phased(tmp_path / "short.mp4")
    assert max(f.timestamp for f in cut) < 4 == hash_video(tmp_path / "short.mp4")[-1].timestamp
    assert cut == [f for f in hash_video(tmp_path / "short.mp4", density=16) if f.timestamp < 4]


def test_a_long_video_is_checked_at_fewer_phases_within_the_frame_limit(
    clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(video, "MAX_VIDEO_FRAMES", 40)  # 4 s of the pan: 8 a second fit
    frames, _ = hash_video_phased(clips["pan"])
    assert frames == hash_video(clips["pan"], density=8)
    # A length not declared, or declared short: the plain hash when phases overflow.
    monkeypatch.setattr("hashmatch.video_decoding.declared_seconds", lambda path: None)
    assert hash_video_phased(clips["pan"])[0] == hash_video(clips["pan"])
    monkeypatch.setattr(video, "MAX_VIDEO_FRAMES", 3)
    with pytest.raises(video.VideoTooLong, match="more than 3 frames"):
        hash_video_phased(clips["pan"])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=20))
@example(damage=[(2485083, 0)])  # a header byte that leaves the stream no decoder
def test_damaged_bytes_give_frames_or_a_video_error(
    tmp_path: Path, clips: dict[str, Path], damage: list[tuple[int, int]]
) -> None:
    data = bytearray(clips["cuts"].read_bytes())
    for offset, value in damage:
        data[offset % len(data)] = value
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    try:
        frames = hash_video(path)
    except VideoError:
        return
    assert frames and all(f.quality <= 100 for f in frames)


def test_hash_command_prints_a_video_as_one_pytx_object_beside_images(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    video_file = tmp_path / "upload.bin"  # no telling extension
    video_file.write_bytes(clips["pan"].read_bytes())
    photo = str(bundled_photos()[0])
    done = run_cli("hash", str(video_file), photo)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(o["file"], o["signal"]) for o in out] == [
        (str(video_file), "vpdq"),
        (photo, "pdq"),
        (photo, "phash"),
    ]
    assert from_pytx(out[0]["hash"]) == from_pytx(to_pytx(hash_video(clips["pan"])))
    assert out[0]["frames"] == 4

    both = run_cli("hash", "--signal", "vpdq,md5,pdq", "--seconds-per-frame", "2", str(video_file))
    objs = [json.loads(line) for line in both.stdout.splitlines()]
    assert [o["signal"] for o in objs] == ["vpdq", "md5"]
    assert len(from_pytx(objs[0]["hash"])) == 2
    assert objs[1]["hash"] == hashlib.md5(video_file.read_bytes()).hexdigest()


def test_hash_command_names_each_bad_file_and_hashes_the_rest(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clips["pan"].read_bytes()[:3000])
    photo = str(bundled_photos()[0])
    done = run_cli("hash", "--signal", "vpdq", str(cut), photo, str(clips["pan"]))
    assert done.returncode == 1
    assert f"{cut}: cannot open video (truncated or damaged?)" in done.stderr
    assert f"{photo}: not a video, and vpdq hashes only videos" in done.stderr
    assert [json.loads(line)["file"] for line in done.stdout.splitlines()] == [str(clips["pan"])]
    unknown = run_cli("hash", "--signal", "vpdq,tmk", photo)
    assert unknown.returncode == 2 and "unknown signal 'tmk'" in unknown.stderr


@pytest.mark.parametrize("seed", range(5))
def test_pdq_of_a_limited_range_plane_is_pdq_of_it_stretched(seed: int) -> None:
    """hash_luma stretches video's 16-235 to 0-255 after PDQ's filter rather than before;
    the filter is linear, so the hash is the stretched frame's."""
    rng = np.random.default_rng(seed)
    picture = Image.fromarray(rng.integers(0, 256, (12, 16), dtype=np.uint8)).resize(
        (400 + seed * 37, 300), Image.Resampling.BICUBIC
    )
    y = (16 + np.asarray(picture, dtype=np.float32) * (219 / 255)).round().astype(np.uint8)
    stretched = (y.astype(np.float32) - 16) * np.float32(255 / 219)
    ours, reference = PDQ.hash_luma(y, (16, 235)), PDQ.hash_luma(stretched)
    assert distance(ours.hash.hex(), reference.hash.hex()) <= 2
    assert ours.quality == reference.quality
