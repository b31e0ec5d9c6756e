"""The audit log: who submitted, withdrew, changed a list, used a key, or matched which
entry, and when. Events are queued and appended to the store in batches by one
thread, so recording one costs a request next to nothing; what a checker sent
is recorded only as the hash itself.

Nothing recorded is dropped. A full queue holds the recording request back
until the writer catches up (back-pressure); one that stays full for
`max_wait` seconds fails the request as overloaded rather than answer it
unaudited. `close()` runs after the server has drained its in-flight RPCs and
writes everything still queued; an event recorded after that is written at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from indexer.store import AuditEvent, Store
from service import metrics
from service.batcher import Overloaded

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
MAX_QUEUED = 100_000
MAX_WAIT_SECONDS = 30.0
BATCH = 10_000
KEY_USE_EVERY = 60.0


class AuditLog:
    def __init__(
        self,
        store: Store | None,
        max_queued: int | None = None,
        max_wait: float | None = None,
    ) -> None:
        self._store = store
        self._queue: queue.Queue[AuditEvent] = queue.Queue(max_queued or MAX_QUEUED)
        self._max_wait = MAX_WAIT_SECONDS if max_wait is None else max_wait
        self._key_use: dict[str, tuple[float, int]] = {}  # actor → (last written, calls since)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._unwritten: list[AuditEvent] = []
        self._stopping = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def record(self, actor: str, action: str, list_name: str | None = None, **detail: Any) -> None:
        """Queue an event, waiting while the queue is full; Overloaded if it stays full."""
        if self._store is None:
            return
        event = AuditEvent(actor, action, list_name, detail, time.time())
        if self._closed:
            self._store.append_audit([event])
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            metrics.AUDIT_WAITS.inc()
            try:
                self._queue.put(event, timeout=self._max_wait)
            except queue.Full:
                metrics.AUDIT_REFUSED.inc()
                log.error("audit log full: refused %s by %s", action, actor)
                raise Overloaded("the audit log is behind; retry shortly") from None
        if self._closed:  # closed while this waited: nobody else will drain the queue
            self._drain()

    @property
    def backed_up(self) -> bool:
        """Whether recording an event now may have to wait for the writer."""
        return self._store is not None and self._queue.qsize() >= self._queue.maxsize // 2

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

    def flush(self) -> int:
        """Append up to a batch of what is queued, returning how many events were written;
        a batch the store refused is kept and tried again first."""
        assert self._store is not None
        with self._flush_lock:
            events = self._unwritten
            while len(events) < BATCH:
                try:
                    events.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if events:
                self._store.append_audit(events)
                self._unwritten = []
            return len(events)

    def _drain(self) -> None:
        while self.flush():
            pass

    def write_queued(self) -> None:
        """Write what is queued now, rather than within FLUSH_SECONDS: for a caller that
        must read back what it was just answered (feedback on a match)."""
        if self._store is not None:
            self._drain()

    @property
    def backlog(self) -> int:
        return self._queue.qsize() + len(self._unwritten)

    def start(self) -> None:
        """Write queued events in the background until `close()`."""
        if self._store is None or self._thread is not None:
            return

        def loop() -> None:
            while not self._stopping.is_set():
                try:
                    self.flush()
                except Exception:
                    log.exception("writing the audit log failed; will retry")
                    self._stopping.wait(FLUSH_SECONDS)
                    continue
                if not self.backlog:
                    self._stopping.wait(FLUSH_SECONDS)

        self._thread = threading.Thread(target=loop, name="audit", daemon=True)
        self._thread.start()

    def close(self, timeout: float = MAX_WAIT_SECONDS) -> None:
        """Write everything queued; call it after the server has drained its RPCs."""
        if self._store is None:
            return
        self._closed = True
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._drain()
                return
            except Exception:
                if time.monotonic() > deadline:
                    log.exception("%d audit events could not be written", self.backlog)
                    return
                log.exception("writing the audit log failed; will retry")
                time.sleep(FLUSH_SECONDS)
