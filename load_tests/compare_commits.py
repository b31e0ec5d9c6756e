"""Run one benchmark in two worktrees alternately and compare the medians of its tables.

    .venv/bin/python load_tests/compare_commits.py --old ../old --new . --rounds 3 \\
        --out /tmp/compare -- load_tests/engine_benchmark.py --n 1M

Runs old, new, old, new, ... (each worktree with its own .venv and its own copy of the
script), so both commits see the same drift of a shared machine, and keeps each run's
output as OUT/<name>-{old,new}-<k>.txt. Then, for every Markdown table row the script
printed (keyed by its first two cells), prints the median of each numeric cell over the
rounds for both commits and their ratio new / old. A cell such as "12.1 / 30.4" counts as
two numbers.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

NUMBER = re.compile(r"^[*]*(-?[\d,]+(?:\.\d+)?)x?[*]*$")


def numbers(cell: str) -> list[float] | None:
    """The numbers a cell holds ("1,234", "**3.1x**", "2.0 / 7.5"), or None if it is text."""
    parts = [p.strip() for p in cell.split("/")]
    found = [NUMBER.match(p) for p in parts]
    if not all(found):
        return None
    return [float(m[1].replace(",", "")) for m in found if m]


def table_rows(text: str) -> dict[tuple[str, str], tuple[list[str], list[str]]]:
    """Each Markdown table row by its first two cells, with its table's header."""
    rows: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    lines = text.splitlines()
    header: list[str] = []
    for i, line in enumerate(lines):
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = cells
        elif len(cells) >= 2:
            rows[(cells[0], cells[1])] = (header, cells)
    return rows


def run(worktree: Path, command: list[str], out: Path) -> str:
    done = subprocess.run(
        [str(worktree / ".venv/bin/python"), *command],
        cwd=worktree,
        capture_output=True,
        text=True,
        check=False,
    )
    out.write_text(done.stdout)
    if done.returncode != 0:
        sys.exit(f"{command} failed in {worktree}:\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", type=Path, required=True, help="worktree of the old commit")
    parser.add_argument("--new", type=Path, required=True, help="worktree of the new commit")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each commit")
    parser.add_argument("--out", type=Path, required=True, help="folder for each run's output")
    parser.add_argument("--name", default="run", help="prefix of the output files")
    parser.add_argument("command", nargs="+", help="the script and its flags, after --")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    # side -> row -> one list of (column, number) per run
    runs: dict[str, dict[tuple[str, str], list[dict[str, float]]]] = {
        "old": defaultdict(list),
        "new": defaultdict(list),
    }
    for k in range(1, args.rounds + 1):
        for side, tree in (("old", args.old), ("new", args.new)):
            print(f"round {k}: {side} ...", file=sys.stderr, flush=True)
            text = run(tree.resolve(), args.command, args.out / f"{args.name}-{side}-{k}.txt")
            for key, (header, cells) in table_rows(text).items():
                runs[side][key].append(measures(header, cells))

    print(f"Medians of {args.rounds} alternate runs; ratio new / old.\n")
    print("| row | column | old | new | new / old |")
    print("|---|---|---|---|---|")
    for key, new_runs in runs["new"].items():
        for column in new_runs[0]:
            olds = [r[column] for r in runs["old"].get(key, []) if column in r]
            news = [r[column] for r in new_runs if column in r]
            if not olds:
                continue
            old, new = statistics.median(olds), statistics.median(news)
            ratio = f"{new / old:.2f}" if old else "—"
            print(f"| {' / '.join(key)} | {column} | {old:,.1f} | {new:,.1f} | {ratio} |")


def measures(header: list[str], cells: list[str]) -> dict[str, float]:
    """A row's numbers by column name past its first two cells; the parts of an "a / b"
    cell are numbered."""
    out: dict[str, float] = {}
    for name, cell in zip(header[2:], cells[2:], strict=False):
        found = numbers(cell)
        if found is None:
            continue
        for j, value in enumerate(found):
            out[name if len(found) == 1 else f"{name} [{j + 1}]"] = value
    return out


if __name__ == "__main__":
    main()
