"""Entries that match far more often than the rest of their list: a popular benign
image slipped onto a list (poisoning) looks exactly like this.

Matches are counted per entry over a tumbling window. An entry with at least
`min_matches` in a window, and at least `factor` times the mean of the other
matched entries of its list, is flagged for review (store, audit log, metric);
if its list's policy says so it is quarantined: it stops matching until a list
manager confirms it. Entries quarantined on platforms' feedback (service.feedback)
share the same flags and the same review.

Every process and replica sharing the store polls the store's flag version every
FLAGS_POLL_SECONDS and reloads the flags when it changed, so a quarantine (or its
release) is in effect everywhere within a second of its commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable

from indexer.store import Store
from service import metrics
from service.audit import AuditLog
from service.matcher import Hit

log = logging.getLogger(__name__)

FLAGS_POLL_SECONDS = 0.2


class AnomalyWatch:
    def __init__(
        self,
        store: Store | None,
        audit: AuditLog,
        *,
        window: float = 600.0,
        min_matches: int = 100,
        factor: float = 20.0,
        interval: float = 2.0,
    ) -> None:
        self._store = store
        self._audit = audit
        self._window = window
        self._min_matches = min_matches
        self._factor = factor
        self._interval = interval
        self._counts: Counter[tuple[str, str]] = Counter()
        self._flagged: set[str] = set()
        self._window_started = time.monotonic()
        self._lock = threading.Lock()
        self.quarantined: frozenset[str] = frozenset()  # match ids, hex
        if store is not None:
            self.load()

    def load(self) -> None:
        assert self._store is not None
        flags = self._store.entry_flags()
        self.quarantined = frozenset(f.match_id.hex() for f in flags if f.state == "quarantined")
        confirmed = {f.match_id.hex() for f in flags if f.state == "confirmed"}
        with self._lock:
            self._flagged |= confirmed

    def count(self, hits: Iterable[Hit]) -> None:
        with self._lock:
            self._counts.update((h.list, h.match_id) for h in hits)

    def confirm(self, match_id: bytes) -> None:
        self.quarantined = self.quarantined - {match_id.hex()}

    def quarantine(self, match_id: bytes) -> None:
        """In effect in this process at once; the others follow the flag version."""
        self.quarantined = self.quarantined | {match_id.hex()}

    def evaluate(self) -> None:
        with self._lock:
            # A copy: count() goes on adding while the counts are weighed below, and a
            # Counter iterated as it grows raises, every time under load.
            counts = self._counts.copy()
            if time.monotonic() - self._window_started >= self._window:
                self._counts, self._window_started = Counter(), time.monotonic()
                self._flagged = {m for m in self._flagged if m in self.quarantined}
        by_list: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for (list_name, match_id), n in counts.items():
            by_list[list_name].append((match_id, n))
        for list_name, entries in by_list.items():
            total = sum(n for _, n in entries)
            for match_id, n in entries:
                others = len(entries) - 1
                norm = (total - n) / others if others else 0.0
                if n >= self._min_matches and n >= self._factor * norm:
                    self._flag(list_name, match_id, n, norm)

    def _flag(self, list_name: str, match_id: str, n: int, norm: float) -> None:
        if match_id in self._flagged or self._store is None:
            return
        self._flagged.add(match_id)
        flag = self._store.flag_entry(bytes.fromhex(match_id), n)
        if flag is None or flag.state == "confirmed":
            return
        metrics.FLAGGED.labels(list_name, flag.state).inc()
        self._audit.record(
            "hashmatch",
            f"entry_{flag.state}",
            list_name,
            match_id=match_id,
            matches=n,
            list_norm=round(norm, 2),
        )
        log.warning(
            "entry %s of list %s %s: %d matches against a list norm of %.1f",
            match_id,
            list_name,
            flag.state,
            n,
            norm,
        )
        if flag.state == "quarantined":
            self.quarantined = self.quarantined | {match_id}

    def start(self, stop: threading.Event) -> None:
        if self._store is None:
            return

        def loop() -> None:
            while not stop.wait(self._interval):
                try:
                    self.evaluate()
                    self.load()
                except Exception:
                    log.exception("match anomaly check failed")

        threading.Thread(target=loop, name="anomaly-watch", daemon=True).start()
        threading.Thread(target=self._follow, args=(stop,), name="flags", daemon=True).start()

    def _follow(self, stop: threading.Event) -> None:
        """Reload the flags whenever the store's flag version moves (read before the load,
        so a change committed during a load is caught by the next poll)."""
        assert self._store is not None
        seen: int | None = None
        failing = False
        while not stop.wait(FLAGS_POLL_SECONDS):
            try:
                version = self._store.flags_version()
                if version != seen:
                    self.load()
                    seen = version
            except Exception:
                if not failing:
                    log.exception("following the entry flags failed; will retry")
                failing = True
                continue
            failing = False
