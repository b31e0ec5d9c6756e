"""Re-uploads with simple edits still match: the caller-side variants, and end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from hashmatch.images import ImageSource
from hashmatch.serve_process import running_server
from hashmatch.signals import SIGNALS
from hashmatch.standins import TRANSFORMS
from hashmatch.variants import (
    ORIENTATIONS,
    dihedral,
    listing_variants,
    probe_variants,
    trim_borders,
)
from tests.conftest import run_cli

PDQ = SIGNALS["pdq"]


def image_of(data: bytes) -> Image.Image:
    return ImageSource(data).rgb


def test_orientations_are_named_as_the_turn_that_undoes_them(photos: dict[str, bytes]) -> None:
    image = image_of(photos["astronaut"])
    original = PDQ.compute(ImageSource(b"", image)).hash
    for name, turn in ORIENTATIONS[1:]:
        assert turn is not None
        found = {
            v.name: v.hash.hash
            for v in probe_variants(ImageSource(b"", image.transpose(turn)), [PDQ])
        }
        assert original in found.values(), name
    # pdqhash's own dihedral hashes come in the same order as ORIENTATIONS.
    for (name, turn), v in zip(ORIENTATIONS, dihedral(image), strict=True):
        turned = image if turn is None else image.transpose(turn)
        exact = PDQ.compute(ImageSource(b"", turned)).hash
        distance = int.from_bytes(exact, "big") ^ int.from_bytes(v.hash.hash, "big")
        assert distance.bit_count() <= 31, name


def distance(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


@pytest.mark.parametrize("texture", ["brick", "chessboard_GRAY", "page"])
def test_a_downscaled_texture_meets_its_listing_at_a_fixed_size(
    photos: dict[str, bytes], texture: str
) -> None:
    image = image_of(photos[texture])
    half = TRANSFORMS["resize 1/2 (1/4 area)"](image)
    assert (
        distance(
            PDQ.compute(ImageSource(b"", image)).hash, PDQ.compute(ImageSource(b"", half)).hash
        )
        > PDQ.threshold
    )
    listed = listing_variants(ImageSource(b"", image), [PDQ])
    probes = probe_variants(ImageSource(b"", half), [PDQ])
    d, listed_name, probe_name = min(
        (distance(v.hash.hash, p.hash.hash), v.name, p.name) for v in listed for p in probes
    )
    assert d <= PDQ.threshold
    assert listed_name.startswith("scale-") and probe_name.startswith("scale-")


@pytest.mark.parametrize("frame", ["border 10% white", "letterbox 16:9"])
def test_borders_are_trimmed_back_to_the_picture(photos: dict[str, bytes], frame: str) -> None:
    image = image_of(photos["coffee"])
    trimmed = trim_borders(TRANSFORMS[frame](image))
    assert trimmed is not None
    assert abs(trimmed.width - image.width) <= 2 and abs(trimmed.height - image.height) <= 2
    assert trim_borders(image) is None


def test_edited_re_uploads_match_and_say_which_variant_found_them(
    tmp_path: Path, photos: dict[str, bytes]
) -> None:
    original = tmp_path / "mine.png"
    original.write_bytes(photos["chelsea"])
    edited = {}
    for name in (
        "mirror",
        "rotate 90",
        "crop 10% each side",
        "letterbox 16:9",
        "text overlay (8% of area)",
    ):
        path = tmp_path / f"{name.split()[0]}-{len(edited)}.png"
        TRANSFORMS[name](image_of(photos["chelsea"])).save(path)
        edited[name] = path
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with running_server(tmp_path / "index", "--store", url, "--no-auth") as proc:
        done = run_cli("submit", "--server", proc.address, "--signal", "pdq", str(original))
        assert done.returncode == 0, done.stderr
        plain = run_cli("check", "--server", proc.address, "--signal", "pdq", str(edited["mirror"]))
        assert json.loads(plain.stdout)["matched"] is False
        robust = run_cli(
            "check",
            "--server",
            proc.address,
            "--signal",
            "pdq",
            "--robust",
            *map(str, edited.values()),
        )
        assert robust.returncode == 0, robust.stderr
        verdicts = [json.loads(line) for line in robust.stdout.splitlines()]
        assert [v["matched"] for v in verdicts] == [True] * len(edited), robust.stdout
        variants = {
            name: v["matches"][0]["variant"] for name, v in zip(edited, verdicts, strict=True)
        }
        assert variants["mirror"] == "mirror" and variants["rotate 90"] == "rot270"
        assert variants["letterbox 16:9"].startswith("trimmed")
        crop = verdicts[list(edited).index("crop 10% each side")]["matches"][0]
        assert crop["variant"] == "original" and crop["listed_variant"] == "crop-center-80"
        assert "listed_variant" not in verdicts[0]["matches"][0]
        assert variants["text overlay (8% of area)"] in ("original", "band-bottom-90")
