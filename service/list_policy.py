"""Each list's policy as checks apply it: its own maximum distance per signal, and
whether it is a negative list (hashes that must never produce a match for its tenant, or
for everyone) rather than one that matches.

Negative entries sit in the same snapshot and delta as every other entry, so the one
engine pass that finds a query's matches finds them too; what a hit means is decided
here, per caller. The policies are reloaded from the store every second and at once
after a change made through this process; a hit on a list they do not know yet reloads
them, and a list still unknown is not shown (a negative list must never answer as a
match list, even in the moment after it was created)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from hashmatch.signals import SIGNALS
from indexer.store import ListPolicy, Store, StoreUnavailable
from service.queries import ParsedQuery

log = logging.getLogger(__name__)

RELOAD_SECONDS = 1.0
# A hit on an unknown list reloads the policies at most this often: hits are cheap to
# cause, store reads are not.
UNKNOWN_RELOAD_SECONDS = 0.1
THRESHOLDS = {name: s.threshold for name, s in SIGNALS.items()}


class Policies:
    """An immutable view of every list's policy, in the shapes a check looks up per hit;
    `complete` is False without a store, where every list is a match list at its signals'
    thresholds."""

    __slots__ = ("complete", "global_negative", "lists", "negative", "reach", "tenants")

    def __init__(self, lists: dict[str, ListPolicy] | None = None, complete: bool = False) -> None:
        self.lists = lists or {}
        self.complete = complete
        # Negative list → its tenant (None: every tenant's).
        self.negative = {n: p.tenant for n, p in self.lists.items() if p.kind == "negative"}
        self.tenants = frozenset(t for t in self.negative.values() if t is not None)
        self.global_negative = None in self.negative.values()
        # (list, signal) → the list's own maximum distance, where it has one.
        self.reach = {(n, s): d for n, p in self.lists.items() for s, d in p.max_distances.items()}

    def negative_for(self, tenant: str | None) -> bool:
        """Whether any negative list applies to the tenant's checks."""
        return self.global_negative or (tenant is not None and tenant in self.tenants)


def widened(queries: list[ParsedQuery]) -> list[ParsedQuery]:
    """The queries to search where negative lists apply: each at its signal's threshold,
    since a query's max_distance narrows its matches, not a negative list's reach."""
    if all(q.max_distance == THRESHOLDS[q.signal] for q in queries):
        return queries
    return [q._replace(max_distance=THRESHOLDS[q.signal]) for q in queries]


class PolicyWatch:
    """The current Policies, kept in step with the store."""

    def __init__(self, store: Store | None) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._loaded_at = 0.0
        self.current = Policies()
        if store is not None:
            self.reload()

    def reload(self) -> Policies:
        if self._store is None:
            return self.current
        with self._lock:
            self._loaded_at = time.monotonic()
            self.current = Policies({p.name: p for p in self._store.list_policies()}, True)
            return self.current

    def changed(self) -> None:
        """A list's policy was just changed through this process: in effect at once, or,
        if the store can't be read right now, within the periodic reload."""
        try:
            self.reload()
        except StoreUnavailable:
            log.warning("list policies not reloaded: the store is unreachable")

    def learn(self, lists: Iterable[str]) -> None:
        """Know every list in `lists` before their entries can match: the follower calls
        this before it applies changes, while the store it just read is reachable, so a
        list created a moment before an outage is known during it. StoreUnavailable if
        the store can't be read (the follower then applies nothing and retries)."""
        if self._store is None:
            return
        known = self.current.lists
        if any(name not in known for name in lists):
            self.reload()

    def refresh_for_unknown(self) -> Policies:
        """Reload for a list the current policies do not know, at most every
        UNKNOWN_RELOAD_SECONDS; the policies as they then are."""
        if self._store is None or time.monotonic() - self._loaded_at < UNKNOWN_RELOAD_SECONDS:
            return self.current
        try:
            return self.reload()
        except StoreUnavailable:
            return self.current

    def start(self, stop: threading.Event) -> None:
        if self._store is None:
            return

        def loop() -> None:
            while not stop.wait(RELOAD_SECONDS):
                try:
                    self.reload()
                except StoreUnavailable:
                    pass  # the last policies stay in use; the follower logs the outage
                except Exception:
                    log.exception("reloading list policies failed; keeping the last set")

        threading.Thread(target=loop, name="list-policies", daemon=True).start()
