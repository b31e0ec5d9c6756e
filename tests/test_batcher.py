"""The batcher: concurrent calls share engine batches; every caller gets its own answers."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import cast

import pytest

from service.batcher import DIRECT, PIECE, Batcher, DeadlineExceeded, Overloaded
from service.matcher import Hit, Matcher
from service.queries import ParsedQuery


class EchoMatcher:
    """Answers each query with a hit whose distance is the query's first hash byte."""

    def __init__(self, version: int = 1) -> None:
        self.version = version
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def check(self, queries: Sequence[ParsedQuery]) -> list[list[Hit]]:
        self.entered.set()
        self.gate.wait(5)
        self.batches.append(len(queries))
        if any(q.hash == b"boom" for q in queries):
            raise RuntimeError("engine failure")
        return [[Hit("l", "id", q.hash[0])] for q in queries]


def q(i: int) -> ParsedQuery:
    return ParsedQuery("pdq", bytes([i % 256]) * 32, 31)


def test_idle_single_queries_are_searched_directly() -> None:
    matcher = EchoMatcher()
    matcher.gate.set()
    batcher = Batcher(lambda: cast(Matcher, matcher), workers=2)
    assert batcher.check([q(9)]) == (1, [[Hit("l", "id", 9)]])
    assert matcher.batches == [1]
    batcher.close()


