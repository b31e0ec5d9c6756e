"""Videos end to end through the CLI, on clips generated from the bundled photos: hashed
here, listed and checked over real gRPC beside images, imported and exported as vPDQ
lines, and each bad input told apart without harming the rest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hashmatch.client import MatchClient
from hashmatch.demo.serve_process import ServerProcess
from hashmatch.demo.video_clips import scene, stills, write_video
from hashmatch.video import hash_video
from hashmatch.vpdq_formats import to_cpp_lines, to_pytx
from tests.conftest import run_cli
from tests.test_video_checks import module_server

SIZE = (160, 120)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 6 s pan over a photo, the same re-encoded at a low bit rate and trimmed to its
    middle 4 s, cuts between other photos, a pan cut short mid-file, and a 3 s pan and
    3 s zoom over another photo with the same trimmed by 0.4 s at each end: out of
    phase with vPDQ's seconds."""
    out = tmp_path_factory.mktemp("clips")
    pictures = stills(6, seed=5)
    paths = {name: out / f"{name}.mp4" for name in ("pan", "edited", "other")}
    pan = list(scene(pictures[:1], "pan", size=SIZE, seconds=6))
    write_video(paths["pan"], pan)
    write_video(paths["edited"], pan[30:150], bit_rate=60_000)
    write_video(paths["other"], scene(pictures[1:], "cuts", size=SIZE, seconds=6))
    more = stills(7, seed=5)[6:]
    moving = [*scene(more, "pan", size=SIZE, seconds=3), *scene(more, "zoom", size=SIZE, seconds=3)]
    paths["moving"], paths["trimmed"] = out / "moving.mp4", out / "trimmed.mp4"
    write_video(paths["moving"], moving)
    write_video(paths["trimmed"], moving[12:-12])
    data = paths["pan"].read_bytes()
    (out / "truncated.mp4").write_bytes(data[: len(data) // 2])
    paths["truncated"] = out / "truncated.mp4"
    (out / "notes.txt").write_text("not a video\n")
    paths["text"] = out / "notes.txt"
    return paths


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    yield from module_server(tmp_path_factory)


def checked(address: str, *files: Path) -> tuple[list[dict[str, object]], str, int]:
    done = run_cli("check", "--server", address, *map(str, files))
    return [json.loads(line) for line in done.stdout.splitlines()], done.stderr, done.returncode


def test_a_listed_clip_matches_its_edit_over_the_cli_beside_images_and_bad_files(
    one: tuple[ServerProcess, str], clips: dict[str, Path], tmp_path: Path
) -> None:
    proc, _ = one
    server = ("--server", proc.address)
    assert run_cli("list", "create", *server, "clips").returncode == 0
    up = run_cli("list", "upload", *server, "clips", str(clips["pan"]), "--no-progress")
    assert up.returncode == 0 and "list clips: added 1, duplicates 0, refused 0" in up.stdout
    info = run_cli("list", "info", *server, "clips")
    assert "entries:     1 (vpdq 1)" in info.stdout, info.stdout

    photo = tmp_path / "photo.png"
    stills(1, seed=9)[0].save(photo)
    answers, stderr, code = checked(
        proc.address,
        clips["edited"],
        photo,
        clips["other"],
        clips["truncated"],
        clips["pan"],
    )
    assert code == 1  # the truncated file
    assert [a["file"] for a in answers] == [
        str(p) for p in (clips["edited"], photo, clips["other"], clips["truncated"], clips["pan"])
    ]
    edited, image, other, truncated, same = answers
    assert edited["matched"] and other["matched"] is False and image["matched"] is False
    (m,) = edited["matches"]  # type: ignore[misc]
    assert m["list"] == "clips" and m["signal"] == "vpdq"
    assert m["query_match_percent"] >= 80 and 50 <= m["compared_match_percent"] < 100
    assert same["matches"][0]["match_id"] == m["match_id"]  # type: ignore[index]
    assert same["matches"][0]["query_match_percent"] == 100  # type: ignore[index]
    assert "truncated" in str(truncated["error"]) and "truncated" in stderr

    # The text file is neither image nor video: said so, the rest still answered.
    answers, stderr, code = checked(proc.address, clips["text"], clips["pan"])
    assert code == 1 and "error" in answers[0] and answers[1]["matched"]


def test_a_victim_submits_a_clip_and_withdraws_it(
    one: tuple[ServerProcess, str], clips: dict[str, Path]
) -> None:
    proc, _ = one
    done = run_cli("submit", "--server", proc.address, str(clips["other"]))
    assert done.returncode == 0 and "hashes listed:     1" in done.stdout, done.stderr
    case = done.stdout.split("case id:")[1].split()[0]
    secret = done.stdout.split("withdrawal secret:")[1].split()[0]
    answers, _, _ = checked(proc.address, clips["other"])
    assert answers[0]["matched"]
    gone = run_cli("withdraw", "--server", proc.address, "--case", case, "--secret", secret)
    assert "1 hashes removed" in gone.stdout, gone.stderr
    answers, _, _ = checked(proc.address, clips["other"])
    assert answers[0]["matched"] is False
    bad = run_cli("submit", "--server", proc.address, str(clips["truncated"]))
    assert bad.returncode == 1 and "truncated" in bad.stderr


def broken(lines: str) -> str:
    rows = lines.splitlines(keepends=True)
    number, quality, pdq, at = rows[1].split(",")
    rows[1] = ",".join((number, quality, "zz" + pdq[2:], at))
    return "".join(rows)


def test_import_and_export_vpdq_lines_both_formats(clips: dict[str, Path], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    pan, other = hash_video(clips["pan"]), hash_video(clips["other"])
    source = tmp_path / "videos.txt"
    source.write_text(
        f"vpdq {to_pytx(pan)}\n"  # python-threatexchange's line
        + json.dumps({"signal": "vpdq", "hash": to_pytx(pan)})
        + "\n"  # `hashmatch hash`
        + "\n"
        + to_cpp_lines(other)  # the C++ tool's lines: one video
        + "\n"
        + broken(to_cpp_lines(other))  # a copy with a bad hash on its second line
    )
    done = run_cli("import", "--store", url, "--list", "v", str(source))
    assert "list v: added 2, duplicates 1, refused 1" in done.stdout, done.stderr
    start = len(to_cpp_lines(other).splitlines()) + 5
    assert f"line {start + 1}: refused: vpdq-cpp video from line {start}: pdq hash" in done.stderr

    for fmt in ("csv", "threatexchange", "vpdq-cpp"):
        out = tmp_path / f"export.{fmt}"
        assert run_cli("export", "--store", url, "--list", "v", "--format", fmt, str(out))
        again = run_cli("import", "--store", url, "--list", f"again-{fmt}", str(out))
        assert "added 2, duplicates 0, refused 0" in again.stdout, (fmt, again.stderr)
        if fmt == "csv":  # our own lines keep every time: the same entries, duplicates
            dup = run_cli("import", "--store", url, "--list", "v", str(out))
            assert "added 0, duplicates 2" in dup.stdout
    lines = (tmp_path / "export.threatexchange").read_text().splitlines()
    assert lines[0] == f"vpdq {to_pytx(pan)}"
    hex_out = run_cli("export", "--store", url, "--list", "v", "--format", "hex", "--signal", "pdq")
    assert "exported 0" in hex_out.stderr


def test_a_trim_out_of_phase_matches_by_the_phased_check_and_not_the_plain_one(
    one: tuple[ServerProcess, str], clips: dict[str, Path]
) -> None:
    """0.4 s off the start puts every one-a-second frame of the pan and zoom 0.4 s from
    the listed ones (over 31 bits away): the plain check finds nothing; `check` by default
    sends 16 frames a second, each second one slot, and finds the listed clip."""
    proc, _ = one
    server = ("--server", proc.address)
    assert run_cli("list", "create", *server, "moving").returncode == 0
    up = run_cli("list", "upload", *server, "moving", str(clips["moving"]), "--no-progress")
    assert "added 1" in up.stdout, up.stderr
    plain = run_cli("check", *server, "--plain", str(clips["trimmed"]))
    (answer,) = [json.loads(line) for line in plain.stdout.splitlines()]
    assert answer["matched"] is False and answer["frames_matched_on"] >= 4
    answers, _, code = checked(proc.address, clips["trimmed"])
    answer = answers[0]
    assert code == 0 and answer["matched"], answer
    matches = answer["matches"]
    assert isinstance(matches, list) and len(matches) == 1
    m = matches[0]
    assert m["list"] == "moving" and m["query_match_percent"] == 100
    assert answer["frames_matched_on"] == 5  # its whole seconds: slots, not frames
    with MatchClient(proc.address) as client:
        assert client.check_video_file(clips["trimmed"]).matches[0].match_id == m["match_id"]
        assert not client.check_video_file(clips["trimmed"], plain=True).matched
        # The phased check of an unrelated clip still finds nothing.
        other = client.check_video_file(clips["other"])
        assert all(v.list != "moving" for v in other.matches)
