"""Gathering queries from concurrent RPCs into engine batches.

A single-hash Check costs one kernel call on its own; a thousand concurrent
ones cost a handful when batched. One worker per core takes every piece that
is waiting (up to a batch limit) and runs it as one engine batch; the engine
releases the GIL, so the workers search in parallel. A large request is cut
into pieces so that it, too, is spread over the cores.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from service.matcher import Hit, Matcher
from service.queries import ParsedQuery

PIECE = 256
MAX_BATCH = 4096


@dataclass
class _Job:
    matcher: Matcher
    results: list[list[Hit]]
    pending: int
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
    def __init__(self, current: Callable[[], Matcher], workers: int | None = None) -> None:
        self._current = current
        self._queue: queue.SimpleQueue[_Piece | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"engine-{i}", daemon=True)
            for i in range(workers or os.cpu_count() or 1)
        ]
        for t in self._threads:
            t.start()

    def check(self, queries: Sequence[ParsedQuery]) -> tuple[int, list[list[Hit]]]:
        """Hits per query, all from the snapshot in service when the call arrived."""
        matcher = self._current()
        starts = range(0, len(queries), PIECE)
        job = _Job(matcher, [[] for _ in queries], pending=len(starts))
        for start in starts:
            self._queue.put(_Piece(job, start, queries[start : start + PIECE]))
        job.done.wait()
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
            while size < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
                size += len(more.queries)
            by_matcher: dict[int, list[_Piece]] = {}
            for piece in batch:
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
