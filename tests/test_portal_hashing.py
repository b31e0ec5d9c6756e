"""The victim's page hashes in JavaScript: its Node tests (tests/js/) run here, against
the CLI's hashes of every bundled photo, and print the parity distribution."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.portal_photos import dump

REPO = Path(__file__).resolve().parent.parent


def test_page_hashing_matches_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node (20 or later) is needed to test the page's hashing: apt-get install nodejs"
        )
    dump(tmp_path)
    run = subprocess.run(
        [node, "--test", "--test-reporter=tap", "tests/js/"],
        cwd=REPO,
        env={**os.environ, "HASHMATCH_PHOTO_PIXELS": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = [
        line[2:]
        for line in run.stdout.splitlines()
        if line.startswith("# ") and not line.startswith("# Subtest")
    ]
    with capsys.disabled():
        print("\n" + "\n".join(report))
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# pass 0" not in run.stdout
