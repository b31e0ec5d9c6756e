"""Snapshots: atomic, checksummed; a bad one is refused and an older good one served."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from hashmatch.signals import SIGNALS
from indexer.mih import FINGERPRINT_LANES, MIH_MIN_ENTRIES
from indexer.snapshot import (
    CURRENT,
    FORMAT_VERSION,
    KEEP_VERSIONS,
    SnapshotError,
    current_version,
    list_versions,
    read_snapshot,
    version_dir_name,
)
from indexer.store import NewEntry, open_store
from service import prefetch_tuning
from service.matcher import Matcher
from service.mih_engine import MihEngine
from service.queries import ParsedQuery
from service.snapshots import SnapshotHolder, load_best
from tests.conftest import LISTED, add_photos, build_index


@pytest.fixture
def store_url(tmp_path: Path, photos: dict[str, bytes]) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    add_photos(url, "hotline-a", photos, LISTED[:3])
    return url


def test_build_and_read_round_trip(store_url: str, tmp_path: Path) -> None:
    root = tmp_path / "index"
    path = build_index(store_url, root)
    snap = read_snapshot(root)
    assert snap.path == path and snap.version == 1 and snap.lists == ("hotline-a",)
    assert set(snap.tables) == {"pdq", "phash", "dhash", "ahash", "whash", "md5", "sha256"}
    assert all(t.count == 3 for t in snap.tables.values())
    md5 = snap.tables["md5"]
    keys = [bytes(h) for h in md5.hashes]
    assert keys == sorted(keys), "exact signals are stored sorted for binary search"
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["signals"]["pdq"] == {
        "bits": 256,
        "threshold": 31,
        "exact": False,
        "count": 3,
        "mih": None,
        "variant_names": [],
    }
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    assert not [p for p in root.iterdir() if p.name.startswith(".")], "no temporary leftovers"


def test_versions_increase_and_old_ones_are_pruned(store_url: str, tmp_path: Path) -> None:
    root = tmp_path / "index"
    for _ in range(KEEP_VERSIONS + 2):
        build_index(store_url, root)
    assert current_version(root) == KEEP_VERSIONS + 2
    assert list_versions(root) == list(range(3, KEEP_VERSIONS + 3))


def corrupt_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def corrupt_header(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:12] + b"!" + data[13:])


def corrupt_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def older_format(path: Path) -> None:
    manifest = json.loads(path.read_text())
    manifest["format_version"] -= 1
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("victim", "damage", "message"),
    [
        ("pdq.codes.npy", corrupt_flip, "SHA-256 does not match"),
        ("pdq.codes.npy", corrupt_truncate, "size"),
        ("phash.match_ids.npy", corrupt_flip, "SHA-256 does not match"),
        ("md5.lists.npy", lambda p: p.unlink(), "missing"),
        ("phash.lists.npy", corrupt_header, "not a valid array"),
        ("manifest.json", corrupt_truncate, "manifest.json: not valid JSON"),
        ("manifest.json", older_format, rf"format version {FORMAT_VERSION - 1}, this hashmatch"),
    ],
)
def test_damaged_snapshot_is_refused_saying_why(
    store_url: str, tmp_path: Path, victim: str, damage: object, message: str
) -> None:
    root = tmp_path / "index"
    path = build_index(store_url, root)
    damage(path / victim)  # type: ignore[operator]
    with pytest.raises(SnapshotError, match=message):
        read_snapshot(root)
    with pytest.raises(SnapshotError, match="no snapshot could be served"):
        load_best(root)


def test_refused_current_falls_back_to_newest_good_version(store_url: str, tmp_path: Path) -> None:
    root = tmp_path / "index"
    build_index(store_url, root)
    newest = build_index(store_url, root)
    corrupt_flip(newest / "pdq.codes.npy")
    assert load_best(root).version == 1


def test_running_holder_refuses_a_bad_new_snapshot_and_keeps_serving(
    store_url: str, tmp_path: Path, photos: dict[str, bytes]
) -> None:
    root = tmp_path / "index"
    build_index(store_url, root)
    holder = SnapshotHolder(root)
    old = holder.matcher
    bad = build_index(store_url, root)
    corrupt_flip(bad / "pdq.codes.npy")
    assert holder.refresh() is False
    assert holder.matcher is old and holder.matcher.version == 1
    add_photos(store_url, "hotline-b", photos, LISTED[3:5])
    build_index(store_url, root)
    assert holder.refresh() is True
    assert holder.matcher.version == 3
    assert holder.matcher.base.lists == ("hotline-a", "hotline-b")


def test_missing_snapshot_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="hashmatch index build"):
        load_best(tmp_path)
    (tmp_path / CURRENT).write_text("garbage")
    with pytest.raises(SnapshotError):
        read_snapshot(tmp_path)


def test_interrupted_write_leaves_current_untouched(store_url: str, tmp_path: Path) -> None:
    root = tmp_path / "index"
    build_index(store_url, root)
    # What a build killed mid-write leaves: a temporary directory, never a version.
    shutil.copytree(root / version_dir_name(1), root / ".tmp-v0000000002-dead")
    assert read_snapshot(root).version == 1
    assert build_index(store_url, root).name == version_dir_name(2)


def test_large_lists_are_served_by_multi_index_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Above the crossover the snapshot carries MIH tables, and matches equal brute force.
    A snapshot's engines get their prefetch distance timed on this host; a delta's don't."""
    monkeypatch.setattr(prefetch_tuning, "TUNED_MIN_ENTRIES", MIH_MIN_ENTRIES)
    caplog.set_level(logging.INFO, logger=prefetch_tuning.__name__)
    rng = np.random.default_rng(3)
    pdq = rng.integers(0, 256, size=(MIH_MIN_ENTRIES + 500, 32), dtype=np.uint8)
    phash = rng.integers(0, 256, size=(MIH_MIN_ENTRIES + 500, 8), dtype=np.uint8)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = open_store(url)
    store.add_entries("big", [NewEntry("pdq", bytes(h)) for h in pdq])
    store.add_entries("big", [NewEntry("phash", bytes(h)) for h in phash])
    store.close()
    snap = read_snapshot(build_index(url, tmp_path / "index").parent)
    pdq_mih, phash_mih = snap.tables["pdq"].mih, snap.tables["phash"].mih
    # PDQ buckets carry fingerprints (a lower bound); pHash buckets the whole 64-bit code.
    assert pdq_mih is not None and pdq_mih.plan.fingerprint_lanes == FINGERPRINT_LANES
    assert phash_mih is not None and phash_mih.plan.exact_in_bucket
    Matcher(snap.lists, snap.tables, snap.version)
    assert "prefetching" not in caplog.text
    matcher = Matcher.of(snap)
    assert isinstance(matcher._engines["pdq"], MihEngine)
    for signal in ("pdq", "phash"):
        assert f"{signal}: prefetching " in caplog.text
    queries = []
    thresholds = [SIGNALS[s].threshold for s in ("pdq", "phash")]
    for signal, entries in (("pdq", pdq), ("phash", phash)):
        t = SIGNALS[signal].threshold
        for k in (0, t, t + 1):
            bits = np.unpackbits(entries[k])
            bits[:k] ^= 1
            queries.append(
                ParsedQuery(signal, np.packbits(bits).tobytes(), SIGNALS[signal].threshold)
            )
    found = [[h.distance for h in hits] for hits in matcher.check(queries)]
    assert found == [[0], [thresholds[0]], [], [0], [thresholds[1]], []]
