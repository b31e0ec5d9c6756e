"""The end-to-end demo: the whole path an operator runs, on benign stand-in photos.

It drives the real CLI verbs in subprocesses (hash → import → index build →
serve), then checks edited copies and unrelated photos through the real gRPC
API and prints a verdict table. Edited copies are made in memory: no image
is written anywhere.

The list holds the bundled photographs. The synthetic textures (brick,
chessboards, page, color, clock_motion) are checked as unrelated photos:
PDQ misses some of their half-size copies (see README, thresholds).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hashmatch.channel import Credentials
from hashmatch.client import MatchClient, Verdict
from hashmatch.hashing import hash_bytes
from hashmatch.serve_process import running_server
from hashmatch.signals import get_signal
from hashmatch.standins import EDITS, bundled_photos

LIST_NAME = "demo"
LIST_PHOTOS = frozenset(
    {
        "astronaut",
        "camera",
        "cell",
        "chelsea",
        "coffee",
        "coins",
        "grass",
        "gravel",
        "hubble_deep_field",
        "ihc",
        "motorcycle_left",
        "motorcycle_right",
        "retina",
    }
)
SIGNALS = (get_signal("pdq"), get_signal("phash"))
DECIDING = "pdq"


def _cli(*args: str) -> str:
    cmd = [sys.executable, "-m", "hashmatch", *args]
    done = subprocess.run(cmd, check=False, text=True, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"`hashmatch {' '.join(args)}` failed:\n{done.stderr}")
    return done.stdout


@dataclass(frozen=True)
class Row:
    photo: str
    copy: str
    expected: bool
    verdicts: dict[str, Verdict]

    @property
    def ok(self) -> bool:
        if self.expected:
            return self.verdicts[DECIDING].matched
        return not any(v.matched for v in self.verdicts.values())


def _cell(v: Verdict) -> str:
    if not v.matched:
        return "no match"
    known = [m.distance for m in v.matches if m.distance is not None]
    return f"match d={min(known)}" if known else "match"


def _table(rows: list[Row]) -> str:
    header = ["photo", "copy", "expected", *(s.name for s in SIGNALS), "verdict"]
    body = [
        [
            r.photo,
            r.copy,
            "match" if r.expected else "no match",
            *(_cell(r.verdicts[s.name]) for s in SIGNALS),
            "ok" if r.ok else "WRONG",
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = [
        "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _echo(line: str) -> None:
    print(f"  server | {line}")


def run_demo(keep: str | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="hashmatch-demo-") as tmp:
        work = Path(keep) if keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        return _run(work.resolve())


def _run(work: Path) -> int:
    started = time.perf_counter()
    photos = {p.stem: p for p in bundled_photos()}
    listed = [photos[n] for n in sorted(LIST_PHOTOS)]
    unrelated = [p for n, p in sorted(photos.items()) if n not in LIST_PHOTOS]
    store = f"sqlite:///{work / 'demo.db'}"
    index = work / "index"
    signals = ",".join(s.name for s in SIGNALS)

    print(f"1. hash {len(listed)} stand-in photos locally ({signals})")
    hashes = work / "list.jsonl"
    hashes.write_text(_cli("hash", "--signal", signals, *map(str, listed)))
    print(f"2. import them into list {LIST_NAME!r} of {store}")
    print("   " + _cli("import", "--store", store, "--list", LIST_NAME, str(hashes)).strip())
    print(f"3. build the index into {index}")
    print("   " + _cli("index", "build", "--store", store, "--out", str(index)).strip())
    print("4. issue an API key with the check role, as for a platform")
    issued = _cli(
        "keys", "create", "--store", store, "--tenant", "demo-platform", "--role", "check"
    )
    token = next(line.split()[1] for line in issued.splitlines() if line.startswith("key:"))
    print("5. start the gRPC service on loopback (API keys required)")
    rows: list[Row] = []
    with (
        running_server(index, "--store", store, echo=_echo) as server,
        MatchClient(server.address, credentials=Credentials(api_key=token)) as client,
    ):
        print(
            f"6. check edited copies ({', '.join(EDITS)}) and unrelated photos "
            f"over gRPC at {server.address}"
        )
        cases: list[tuple[str, str, bool, bytes]] = []
        for path in listed:
            original = path.read_bytes()
            cases += [(path.stem, name, True, edit(original)) for name, edit in EDITS.items()]
        cases += [(p.stem, "original", False, p.read_bytes()) for p in unrelated]
        for photo, copy, expected, data in cases:
            queries = [(h.signal, h.hash) for h in hash_bytes(data, SIGNALS)]
            verdicts = dict(zip((s.name for s in SIGNALS), client.check(queries), strict=True))
            rows.append(Row(photo, copy, expected, verdicts))
    print()
    print(_table(rows))
    wrong = [r for r in rows if not r.ok]
    matched = sum(r.expected and r.ok for r in rows)
    print(
        f"\n{matched}/{sum(r.expected for r in rows)} edited copies matched by {DECIDING}, "
        f"{sum(not r.expected and r.ok for r in rows)}/{sum(not r.expected for r in rows)} "
        f"unrelated photos unmatched; {len(wrong)} wrong verdicts "
        f"({time.perf_counter() - started:.1f}s, server stopped)"
    )
    return 1 if wrong else 0
