"""Probing defence: a checker that walks around one point of hash space (many queries a
few bits apart) is mapping the edge of a list entry's match radius. Such a key
is throttled and the audit log says so.

A random sample of each key's queries is compared with its recent queries of the
same signal (random, so that probes in any slot of a large call may be seen); a query
within an eighth of the bits of an earlier one, but not equal to any, counts as near.
(Equal queries are normal: a viral image is uploaded again and again.) When most
sampled queries are near, the key is throttled.

The robust probes of one image (orientations, trims, bands) lie 6-18 bits apart by
design, and a video's frames lie close too: a request that numbers its queries by
image (CheckRequest.images) has each image's probes of a signal taken as one question,
sampled by one random member, with all of them remembered. Without the numbers, each
query is an image of its own.
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hashmatch.video_entries import indexed_signal
from service import metrics
from service.audit import AuditLog
from service.auth import Caller, Gate
from service.queries import InvalidRequest, ParsedQuery

# Queries remembered per key and signal: room for the robust probes of about 60 images.
WINDOW = 2048
# Sampled queries whose nearness is weighed.
OBSERVED = 512
SAMPLE_PER_REQUEST = 16
# Probes of one signal that may share an image number: an image's robust probes are fewer.
MAX_QUERIES_PER_IMAGE = 64
_random = random.SystemRandom()


def image_groups(queries: Sequence[ParsedQuery], images: Sequence[int]) -> list[list[int]] | None:
    """The positions of each image's queries of one signal, from CheckRequest.images; None
    when the request does not number its queries."""
    if not images:
        return None
    if len(images) != len(queries):
        raise InvalidRequest(
            f"images: {len(images)} image numbers for {len(queries)} queries; give one per query"
        )
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, (q, image) in enumerate(zip(queries, images, strict=True)):
        members = groups[q.signal, image]
        members.append(i)
        if len(members) > MAX_QUERIES_PER_IMAGE:
            raise InvalidRequest(
                f"images: more than {MAX_QUERIES_PER_IMAGE} {q.signal} queries numbered as "
                f"image {image}"
            )
    return list(groups.values())


@dataclass
class _History:
    recent: npt.NDArray[np.uint8]
    filled: int = 0
    near: deque[bool] = field(default_factory=lambda: deque(maxlen=OBSERVED))


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

    def observe(
        self,
        caller: Caller,
        queries: Sequence[ParsedQuery],
        groups: Sequence[Sequence[int]] | None = None,
    ) -> None:
        """Sample the request: SAMPLE_PER_REQUEST of its images (`groups`, from
        image_groups), or of its queries when they are not numbered by image."""
        if caller.key_id is None:
            return
        if groups is None:
            n = min(len(queries), SAMPLE_PER_REQUEST)
            picked: list[Sequence[int]] = [(i,) for i in _random.sample(range(len(queries)), n)]
        else:
            picked = _random.sample(list(groups), min(len(groups), SAMPLE_PER_REQUEST))
        for members in picked:
            signal = queries[members[0]].signal
            if indexed_signal(signal).exact:
                continue
            self._observe(caller, signal, queries, members)

    def _observe(
        self, caller: Caller, signal: str, queries: Sequence[ParsedQuery], members: Sequence[int]
    ) -> None:
        bits, nbytes = indexed_signal(signal).bits, indexed_signal(signal).nbytes
        # Parsing refuses a hash of the wrong length; a key's history must never be sized
        # by one, whatever reaches here.
        members = [i for i in members if len(queries[i].hash) == nbytes]
        if not members:
            return
        query = np.frombuffer(queries[_random.choice(members)].hash, np.uint8)
        with self._lock:
            h = self._history.get((caller.actor, signal))
            if h is None:
                h = self._history[caller.actor, signal] = _History(
                    np.zeros((WINDOW, nbytes), np.uint8)
                )
            if h.filled:
                seen = h.recent[: min(h.filled, WINDOW)]
                if seen.shape[1] % 8 == 0:  # 64-bit words: an eighth of the operations
                    seen, query = seen.view(np.uint64), query.view(np.uint64)
                d = np.bitwise_count(seen ^ query).sum(axis=1, dtype=np.int32)
                h.near.append(bool((d <= bits // 8).any() and not (d == 0).any()))
            # A video's frames are one question too, but a long one must not flush the
            # window: at most an image's worth of them is remembered.
            if len(members) > MAX_QUERIES_PER_IMAGE:
                members = _random.sample(list(members), MAX_QUERIES_PER_IMAGE)
            for i in members:
                h.recent[h.filled % WINDOW] = np.frombuffer(queries[i].hash, np.uint8)
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
                signal=signal,
                throttled_to=self._throttle_rate,
                seconds=self._throttle_seconds,
            )
