"""Gathering queries from concurrent RPCs into engine batches.

A single-hash Check costs one kernel call on its own; a thousand concurrent
ones cost a handful when batched. One worker per core takes the pieces waiting,
up to GATHER queries or its fair share, and runs them as one engine batch; the
engine releases the GIL, so the workers search in parallel. A large request is
cut into pieces so that it, too, is spread over the cores, and its pieces run
on their own: its last piece never waits for a piece of the next request.

The queue is bounded: past `max_queued` waiting queries a call is refused at
once (Overloaded) rather than left to wait without bound, and work whose
caller's deadline has passed is dropped unsearched.

With `pin`, worker i runs only on the i-th CPU the process may use. Left to the
scheduler, the workers woken for a batch that arrives after the cores idled may
both land on one CPU and search one after the other (load_tests/experiments/worker_pinning.py).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from service.matcher import Checker, Hit
from service.queries import ParsedQuery

PIECE = 256
# Enough queries to amortise a kernel call; the pieces of large requests are longer and
# run alone. Taking up to 4,096 instead made a request's last piece wait for pieces of
# the next one (load_tests/experiments/gather_limit.py).
GATHER = 128
DEFAULT_MAX_QUEUED = 20_000
# Requests this small are searched in the caller's thread when nothing is queued.
DIRECT = 16


def _allowed_cpus() -> list[int]:
    """The CPUs this process may run on; all of them where the OS does not say (macOS)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


class Overloaded(Exception):
    """More queries are waiting than the server is configured to hold."""


class DeadlineExceeded(Exception):
    """The caller's deadline passed before its queries were searched."""


@dataclass
class _Job:
    matcher: Checker
    results: list[list[Hit]]
    pending: int
    deadline: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def finish_piece(self, error: BaseException | None = None) -> None:
        with self.lock:
            if error is not None and self.error is None:
                self.error = error
            self.pending -= 1
            if self.pending == 0:
                self.done.set()


@dataclass(frozen=True)
class _Piece:
    job: _Job
    start: int
    queries: Sequence[ParsedQuery]


class Batcher:
    def __init__(
        self,
        current: Callable[[], Checker],
        workers: int | None = None,
        max_queued: int = DEFAULT_MAX_QUEUED,
        gather: int = GATHER,
        pin: bool = False,
    ) -> None:
        self._current = current
        self.max_queued = max_queued
        self._gather = gather
        self._queued = 0
        self._direct = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Piece | None] = queue.SimpleQueue()
        allowed = _allowed_cpus()
        self._threads = [
            threading.Thread(target=self._work, name=f"engine-{i}", daemon=True)
            for i in range(workers or len(allowed))
        ]
        for i, t in enumerate(self._threads):
            t.start()
            if pin and hasattr(os, "sched_setaffinity") and t.native_id is not None:
                os.sched_setaffinity(t.native_id, {allowed[i % len(allowed)]})

    @property
    def cpus(self) -> list[set[int]]:
        """The CPUs each worker may run on."""
        if not hasattr(os, "sched_getaffinity"):
            return [set(_allowed_cpus()) for _ in self._threads]
        return [os.sched_getaffinity(t.native_id or 0) for t in self._threads]

    @property
    def queued(self) -> int:
        """Queries waiting for a worker."""
        return self._queued

    @property
    def idle(self) -> bool:
        """Whether a request of up to DIRECT queries would now be searched in the calling
        thread, without waiting for a worker (a moment later another caller may have
        taken the last slot: then it waits for one batch)."""
        return not self._queued and self._direct < len(self._threads)

    def check(
        self, queries: Sequence[ParsedQuery], timeout: float | None = None
    ) -> tuple[int, list[list[Hit]]]:
        """Hits per query, all from the snapshot in service when the call arrived.

        Raises Overloaded when the queue is full (a request larger than the
        whole queue is still taken when nothing else waits), DeadlineExceeded
        when `timeout` seconds pass first.
        """
        if not queries:
            return self._current().version, []
        if len(queries) <= DIRECT:
            with self._lock:
                direct = not self._queued and self._direct < len(self._threads)
                self._direct += direct
            if direct:
                # Idle cores and nothing to batch with: search in this thread, saving
                # two thread hand-offs. Under load, small requests are batched.
                try:
                    matcher = self._current()
                    return matcher.version, matcher.check(queries)
                finally:
                    with self._lock:
                        self._direct -= 1
        with self._lock:
            if self._queued and self._queued + len(queries) > self.max_queued:
                raise Overloaded(
                    f"server overloaded: {self._queued} queries waiting "
                    f"(limit {self.max_queued}); retry with backoff"
                )
            self._queued += len(queries)
        matcher = self._current()
        # Near-equal pieces of at most PIECE: a request of 1,000 is four of 250, not three of
        # 256 and one of 232, and no piece of a request longer than PIECE is below GATHER.
        pieces = -(-len(queries) // PIECE)
        step = -(-len(queries) // pieces)
        starts = range(0, len(queries), step)
        deadline = None if timeout is None else time.monotonic() + timeout
        job = _Job(matcher, [[] for _ in queries], pending=len(starts), deadline=deadline)
        for start in starts:
            self._queue.put(_Piece(job, start, queries[start : start + step]))
        if not job.done.wait(timeout):
            raise DeadlineExceeded(f"deadline of {timeout:.3f}s passed while queued")
        if job.error is not None:
            raise job.error
        return matcher.version, job.results

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(5)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            size = len(first.queries)
            # A fair share of what waits, so that one large request is spread over the idle
            # workers rather than taken whole by the first.
            share = min(self._gather, -(-self._queued // len(self._threads)))
            while size < share:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
                size += len(more.queries)
            with self._lock:
                self._queued -= size
            now = time.monotonic()
            by_matcher: dict[int, list[_Piece]] = {}
            for piece in batch:
                if piece.job.deadline is not None and now > piece.job.deadline:
                    piece.job.finish_piece(DeadlineExceeded("deadline passed while queued"))
                    continue
                by_matcher.setdefault(id(piece.job.matcher), []).append(piece)
            for pieces in by_matcher.values():
                self._run(pieces)

    @staticmethod
    def _run(pieces: list[_Piece]) -> None:
        try:
            found = pieces[0].job.matcher.check([q for p in pieces for q in p.queries])
        except BaseException as exc:
            for p in pieces:
                p.job.finish_piece(exc)
            return
        at = 0
        for p in pieces:
            p.job.results[p.start : p.start + len(p.queries)] = found[at : at + len(p.queries)]
            at += len(p.queries)
            p.job.finish_piece()