def test_concurrent_single_queries_share_batches() -> None:
    matcher = EchoMatcher()
    batcher = Batcher(lambda: cast(Matcher, matcher), workers=2)
    answers: dict[int, int] = {}

    def call(i: int) -> None:
        version, found = batcher.check([q(i)])
        assert version == 1
        answers[i] = found[0][0].distance

    threads = [threading.Thread(target=call, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    matcher.gate.set()
    for t in threads:
        t.join(10)
    batcher.close()
    assert answers == {i: i % 256 for i in range(200)}
    assert max(matcher.batches) > 1, "queries from different calls ran as one batch"
    assert sum(matcher.batches) == 200


def test_a_large_request_is_split_and_keeps_its_order() -> None:
    matcher = EchoMatcher()
    matcher.gate.set()
    batcher = Batcher(lambda: cast(Matcher, matcher), workers=2)
    queries = [q(i) for i in range(PIECE * 5 + 3)]
    _, found = batcher.check(queries)
    batcher.close()
    assert [hits[0].distance for hits in found] == [i % 256 for i in range(len(queries))]


def test_a_lone_large_request_is_spread_over_the_workers() -> None:
    class ThreadRecorder(EchoMatcher):
        def __init__(self) -> None:
            super().__init__()
            self.threads: set[str] = set()
            self.both = threading.Event()

        def check(self, queries: Sequence[ParsedQuery]) -> list[list[Hit]]:
            self.threads.add(threading.current_thread().name)
            if len(self.threads) == 2:
                self.both.set()
            return super().check(queries)

    matcher = ThreadRecorder()
    batcher = Batcher(lambda: cast(Matcher, matcher), workers=2)
    done = threading.Thread(target=batcher.check, args=([q(i) for i in range(PIECE * 4)],))
    done.start()
    # Both workers search pieces of the one request at the same time.
    assert matcher.both.wait(5), matcher.threads
    matcher.gate.set()
    done.join(10)
    batcher.close()
    assert sum(matcher.batches) == PIECE * 4 and max(matcher.batches) <= PIECE * 2


def test_pinned_workers_keep_to_a_cpu_each() -> None:
    """By default one worker per CPU the process may use, each held to its own when pinned;
    unpinned workers may run on any of them."""

    class CpuRecorder(EchoMatcher):
        def __init__(self) -> None:
            super().__init__()
            self.seen: dict[str, set[int]] = {}

        def check(self, queries: Sequence[ParsedQuery]) -> list[list[Hit]]:
            self.seen[threading.current_thread().name] = os.sched_getaffinity(0)
            return super().check(queries)

    allowed = sorted(os.sched_getaffinity(0))
    matcher = CpuRecorder()
    matcher.gate.set()
    pinned = Batcher(lambda: cast(Matcher, matcher), pin=True)
    free = Batcher(lambda: cast(Matcher, matcher), workers=2)
    try:
        assert pinned.cpus == [{cpu} for cpu in allowed]
        assert free.cpus == [set(allowed)] * 2
        _, found = pinned.check([q(i) for i in range(PIECE * 8)])
        assert [hits[0].distance for hits in found] == [i % 256 for i in range(PIECE * 8)]
        assert all(len(cpus) == 1 for cpus in matcher.seen.values()), matcher.seen
    finally:
        pinned.close()
        free.close()


def test_without_cpu_affinity_calls_workers_run_unpinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the OS has no affinity calls (macOS), one worker per CPU, none pinned."""
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.delattr(os, "sched_setaffinity")
    matcher = EchoMatcher()
    matcher.gate.set()
    batcher = Batcher(lambda: cast(Matcher, matcher), pin=True)
    try:
        everyone = set(range(os.cpu_count() or 1))
        assert batcher.cpus == [everyone] * len(everyone)
        assert len(batcher.check([q(i) for i in range(PIECE * 2)])[1]) == PIECE * 2
    finally:
        batcher.close()


def test_a_large_requests_pieces_run_without_the_next_requests() -> None:
    """Pieces of a large request are not glued to pieces of the request queued after it,
    whose search would delay the first request's answer; small requests still share."""
    matcher = EchoMatcher()
    batcher = Batcher(lambda: cast(Matcher, matcher), workers=1)
    first = threading.Thread(target=batcher.check, args=([q(i) for i in range(PIECE + 100)],))
    first.start()
    assert matcher.entered.wait(5)  # the worker holds the first piece; the rest queue
    calls = [threading.Thread(target=batcher.check, args=([q(i)] * 20,)) for i in range(8)]
    for t in calls:
        t.start()
    while batcher.queued < (PIECE + 100) // 2 + 8 * 20:
        threading.Event().wait(0.01)
    matcher.gate.set()
    for t in (first, *calls):
        t.join(10)
    batcher.close()
    assert matcher.batches[:2] == [(PIECE + 100) // 2] * 2
    assert max(matcher.batches[2:]) > 20, "small requests ran one by one"


def test_an_empty_request_is_answered_even_while_workers_are_busy() -> None:
    matcher = EchoMatcher()
    batcher = Batcher(lambda: cast(Matcher, matcher), workers=1)
    busy = threading.Thread(target=batcher.check, args=([q(i) for i in range(100)],))
    busy.start()
    assert matcher.entered.wait(5)
    assert batcher.check([]) == (1, [])
    matcher.gate.set()
    busy.join(10)
    batcher.close()


def test_engine_errors_reach_the_caller_and_the_workers_survive() -> None:
    matcher = EchoMatcher()
    matcher.gate.set()
    batcher = Batcher(lambda: cast(Matcher, matcher), workers=1)
    with pytest.raises(RuntimeError, match="engine failure"):
        batcher.check([ParsedQuery("pdq", b"boom", 31)])
    assert batcher.check([q(7)])[1][0][0].distance == 7
    batcher.close()


def test_a_full_queue_refuses_at_once_and_recovers() -> None:
    matcher = EchoMatcher()
    batcher = Batcher(lambda: cast(Matcher, matcher), workers=1, max_queued=300)
    busy = threading.Thread(target=batcher.check, args=([q(0)] * (DIRECT + 1),))
    busy.start()
    assert matcher.entered.wait(5), "the worker is searching q(0), held at the gate"
    waiting = threading.Thread(target=batcher.check, args=([q(i) for i in range(200)],))
    waiting.start()
    while batcher.queued < 200:
        threading.Event().wait(0.01)
    with pytest.raises(Overloaded, match="200 queries waiting \\(limit 300\\)"):
        batcher.check([q(i) for i in range(101)])
    matcher.gate.set()
    busy.join(5)
    waiting.join(5)
    assert batcher.queued == 0
    # An idle server takes a request larger than the whole queue.
    assert len(batcher.check([q(i) for i in range(1000)])[1]) == 1000
    batcher.close()


def test_expired_work_is_dropped_unsearched() -> None:
    matcher = EchoMatcher()
    batcher = Batcher(lambda: cast(Matcher, matcher), workers=1)
    busy = threading.Thread(target=batcher.check, args=([q(1)] * (DIRECT + 1),))
    busy.start()
    assert matcher.entered.wait(5), "the worker is searching q(1), held at the gate"
    with pytest.raises(DeadlineExceeded):
        batcher.check([q(2)] * (DIRECT + 1), timeout=0.05)
    matcher.gate.set()
    busy.join(5)
    assert batcher.check([q(3)])[1][0][0].distance == 3
    assert matcher.batches == [DIRECT + 1, 1], "q(2) expired queued and was never searched"
    batcher.close()
