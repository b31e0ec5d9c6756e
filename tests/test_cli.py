"""The `hashmatch` command line, run as operators run it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hashmatch.serve_process import ServerProcess
from hashmatch.signals import SIGNALS
from hashmatch.standins import bundled_photos, jpeg
from tests.conftest import LISTED, run_cli


@pytest.fixture(scope="module")
def photo_paths() -> dict[str, str]:
    return {p.stem: str(p) for p in bundled_photos()}


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_hash_prints_one_json_object_per_image_and_signal(photo_paths: dict[str, str]) -> None:
    done = run_cli("hash", photo_paths["astronaut"], photo_paths["moon"])
    assert done.returncode == 0, done.stderr
    out = lines(done.stdout)
    assert [(o["file"], o["signal"]) for o in out] == [
        (photo_paths["astronaut"], "pdq"),
        (photo_paths["astronaut"], "phash"),
        (photo_paths["moon"], "pdq"),
        (photo_paths["moon"], "phash"),
    ]
    assert len(str(out[0]["hash"])) == 64 and out[0]["quality"] == 100
    assert len(str(out[1]["hash"])) == 16 and out[1]["quality"] is None


def test_hash_all_signals(photo_paths: dict[str, str]) -> None:
    done = run_cli("hash", "--signal", ",".join(SIGNALS), photo_paths["coins"])
    assert done.returncode == 0, done.stderr
    out = lines(done.stdout)
    assert [o["signal"] for o in out] == list(SIGNALS)
    assert all(len(str(o["hash"])) == SIGNALS[str(o["signal"])].bits // 4 for o in out)


def test_unreadable_files_are_reported_and_the_rest_hashed(
    tmp_path: Path, photo_paths: dict[str, str]
) -> None:
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("not an image")
    done = run_cli("hash", str(tmp_path / "missing.png"), str(bogus), photo_paths["camera"])
    assert done.returncode == 1
    assert f"{tmp_path / 'missing.png'}: cannot read file" in done.stderr
    assert f"{bogus}: not a recognised image format" in done.stderr
    assert [o["file"] for o in lines(done.stdout)] == [photo_paths["camera"]] * 2


def test_unknown_signal_option_is_a_usage_error(photo_paths: dict[str, str]) -> None:
    done = run_cli("hash", "--signal", "pdq,photodna", photo_paths["camera"])
    assert done.returncode == 2 and "unknown signal 'photodna'" in done.stderr


def test_import_build_and_check_by_image(
    tmp_path: Path, photo_paths: dict[str, str], photos: dict[str, bytes]
) -> None:
    hashes = run_cli("hash", photo_paths["coffee"], photo_paths["rocket"]).stdout
    (tmp_path / "list.jsonl").write_text(hashes + "pdq,00ff\n")
    store = f"sqlite:///{tmp_path / 's.db'}"
    done = run_cli("import", "--store", store, "--list", "victims", str(tmp_path / "list.jsonl"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "list victims: added 4, duplicates 0, refused 1"
    assert "line 5: refused: pdq hash: expected 64 hex characters, got 4" in done.stderr
    again = run_cli("import", "--store", store, "--list", "victims", "-", stdin=hashes)
    assert again.stdout.strip() == "list victims: added 0, duplicates 4, refused 0"
    built = run_cli("index", "build", "--store", store, "--out", str(tmp_path / "index"))
    assert built.returncode == 0 and "snapshot version 1" in built.stdout


def test_check_images_prints_verdicts_in_input_order(
    server: ServerProcess, tmp_path: Path, photo_paths: dict[str, str], photos: dict[str, bytes]
) -> None:
    edited = tmp_path / "astronaut-q30.jpg"
    edited.write_bytes(jpeg(photos["astronaut"], 30))
    args = [str(edited), photo_paths["moon"], str(tmp_path / "gone.png"), photo_paths["coins"]]
    done = run_cli("check", "--server", server.address, *args)
    assert done.returncode == 1, "one input failed"
    out = lines(done.stdout)
    assert [o["file"] for o in out] == args
    assert [o.get("matched") for o in out] == [True, False, None, True]
    assert "cannot read file" in str(out[2]["error"])
    match = out[0]["matches"][0]  # type: ignore[index]
    # Checked robustly by default: each match names the variant of the upload that found it.
    assert set(match) == {"signal", "list", "match_id", "distance", "variant"}
    assert match["list"] == "hotline-a" and match["variant"] == "original"


def test_check_hashes_and_bad_hashes(server: ServerProcess, photos: dict[str, bytes]) -> None:
    listed = run_cli(
        "hash", "--signal", "pdq", str(next(p for p in bundled_photos() if p.stem == LISTED[0]))
    )
    hit = f"pdq:{lines(listed.stdout)[0]['hash']}"
    done = run_cli(
        "check", "--server", server.address, "--hash", hit, "pdq:00", "nope:11", "phash:" + "0" * 16
    )
    out = lines(done.stdout)
    assert done.returncode == 1
    assert [o["hash"] for o in out] == [hit, "pdq:00", "nope:11", "phash:" + "0" * 16]
    assert out[0]["matched"] is True and out[3]["matched"] is False
    assert out[1]["error"] == "pdq hash: expected 64 hex characters, got 2"
    assert str(out[2]["error"]).startswith("unknown signal 'nope'")


def test_check_hash_file_of_100k_from_stdin(
    server: ServerProcess, photos: dict[str, bytes]
) -> None:
    listed = run_cli(
        "hash", "--signal", "pdq", str(next(p for p in bundled_photos() if p.stem == LISTED[1]))
    )
    hit = f"pdq:{lines(listed.stdout)[0]['hash']}"
    inputs = [f"pdq:{i:064x}" for i in range(100_000)]
    inputs[0] = inputs[54_321] = hit
    done = run_cli(
        "check", "--server", server.address, "--hash-file", "-", stdin="\n".join(inputs) + "\n"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = lines(done.stdout)
    assert len(out) == 100_000
    assert [o["hash"] for o in out[:3]] == inputs[:3]
    assert [i for i, o in enumerate(out) if o["matched"]] == [0, 54_321]


def test_check_against_a_dead_server_is_a_clear_error(tmp_path: Path) -> None:
    done = run_cli("check", "--server", "127.0.0.1:1", "--hash", "pdq:" + "0" * 64)
    assert done.returncode == 1 and "server 127.0.0.1:1: UNAVAILABLE" in done.stderr


def test_serve_on_an_empty_directory_says_how_to_build(tmp_path: Path) -> None:
    done = run_cli("serve", "--index", str(tmp_path), "--listen", "127.0.0.1:0", "--no-auth")
    assert done.returncode == 1 and "hashmatch index build" in done.stderr
