"""The packages stay `ruff` and `mypy --strict` clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_clean() -> None:
    lint = run("ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout
    fmt = run("ruff", "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout


def test_mypy_strict_clean() -> None:
    done = run("mypy")
    assert done.returncode == 0, done.stdout
    assert "Success" in done.stdout


def test_the_sdk_a_platform_imports_carries_no_demo_or_test_harness() -> None:
    """hashmatch.client, .hashing and .submission (and what they import) never load the
    demo package (stand-in photos, a server in a subprocess, the story)."""
    probe = (
        "import sys, hashmatch.client, hashmatch.hashing, hashmatch.submission, "
        "hashmatch.variants; "
        "print(sorted(m for m in sys.modules if m.startswith(('hashmatch.demo', 'skimage', "
        "'service', 'indexer'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", done.stdout
