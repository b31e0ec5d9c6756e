"""The README's first command: the whole path on the bundled stand-in photos."""

from __future__ import annotations

from tests.conftest import run_cli


def test_demo_matches_every_edited_copy_and_no_unrelated_photo() -> None:
    done = run_cli("demo")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "26/26 edited copies matched by pdq, 13/13 unrelated photos unmatched; 0 wrong verdicts"
        in done.stdout
    )
    table = [line for line in done.stdout.splitlines() if line.endswith((" ok", " WRONG"))]
    assert len(table) == 39 and not [line for line in table if line.endswith("WRONG")]
    assert "server stopped" in done.stdout
