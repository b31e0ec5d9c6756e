"""Following the store's change log, so that the matcher reflects a change within a poll
interval of its commit; and compacting the delta into a new snapshot when it grows."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from indexer.store import Store, StoreUnavailable, store_url_env
from service import metrics
from service.snapshots import SnapshotHolder

log = logging.getLogger(__name__)

PAGE = 10_000


class NotInEffect(Exception):
    """A change was stored but the matcher did not reflect it in time; `metadata` goes to
    the caller with the error (a new case's receipt, so it can still be withdrawn)."""

    def __init__(self, message: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.metadata = metadata


class Compactor:
    """Runs `hashmatch index compact` in a child process when the delta is large or old.

    A child, not a thread: a rebuild of millions of entries then neither holds the
    server's GIL nor leaves its peak memory behind in the serving process.
    """

    def __init__(
        self, store_url: str, root: Path, holder: SnapshotHolder, at_size: int, after: float
    ) -> None:
        self._command = [
            sys.executable,
            "-m",
            "hashmatch",
            "index",
            "compact",
            "--out",
            str(root),
        ]
        self._env = store_url_env(store_url)
        self._holder = holder
        self._at_size = at_size
        self._after = after
        self._running: subprocess.Popen[str] | None = None
        self._started = 0.0

    def poll(self) -> None:
        if self._running is not None:
            if self._running.poll() is None:
                return
            output = self._running.stdout.read() if self._running.stdout else ""
            seconds = time.monotonic() - self._started
            if self._running.returncode == 0:
                metrics.COMPACTIONS.labels("ok").inc()
                log.info("compaction done in %.1fs: %s", seconds, output.strip())
                self._holder.refresh()
            else:
                metrics.COMPACTIONS.labels("failed").inc()
                log.error("compaction failed (exit %d): %s", self._running.returncode, output)
            self._running = None
            return
        delta = self._holder.delta
        oldest = delta.oldest_at
        if not delta.size or not (
            delta.size >= self._at_size
            or (oldest is not None and time.time() - oldest >= self._after)
        ):
            return
        log.info("compacting a delta of %d changes into a new snapshot", delta.size)
        self._started = time.monotonic()
        self._running = subprocess.Popen(
            self._command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self._env,
        )

    def stop(self) -> None:
        if self._running is not None and self._running.poll() is None:
            self._running.terminate()
            self._running.wait(30)


class ChangeFollower:
    def __init__(
        self,
        store: Store,
        holder: SnapshotHolder,
        interval: float,
        compactor: Compactor | None = None,
        learn: Callable[[Iterable[str]], None] | None = None,
    ) -> None:
        self._store = store
        self._learn = learn  # told each batch's lists before it is applied
        self._holder = holder
        self._interval = interval
        self._compactor = compactor
        self._wake = threading.Event()
        self._applied = threading.Condition()
        self.read_at = time.monotonic()  # the last change log read that was applied
        self.store_up = True
        metrics.STORE_UP.set(1)
        metrics.CHANGE_LOG_READ_AGE.set_function(self.read_age)

    def read_age(self) -> float:
        """Seconds since the change log was last read and applied: grows while the store
        is unreachable or the follower is stuck."""
        return time.monotonic() - self.read_at

    def poke(self) -> None:
        """Read the change log now rather than at the next interval."""
        self._wake.set()

    def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait until the matcher reflects change `seq`; False on timeout."""
        self.poke()
        with self._applied:
            return self._applied.wait_for(lambda: self._holder.applied_seq >= seq, timeout)

    def follow_once(self) -> int:
        try:
            changes = self._store.changes(self._holder.applied_seq, PAGE)
            if self._learn is not None and changes:
                self._learn({c.list for c in changes})
        except StoreUnavailable:
            if self.store_up:
                log.warning("the store is unreachable: serving from memory until it is back")
            self.store_up = False
            metrics.STORE_UP.set(0)
            raise
        self._holder.apply(changes)
        self.read_at = time.monotonic()
        if not self.store_up:
            log.warning("the store is reachable again")
        self.store_up = True
        metrics.STORE_UP.set(1)
        with self._applied:
            self._applied.notify_all()
        return len(changes)

    def start(self, stop: threading.Event) -> threading.Thread:
        def loop() -> None:
            while not stop.is_set():
                try:
                    read = self.follow_once()
                    if self._compactor is not None:
                        self._compactor.poll()
                except StoreUnavailable:
                    read = 0  # logged once, when the store went away
                except Exception:
                    log.exception("reading the change log failed; retrying")
                    read = 0
                if read < PAGE:
                    self._wake.wait(self._interval)
                    self._wake.clear()
            if self._compactor is not None:
                self._compactor.stop()

        thread = threading.Thread(target=loop, name="change-follower", daemon=True)
        thread.start()
        return thread
