"""README's two commands are the ones CI and a newcomer run, and the demo's verbs start
without loading the server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme_top = (ROOT / "README.md").read_text()[:1500]
    assert ci_command in readme_top
    assert "hashmatch demo" in readme_top


def test_the_two_commands_open_the_readme() -> None:
    """After a short intro, the first two code blocks are the demo and the test commands."""
    readme = (ROOT / "README.md").read_text()
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    blocks = readme.split("```")[1::2]
    first, second = (block.removeprefix("sh").strip() for block in blocks[:2])
    assert first.endswith("hashmatch demo") and first.startswith("python3 -m venv .venv")
    assert second == ci_command
    intro = readme.split("##", 1)[0].strip().splitlines()[1:]
    assert 1 <= len([line for line in intro if line.strip()]) <= 3, intro


@pytest.mark.parametrize("verb", ["hash", "submit", "withdraw", "list upload", "status"])
def test_a_caller_verb_never_imports_the_server(verb: str) -> None:
    """The demo runs each verb in a subprocess; a caller's verb must not pay for importing
    the store, numba and FAISS (about a second of CPU each) that only server verbs use."""
    probe = (
        "import sys\n"
        "from hashmatch.cli import main\n"
        "try:\n"
        f"    main({[*verb.split(), '--help']!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'indexer', 'service'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
    assert "unavailable" not in done.stderr, done.stderr
