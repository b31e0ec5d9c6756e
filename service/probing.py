"""Probing defence: a checker that walks around one point of hash space (many queries a
few bits apart) is mapping the edge of a list entry's match radius. Such a key
is throttled and the audit log says so.

A sample of each key's queries is compared with its recent queries of the same
signal; a query within an eighth of the bits of an earlier one, but not equal
to it, counts as near. (Equal queries are normal: a viral image is uploaded
again and again.) When most sampled queries are near, the key is throttled.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hashmatch.signals import SIGNALS
from service import metrics
from service.audit import AuditLog
from service.auth import Caller, Gate
from service.queries import ParsedQuery

WINDOW = 512
SAMPLE_PER_REQUEST = 16


@dataclass
class _History:
    recent: npt.NDArray[np.uint8]
    filled: int = 0
    near: deque[bool] = field(default_factory=lambda: deque(maxlen=WINDOW))


class ProbeWatch:
    def __init__(
        self,
        gate: Gate,
        audit: AuditLog,
        *,
        near_fraction: float = 0.5,
        min_sampled: int = 200,
        throttle_rate: float = 10.0,
        throttle_seconds: float = 600.0,
    ) -> None:
        self._gate = gate
        self._audit = audit
        self._near_fraction = near_fraction
        self._min_sampled = min_sampled
        self._throttle_rate = throttle_rate
        self._throttle_seconds = throttle_seconds
        self._history: dict[tuple[str, str], _History] = {}
        self._lock = threading.Lock()

    def observe(self, caller: Caller, queries: Sequence[ParsedQuery]) -> None:
        if caller.key_id is None:
            return
        step = max(1, len(queries) // SAMPLE_PER_REQUEST)
        for q in queries[::step][:SAMPLE_PER_REQUEST]:
            if SIGNALS[q.signal].exact:
                continue
            self._observe(caller, q)

    def _observe(self, caller: Caller, q: ParsedQuery) -> None:
        bits, nbytes = SIGNALS[q.signal].bits, SIGNALS[q.signal].nbytes
        if len(q.hash) != nbytes:
            return  # parsing refuses these; a key's history must never be sized by one
        query = np.frombuffer(q.hash, np.uint8)
        with self._lock:
            h = self._history.get((caller.actor, q.signal))
            if h is None:
                h = self._history[caller.actor, q.signal] = _History(
                    np.zeros((WINDOW, nbytes), np.uint8)
                )
            if h.filled:
                seen = h.recent[: min(h.filled, WINDOW)]
                d = np.bitwise_count(seen ^ query).sum(axis=1, dtype=np.int32)
                h.near.append(bool(((d > 0) & (d <= bits // 8)).any()))
            h.recent[h.filled % WINDOW] = query
            h.filled += 1
            probing = len(h.near) >= self._min_sampled and sum(h.near) >= self._near_fraction * len(
                h.near
            )
            if probing:
                h.near.clear()
        if probing:
            self._gate.throttle(caller, self._throttle_rate, self._throttle_seconds)
            metrics.PROBING.inc()
            self._audit.record(
                caller.actor,
                "probing_suspected",
                None,
                signal=q.signal,
                throttled_to=self._throttle_rate,
                seconds=self._throttle_seconds,
            )
