"""What the HTTP routes share with the gRPC server: the batcher in front of the engine,
the guards (keys, limits, audit), the snapshot holder and, with a store, the feed."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from starlette.requests import Request

from indexer.store import CASE_LIST, Store
from service.auth import Caller, PermissionDenied, address_bucket
from service.batcher import Batcher
from service.feedback import FeedbackServicer
from service.guards import Guards
from service.list_policy import Policies
from service.server import Feed
from service.snapshots import SnapshotHolder
from service.submission import SubmissionServicer

# Content ids never change for an entry, so a hit's id is read from the store once; the
# matcher, not this cache, says whether the entry still matches.
CONTENT_ID_CACHE = 200_000
CALLERS = "hashmatch.callers"  # the request scope's callers, by the roles asked for


def bearer(request: Request) -> str | None:
    """The token of `Authorization: Bearer <token>`; "" for another scheme, None for none."""
    value = request.headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def peer(request: Request) -> str:
    """The address the caller's limits are keyed by (an IPv6 address as its /64, as over
    gRPC): of the TCP peer, or what a trusted proxy forwarded (the server only takes
    X-Forwarded-For from the proxies it was given)."""
    return address_bucket(request.client.host) if request.client is not None else "unknown"


@dataclass
class Face:
    batcher: Batcher
    guards: Guards
    holder: SnapshotHolder
    feed: Feed | None = None
    lookups: Store | None = None  # a connection of its own for content ids and banks
    ready: threading.Event = field(default_factory=threading.Event)
    _content_ids: dict[bytes, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.submission: SubmissionServicer | None = None
        self.feedback: FeedbackServicer | None = None
        if self.feed is not None:
            self.submission, self.feedback = self.feed.servicers(self.guards)

    def unhurried(self) -> bool:
        """Whether a single-hash lookup can now be answered without waiting on anything:
        the engine searches it in the calling thread and the audit log has room for its
        hits. Then the HTTP face answers it on the event loop's thread (service/http/hot.py)."""
        return self.batcher.idle and not self.guards.audit.backed_up

    def caller(self, request: Request, role: str, *alternatives: str) -> Caller:
        """The request's caller if it holds `role` (or one of `alternatives`); the key is
        checked once a request, however many times its route asks."""
        known: dict[tuple[str, ...], Caller] = request.scope.setdefault(CALLERS, {})
        roles = (role, *alternatives)
        if roles not in known:
            known[roles] = self._caller(request, role, *alternatives)
        return known[roles]

    def _caller(self, request: Request, role: str, *alternatives: str) -> Caller:
        token = bearer(request)
        try:
            return self.guards.gate.caller_for(token, lambda: peer(request), role)
        except PermissionDenied:
            for other in alternatives:
                try:
                    return self.guards.gate.caller_for(token, lambda: peer(request), other)
                except PermissionDenied:
                    continue
            raise

    def content_ids(self, match_ids: list[bytes]) -> dict[bytes, int]:
        """The content id of each entry still in the store, cached."""
        with self._lock:
            known = {m: self._content_ids[m] for m in match_ids if m in self._content_ids}
        missing = [m for m in match_ids if m not in known]
        if missing and self.lookups is not None:
            found = self.lookups.content_ids(missing)
            with self._lock:
                if len(self._content_ids) + len(found) > CONTENT_ID_CACHE:
                    self._content_ids.clear()
                self._content_ids.update(found)
            known.update(found)
        return known


def visible(caller: Caller, list_name: str, policies: Policies) -> bool:
    """Whether a list appears to the caller as a bank: within its scope, the victims'
    case list only to an admin key or one granted it by name, and a negative list only
    to the keys that may reach it."""
    if not caller.may_see(list_name):
        return False
    policy = policies.lists.get(list_name)
    if policy is not None and policy.kind == "negative":
        return caller.may_reach_negative(policy.tenant, list_name)
    if list_name != CASE_LIST:
        return True
    return "admin" in caller.roles or (caller.lists is not None and CASE_LIST in caller.lists)
