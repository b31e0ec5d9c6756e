"""The README's first command tells the service's story, and every claim in its summary
line is checked against the table it prints."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashmatch.demo.standins import SAME_SCENE, TRANSFORMS, bundled_photos, same_scene
from hashmatch.demo.story import (
    EDITS,
    HOTLINE,
    NEEDS_LISTED_VARIANTS,
    UNRELATED,
    VICTIM,
    reuploads,
    split,
)
from tests.conftest import run_cli

SUMMARY = re.compile(
    r"^(\d+)/(\d+) edited copies matched, (\d+)/(\d+) unrelated photos unmatched; "
    r"(\d+) wrong verdicts \(\d+\.\ds, server stopped\)$",
    re.MULTILINE,
)
PHOTOS = [p.stem for p in bundled_photos()]


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess[str]:
    return run_cli("demo")


def table(out: str) -> list[list[str]]:
    """The verdict table's rows, split into columns on runs of two or more spaces."""
    return [
        re.split(r"\s{2,}", line.strip())
        for line in out.splitlines()
        if line.endswith((" ok", " WRONG")) and not line.startswith(" ")
    ]


def test_demo_ends_with_a_true_summary(demo: subprocess.CompletedProcess[str]) -> None:
    assert demo.returncode == 0, demo.stdout + demo.stderr
    owners = split(bundled_photos())
    edited = len(reuploads(owners)) - len(owners[UNRELATED])
    last = demo.stdout.strip().splitlines()[-1]
    assert last.startswith(
        f"{edited}/{edited} edited copies matched, "
        f"{len(owners[UNRELATED])}/{len(owners[UNRELATED])} unrelated photos unmatched; "
        "0 wrong verdicts ("
    ), last
    assert SUMMARY.fullmatch(last)
    rows = table(demo.stdout)
    assert len(rows) == len(reuploads(owners))
    assert all(r[-1] == "ok" for r in rows)
    assert sum(r[3] == "match" for r in rows) == edited


def test_every_photo_is_checked_and_every_edit_is_matched(
    demo: subprocess.CompletedProcess[str],
) -> None:
    rows = table(demo.stdout)
    assert {r[0] for r in rows} == set(PHOTOS)
    matched = {r[1] for r in rows if r[2] == r[3] == "match"}
    assert matched == set(EDITS)
    for row in rows:
        _, _, expected, _, lists, signals, variants, _ = row
        if expected == "match":
            assert lists in ("victim-cases", "hotline-demo"), row
            assert re.search(r"\b(pdq|phash) d=\d+", signals), row
            assert " -> " in variants, row
    # What sets the service apart is found through the variants, and the table says which.
    variants = {(r[1], r[6]) for r in rows if r[3] == "match"}
    assert ("mirror", "small+mirror -> original") in variants
    assert ("crop 10% each side", "original -> crop-center-80") in variants


def test_a_refused_hash_is_shown_with_its_reason(demo: subprocess.CompletedProcess[str]) -> None:
    assert "refused at listing: clock_motion's pdq hash: pdq quality 34 is below 50" in demo.stdout
    clock = [r for r in table(demo.stdout) if r[0] == "clock_motion"]
    assert clock and all("pdq refused" in r[5] and r[3] == "match" for r in clock)


def test_the_withdrawn_case_no_longer_matches(demo: subprocess.CompletedProcess[str]) -> None:
    owners = split(bundled_photos())
    victim = sum(u.owner == VICTIM for u in reuploads(owners))
    hotline = sum(u.owner == HOTLINE for u in reuploads(owners))
    assert re.search(r"case id:\s+\w+", demo.stdout)
    assert re.search(r"withdrawn: \d+ hashes removed", demo.stdout)
    assert f"re-uploads of the victim's photos: 0/{victim} match now" in demo.stdout
    assert f"re-uploads of the hotline's photos: {hotline}/{hotline} match now" in demo.stdout


def test_the_demo_runs_the_real_cli_verbs(demo: subprocess.CompletedProcess[str]) -> None:
    for verb in ("keys create", "serve", "hash", "list create", "list upload", "submit"):
        assert f"$ hashmatch {verb} " in demo.stdout, verb
    assert "$ hashmatch withdraw " in demo.stdout
    assert "serving MatchService on 127.0.0.1:" in demo.stdout


@given(st.permutations(PHOTOS))
def test_split_is_a_fixed_rule_over_every_photo(order: list[str]) -> None:
    """Every photo lands in exactly one group, whatever order they come in, and the
    photos of one scene are never split between listed and unrelated."""
    paths = [Path(f"/photos/{name}.png") for name in order]
    owners = split(paths)
    assert sorted(p for group in owners.values() for p in group) == sorted(paths)
    assert owners == split(sorted(paths))
    side = {p.stem: o for o, group in owners.items() for p in group}
    for a in side:
        for b in side:
            if same_scene(a, b):
                assert side[a] == side[b], (a, b)


def test_the_rule_puts_every_bundled_photo_somewhere_and_lists_about_half() -> None:
    owners = split(bundled_photos())
    assert sorted(p.stem for group in owners.values() for p in group) == sorted(PHOTOS)
    listed = len(owners[VICTIM]) + len(owners[HOTLINE])
    assert abs(listed - len(owners[UNRELATED])) <= max(map(len, SAME_SCENE))
    assert owners[VICTIM] and owners[HOTLINE]


def test_the_demo_edits_are_real_transforms() -> None:
    assert set(EDITS) <= set(TRANSFORMS)
    assert set(EDITS) >= NEEDS_LISTED_VARIANTS


def test_keep_refuses_a_directory_in_use(tmp_path: Path) -> None:
    """A second run into the same store would find the first run's list and keys."""
    (tmp_path / "demo.db").write_bytes(b"")
    done = run_cli("demo", "--keep", str(tmp_path))
    assert done.returncode == 2
    assert "give a new or empty directory" in done.stderr
