"""Keeping a verified snapshot in service: load the best one at start, swap in new ones."""

from __future__ import annotations

import logging
import threading
import time
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
from service import metrics
from service.matcher import Matcher

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
    """The matcher in service; replaced whole, so a request sees one snapshot throughout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._refused: set[int] = set()
        self.matcher = self._install(load_best(root))

    def _install(self, snapshot: Snapshot) -> Matcher:
        matcher = Matcher(snapshot)
        metrics.SNAPSHOT_VERSION.set(snapshot.version)
        metrics.SNAPSHOT_LOADED.set(time.time())
        created = datetime.fromisoformat(snapshot.created_at).timestamp()
        metrics.SNAPSHOT_AGE.set_function(lambda: time.time() - created)
        metrics.SNAPSHOT_ENTRIES.clear()
        for name, table in snapshot.tables.items():
            metrics.SNAPSHOT_ENTRIES.labels(name).set(table.count)
        counts = ", ".join(f"{n} {t.count}" for n, t in snapshot.tables.items()) or "no entries"
        log.info("snapshot version %d in service (%s)", snapshot.version, counts)
        return matcher

    def refresh(self) -> bool:
        """Swap in a newer current snapshot if there is one that verifies."""
        try:
            version = current_version(self.root)
        except SnapshotError as exc:
            log.error("%s", exc)
            return False
        if version is None or version == self.matcher.version or version in self._refused:
            return False
        try:
            snapshot = read_snapshot_dir(self.root / version_dir_name(version))
        except SnapshotError as exc:
            self._refused.add(version)
            _refuse(version, exc)
            log.error("still serving snapshot version %d", self.matcher.version)
            return False
        self.matcher = self._install(snapshot)
        return True

    def watch(self, interval: float, stop: threading.Event) -> threading.Thread:
        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.refresh()
                except Exception:
                    log.exception(
                        "snapshot refresh failed; still serving version %d", self.matcher.version
                    )

        thread = threading.Thread(target=loop, name="snapshot-watch", daemon=True)
        thread.start()
        return thread
