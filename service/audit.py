"""The audit log: who submitted, withdrew, changed a list, used a key, or matched which
entry, and when. Events are queued and appended to the store in batches by one
thread, so recording one costs a request next to nothing; what a checker sent
is recorded only as the hash itself."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from indexer.store import AuditEvent, Store
from service import metrics

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
MAX_QUEUED = 100_000
KEY_USE_EVERY = 60.0


class AuditLog:
    def __init__(self, store: Store | None) -> None:
        self._store = store
        self._queue: queue.Queue[AuditEvent] = queue.Queue(MAX_QUEUED)
        self._key_use: dict[str, tuple[float, int]] = {}  # actor → (last written, calls since)
        self._lock = threading.Lock()
        self._unwritten: list[AuditEvent] = []

    def record(self, actor: str, action: str, list_name: str | None = None, **detail: Any) -> None:
        if self._store is None:
            return
        try:
            self._queue.put_nowait(AuditEvent(actor, action, list_name, detail, time.time()))
        except queue.Full:
            metrics.AUDIT_DROPPED.inc()

    def key_used(self, actor: str, method: str) -> None:
        """A key's use, written at most once a minute per key with the calls in between."""
        now = time.monotonic()
        with self._lock:
            last, calls = self._key_use.get(actor, (-KEY_USE_EVERY, 0))
            if now - last < KEY_USE_EVERY:
                self._key_use[actor] = (last, calls + 1)
                return
            self._key_use[actor] = (now, 0)
        self.record(actor, "key_use", None, method=method, calls_since_last=calls)

    def flush(self) -> None:
        """Append what is queued; a batch the store refused is kept and tried again first."""
        assert self._store is not None
        events = self._unwritten
        while len(events) < 10_000:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if events:
            self._store.append_audit(events)
            self._unwritten = []

    def start(self, stop: threading.Event) -> None:
        if self._store is None:
            return

        def loop() -> None:
            while not stop.wait(FLUSH_SECONDS):
                try:
                    self.flush()
                except Exception:
                    log.exception("writing the audit log failed; will retry")
            self.flush()

        threading.Thread(target=loop, name="audit", daemon=True).start()
