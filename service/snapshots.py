"""Keeping a verified snapshot in service: load the best one at start, swap in new ones."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from indexer.snapshot import (
    Snapshot,
    SnapshotError,
    current_version,
    list_versions,
    read_snapshot_dir,
    version_dir_name,
)
from indexer.store import Change
from service import metrics
from service.delta import Delta
from service.matcher import LiveMatcher, Matcher

log = logging.getLogger(__name__)


def _refuse(version: int, exc: SnapshotError) -> None:
    metrics.SNAPSHOT_REFUSED.inc()
    log.error("refusing snapshot version %d: %s", version, exc)


def load_best(root: Path) -> Snapshot:
    """The current snapshot, or, if it is refused, the newest older one that verifies."""
    try:
        current = current_version(root)
    except SnapshotError as exc:
        log.error("%s", exc)
        current = None
    candidates = sorted({*list_versions(root), *([current] if current else [])}, reverse=True)
    if current is not None:
        candidates = [v for v in candidates if v <= current]
    reasons = []
    for version in candidates:
        try:
            snapshot = read_snapshot_dir(root / version_dir_name(version))
        except SnapshotError as exc:
            _refuse(version, exc)
            reasons.append(str(exc))
            continue
        if version != current:
            log.warning("serving older snapshot version %d instead of %s", version, current)
        return snapshot
    if not candidates:
        raise SnapshotError(f"{root}: no snapshot found; run `hashmatch index build --out {root}`")
    raise SnapshotError("no snapshot could be served: " + "; ".join(reasons))


class SnapshotHolder:
    """What is in service: the snapshot's matcher plus the delta since it, published as one
    immutable LiveMatcher, so a request sees one consistent state throughout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._refused: set[int] = set()
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        snapshot = load_best(root)
        self._base = self._install(snapshot)
        self._delta = Delta.empty(snapshot.last_seq)
        self._publish()

    @property
    def applied_seq(self) -> int:
        return self._delta.applied_seq

    @property
    def delta(self) -> Delta:
        return self._delta

    def _install(self, snapshot: Snapshot) -> Matcher:
        matcher = Matcher.of(snapshot)
        metrics.SNAPSHOT_VERSION.set(snapshot.version)
        metrics.SNAPSHOT_LOADED.set(time.time())
        created = datetime.fromisoformat(snapshot.created_at).timestamp()
        self.built_at = created
        metrics.SNAPSHOT_AGE.set_function(lambda: time.time() - created)
        metrics.SNAPSHOT_ENTRIES.clear()
        for name, table in snapshot.tables.items():
            metrics.SNAPSHOT_ENTRIES.labels(name).set(table.count)
        counts = ", ".join(f"{n} {t.count}" for n, t in snapshot.tables.items()) or "no entries"
        log.info(
            "snapshot version %d in service (%s; changes up to %d)",
            snapshot.version,
            counts,
            snapshot.last_seq,
        )
        return matcher

    def _publish(self) -> None:
        delta = self._delta
        self.matcher = LiveMatcher(
            self._base, delta.matcher(self._base.version), delta.tombstones()
        )
        metrics.DELTA_ENTRIES.labels("adds").set(len(delta.adds))
        metrics.DELTA_ENTRIES.labels("tombstones").set(len(delta.removed))
        metrics.APPLIED_SEQ.set(delta.applied_seq)

    def apply(self, changes: Sequence[Change]) -> None:
        """Bring the matcher up to date with change log lines read from the store."""
        if not changes:
            return
        with self._lock:
            self._delta = self._delta.apply(changes)
            self._publish()
        metrics.FRESHNESS_LAG.observe(max(0.0, time.time() - min(c.at for c in changes)))

    def refresh(self) -> bool:
        """Swap in a newer current snapshot if there is one that verifies."""
        with self._refresh_lock:
            return self._refresh()

    def _refresh(self) -> bool:
        try:
            version = current_version(self.root)
        except SnapshotError as exc:
            log.error("%s", exc)
            return False
        if version is None or version == self._base.version or version in self._refused:
            return False
        try:
            snapshot = read_snapshot_dir(self.root / version_dir_name(version))
        except SnapshotError as exc:
            self._refused.add(version)
            _refuse(version, exc)
            log.error("still serving snapshot version %d", self._base.version)
            return False
        base = self._install(snapshot)  # engines are built before the lock: no pause
        with self._lock:
            self._base = base
            self._delta = self._delta.rebase(snapshot.last_seq)
            self._publish()
        return True

    def watch(self, interval: float, stop: threading.Event) -> threading.Thread:
        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.refresh()
                except Exception:
                    log.exception(
                        "snapshot refresh failed; still serving version %d", self._base.version
                    )

        thread = threading.Thread(target=loop, name="snapshot-watch", daemon=True)
        thread.start()
        return thread
