"""README's two commands are the ones CI and a newcomer run."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme_top = (ROOT / "README.md").read_text()[:1500]
    assert ci_command in readme_top
    assert "hashmatch demo" in readme_top
