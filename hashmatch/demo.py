"""`hashmatch demo`: the story the service exists for, told on benign stand-in photos.

Every step is the real thing, on an embedded SQLite store: the operator issues API
keys and starts `hashmatch serve`; a victim submits a case from her own photos with
`hashmatch submit` (hashed on her machine, crops and all) and gets a case id and a
withdrawal secret; a hotline uploads a list of hashes with `hashmatch hash` and
`hashmatch list create|upload`; a platform checks re-uploads (JPEG, resized,
mirrored, rotated, cropped, letterboxed, captioned, combined) and unrelated photos
through the gRPC SDK, each upload hashed in every checking variant (the robust
scheme, hashmatch.variants); the victim withdraws with `hashmatch withdraw`, and the
same re-uploads of her photos stop matching.

Re-uploads are made in memory: no image is written anywhere.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hashmatch.channel import Credentials
from hashmatch.client import MatchClient, Verdict
from hashmatch.images import ImageSource
from hashmatch.serve_process import running_server
from hashmatch.signals import get_signal
from hashmatch.standins import SAME_SCENE, TRANSFORMS, bundled_photos, reupload
from hashmatch.variants import probe_variants

SIGNALS = (get_signal("pdq"), get_signal("phash"))
HOTLINE_LIST = "hotline-demo"
VICTIM, HOTLINE, UNRELATED = "victim", "hotline", "unrelated"
ORIGINAL = "original"
# The re-uploads of each listed photo: what abusers do to dodge a block, all of them
# edits the robust scheme is built to find (load_tests/results/robustness.md).
EDITS = (
    "jpeg q30",
    "resize 1/2 (1/4 area)",
    "mirror",
    "rotate 90",
    "crop 10% each side",
    "letterbox 16:9",
    "text overlay (8% of area)",
    "resize 1/2 + rotate 90 + jpeg q70",
)
# A crop is a part of the photo, and no hash of the part can be derived from the
# whole; a caption band is cut off the upload and met by the listed photo with the
# same strip cut off. Both are found through the variants `submit` lists with a
# victim's own photo (hashmatch.variants.CROPS, BANDS). A hotline's list of bare
# hashes has none, so the hotline's photos are not cropped or captioned.
NEEDS_LISTED_VARIANTS = frozenset({"crop 10% each side", "text overlay (8% of area)"})
SECRET_ENV = "HASHMATCH_WITHDRAWAL_SECRET"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")


def split(photos: Sequence[Path]) -> dict[str, list[Path]]:
    """The fixed rule, whatever each photo then does: photos of one scene
    (hashmatch.standins.SAME_SCENE) go together; in alphabetical order of the scenes,
    every other scene is listed, starting with the first, and the listed scenes
    alternate between the victim and the hotline, starting with the victim."""
    scenes: dict[str, list[Path]] = {}
    for path in sorted(photos, key=lambda p: p.stem):
        group = next((g for g in SAME_SCENE if path.stem in g), frozenset({path.stem}))
        scenes.setdefault(min(group), []).append(path)
    owners: dict[str, list[Path]] = {VICTIM: [], HOTLINE: [], UNRELATED: []}
    for i, name in enumerate(sorted(scenes)):
        owner = UNRELATED if i % 2 else (VICTIM, HOTLINE)[i // 2 % 2]
        owners[owner] += scenes[name]
    return owners


@dataclass(frozen=True)
class Upload:
    photo: Path
    owner: str  # VICTIM, HOTLINE or UNRELATED: whose list the photo is on
    copy: str  # a TRANSFORMS name, or ORIGINAL


Probe = tuple[tuple[str, str, bytes], ...]  # (upload variant, signal, hash) per query


def probe(upload: Upload) -> Probe:
    """The platform's side: the re-upload made in memory and hashed in every checking
    variant (mirrored, turned, without borders, band cuts, fixed sizes)."""
    data = upload.photo.read_bytes()
    if upload.copy != ORIGINAL:
        data = reupload(data, TRANSFORMS[upload.copy])
    return tuple(
        (v.name, v.hash.signal, v.hash.hash) for v in probe_variants(ImageSource(data), SIGNALS)
    )


@dataclass(frozen=True)
class Found:
    list: str
    signal: str
    distance: int
    probe: str  # the upload's variant that matched
    listed: str  # the listed variant it matched ("original": the photo as listed)


class Listing:
    """What the victim and the hotline got listed: each listed photo's signals, and
    each hash refused with the reason."""

    def __init__(self, owners: dict[str, list[Path]]) -> None:
        self.owner = {p.stem: o for o, paths in owners.items() for p in paths if o != UNRELATED}
        self.signals = {stem: {s.name for s in SIGNALS} for stem in self.owner}
        self.refused: list[tuple[str, str, str]] = []  # photo, signal, why

    def refuse(self, photo: str, signal: str, reason: str) -> None:
        self.signals[photo].discard(signal)
        self.refused.append((photo, signal, reason))
        print(f"   refused at listing: {photo}'s {signal} hash: {reason}")

    def listed(self, *owners: str) -> set[str]:
        """The photos with at least one hash listed (of these owners, or of any)."""
        return {
            photo
            for photo, signals in self.signals.items()
            if signals and (not owners or self.owner[photo] in owners)
        }


@dataclass(frozen=True)
class Row:
    upload: Upload
    expected: bool
    found: tuple[Found, ...]

    @property
    def lists(self) -> set[str]:
        return {f.list for f in self.found}

    @property
    def ok(self) -> bool:
        """Expected, a match on the photo's own list and no other (the store holds the
        victims' cases and the hotline's list); else no match at all."""
        if not self.expected:
            return not self.found
        if self.upload.owner == HOTLINE:
            return self.lists == {HOTLINE_LIST}
        return bool(self.found) and HOTLINE_LIST not in self.lists


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """A real CLI verb in a subprocess: its stdout and stderr; its failure ends the demo."""
    done = subprocess.run(
        [sys.executable, "-m", "hashmatch", *args],
        check=False,
        text=True,
        capture_output=True,
        env=None if env is None else {**os.environ, **env},
    )
    if done.returncode != 0:
        raise RuntimeError(f"`hashmatch {' '.join(args)}` failed:\n{done.stderr}")
    return done.stdout, done.stderr


def _say(command: str, output: str = "") -> None:
    print(f"   $ hashmatch {command}")
    for line in output.strip().splitlines():
        print(f"     {line}")


def _names(paths: Iterable[Path]) -> str:
    return " ".join(p.name for p in paths)


def _echo(line: str) -> None:
    print(f"     server | {TIMESTAMP.sub('', line)}")


def reuploads(owners: dict[str, list[Path]]) -> list[Upload]:
    """Every edit of every listed photo (but for the hotline's, the edits only a
    victim's listed variants find), then every unrelated photo as it is."""
    return [
        Upload(photo, owner, edit)
        for owner in (VICTIM, HOTLINE)
        for photo in owners[owner]
        for edit in EDITS
        if owner == VICTIM or edit not in NEEDS_LISTED_VARIANTS
    ] + [Upload(photo, UNRELATED, ORIGINAL) for photo in owners[UNRELATED]]


def run_demo(keep: str | None = None) -> int:
    if keep and Path(keep).is_dir() and any(Path(keep).iterdir()):
        print(f"hashmatch demo: --keep {keep}: give a new or empty directory", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hashmatch-demo-") as tmp:
        work = Path(keep) if keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        return _run(work.resolve())


def _run(work: Path) -> int:
    started = time.perf_counter()
    owners = split(bundled_photos())
    uploads = reuploads(owners)
    print(
        f"{sum(map(len, owners.values()))} stand-in photos, split by a fixed rule "
        f"(hashmatch.demo.split): {len(owners[VICTIM])} the victim's, "
        f"{len(owners[HOTLINE])} on the hotline's list, {len(owners[UNRELATED])} unrelated."
    )
    store = f"sqlite:///{work / 'demo.db'}"
    # The platform's hashing needs no server, so it runs while the others take their turns.
    with ProcessPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        probes = pool.map(probe, uploads, chunksize=4)
        print(
            "\n1. The operator issues API keys to a hotline and a platform, and starts the service."
        )
        hotline_key = _key(store, "demo-hotline", "list-manage", "--list", HOTLINE_LIST)
        platform_key = _key(store, "demo-platform", "check")
        serve = ("--store", store, "--anonymous-submit", "10", "--log-format", "text")
        _say(f"serve --index {work / 'index'} {' '.join(serve)}")
        with running_server(work / "index", *serve, echo=_echo) as server:
            listing = Listing(owners)
            _hotline_uploads(server.address, hotline_key, owners[HOTLINE], work, listing)
            case, secret = _victim_submits(server.address, owners[VICTIM], listing)
            print(
                f"\n4. A platform checks {len(uploads)} uploads over gRPC: edited re-uploads of "
                "the listed photos, and the unrelated ones.\n   Each is hashed on the platform "
                "in every checking variant (mirrored, turned, borders\n   trimmed, caption band "
                "cut, fixed sizes); a match of any listed signal is a match.\n"
            )
            asked = list(probes)
            queries = [(signal, h) for p in asked for _, signal, h in p]
            with MatchClient(server.address, credentials=Credentials(api_key=platform_key)) as c:
                before = _rows(uploads, asked, c.check(queries), listing.listed())
                print(_table(before, listing))
                print("\n5. The victim withdraws her case.")
                out, _ = _cli(
                    *("withdraw", "--server", server.address, "--case", case),
                    env={SECRET_ENV: secret},
                )
                _say(
                    f"withdraw --server {server.address} --case {case}  # secret in ${SECRET_ENV}",
                    out,
                )
                print("\n6. The platform checks the same uploads again.")
                after = _rows(uploads, asked, c.check(queries), listing.listed(HOTLINE))
                _compare(before, after)
    wrong = [r for r in before + after if not r.ok]
    edited = [r for r in before if r.upload.owner != UNRELATED]
    unrelated = [r for r in before if r.upload.owner == UNRELATED]
    print(
        f"\n{sum(r.ok for r in edited if r.expected)}/{sum(r.expected for r in edited)} "
        f"edited copies matched, {sum(r.ok for r in unrelated)}/{len(unrelated)} unrelated "
        f"photos unmatched; {len(wrong)} wrong verdicts "
        f"({time.perf_counter() - started:.1f}s, server stopped)"
    )
    return 1 if wrong else 0


def _key(store: str, tenant: str, role: str, *more: str) -> str:
    args = ("keys", "create", "--store", store, "--tenant", tenant, "--role", role, *more)
    out, _ = _cli(*args)
    _say(" ".join(args[:2] + args[4:]))
    return next(line.split()[1] for line in out.splitlines() if line.startswith("key:"))


def _hotline_uploads(
    address: str, key: str, photos: list[Path], work: Path, listing: Listing
) -> None:
    print("\n2. A hotline hashes its images on its own machine and uploads the hashes.")
    signals = ",".join(s.name for s in SIGNALS)
    hashed, _ = _cli("hash", "--signal", signals, *map(str, photos))
    (work / "hotline.jsonl").write_text(hashed)
    _say(f"hash --signal {signals} {_names(photos)} > hotline.jsonl")
    hotline = ("--server", address, "--api-key", key)
    _cli("list", "create", *hotline, HOTLINE_LIST, "--trust", "verified")
    _say(f"list create --server {address} {HOTLINE_LIST} --trust verified")
    upload = ("list", "upload", *hotline, "--no-progress", HOTLINE_LIST)
    out, err = _cli(*upload, str(work / "hotline.jsonl"))
    _say(f"list upload --server {address} {HOTLINE_LIST} hotline.jsonl", out + err)
    lines = hashed.splitlines()
    for number, reason in re.findall(r"^line (\d+): refused: (.*)$", err, re.MULTILINE):
        entry = json.loads(lines[int(number) - 1])
        listing.refuse(Path(entry["file"]).stem, entry["signal"], reason)


def _victim_submits(address: str, photos: list[Path], listing: Listing) -> tuple[str, str]:
    """Her case id and withdrawal secret."""
    print("\n3. A victim submits a case from her own photos, hashed on her machine.")
    # `submit` returns once everything committed so far matches: the hotline's list too.
    out, err = _cli("submit", "--server", address, *map(str, photos))
    _say(f"submit --server {address} {_names(photos)}", out + err)
    case = re.search(r"^case id:\s+(\S+)", out, re.MULTILINE)
    secret = re.search(r"^withdrawal secret:\s+(\S+)", out, re.MULTILINE)
    if case is None or secret is None:
        raise RuntimeError(f"`hashmatch submit` printed no case id and secret:\n{out}")
    for path, signal, reason in re.findall(
        r"^hashmatch: (.*): (\w+) not submitted: (.*)$", err, re.MULTILINE
    ):
        listing.refuse(Path(path).stem, signal, reason)
    return case[1], secret[1]


def _compare(before: list[Row], after: list[Row]) -> None:
    for owner, label in ((VICTIM, "the victim's photos"), (HOTLINE, "the hotline's photos")):
        pairs = [(b, a) for b, a in zip(before, after, strict=True) if b.upload.owner == owner]
        print(
            f"   re-uploads of {label}: {sum(bool(a.found) for _, a in pairs)}/{len(pairs)} "
            f"match now, {sum(bool(b.found) for b, _ in pairs)}/{len(pairs)} did before"
        )
    unrelated = [a for a in after if a.upload.owner == UNRELATED]
    print(f"   unrelated photos: {sum(bool(a.found) for a in unrelated)}/{len(unrelated)} match")
    for r in after:
        if not r.ok:
            print(f"   WRONG: {r.upload.photo.stem} {r.upload.copy}: {', '.join(r.lists)}")


def _rows(
    uploads: Sequence[Upload], probes: Sequence[Probe], verdicts: list[Verdict], listed: set[str]
) -> list[Row]:
    """One row per upload: every match of every one of its queries."""
    answers = iter(verdicts)
    rows = []
    for upload, asked in zip(uploads, probes, strict=True):
        found: list[Found] = []
        for variant, _, _ in asked:
            found += [
                # The demo's platform key is not match-only: every match has a distance.
                Found(m.list, m.signal, m.distance or 0, variant, m.variant or ORIGINAL)
                for m in next(answers).matches
            ]
        rows.append(Row(upload, upload.photo.stem in listed, tuple(found)))
    return rows


def _signals_cell(row: Row, listing: Listing) -> str:
    """The closest match of each signal, and the signals refused at listing."""
    cells = []
    for signal in SIGNALS:
        mine = [f.distance for f in row.found if f.signal == signal.name]
        if mine:
            cells.append(f"{signal.name} d={min(mine)}")
    cells += [
        f"{signal} refused"
        for photo, signal, _ in listing.refused
        if photo == row.upload.photo.stem
    ]
    return ", ".join(cells) or "-"


def _variant_cell(row: Row) -> str:
    """Which variant of the upload met which listed variant, for the closest match."""
    if not row.found:
        return "-"
    best = min(
        row.found,
        key=lambda f: (
            f.distance / get_signal(f.signal).threshold,
            f.probe != ORIGINAL,
            f.listed != ORIGINAL,
        ),
    )
    return f"{best.probe} -> {best.listed}"


def _table(rows: list[Row], listing: Listing) -> str:
    header = ["photo", "copy", "expected", "verdict", "list", "signals", "upload -> listed", ""]
    body = [
        [
            r.upload.photo.stem,
            r.upload.copy,
            "match" if r.expected else "no match",
            "match" if r.found else "no match",
            ", ".join(sorted(r.lists)) or "-",
            _signals_cell(r, listing),
            _variant_cell(r),
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
