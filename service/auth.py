"""Who may call what: API keys (metadata `authorization: Bearer <token>`), roles, the lists
a key may see, and per-key token-bucket rate limits.

Keys live in the store, only as salted hashes; the server reloads them every
half second, so a revoked key is refused within a second everywhere.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from indexer.credentials import secret_matches, split_token
from indexer.store import ROLES, ApiKey, Store

log = logging.getLogger(__name__)

RELOAD_SECONDS = 0.5


class Unauthenticated(Exception):
    pass


class PermissionDenied(Exception):
    pass


class RateLimited(Exception):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Caller:
    actor: str  # "tenant/key id", "anonymous@peer", or "local" on a --no-auth server
    roles: frozenset[str]
    lists: frozenset[str] | None  # None: every list
    key_id: str | None
    rate: float | None  # hashes per second; None: unlimited

    def may(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles

    def may_see(self, list_name: str) -> bool:
        return self.lists is None or list_name in self.lists


LOCAL = Caller("local", frozenset(ROLES), None, None, None)


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = time.monotonic()

    def take(self, n: float) -> float:
        """0 if `n` tokens were taken, else seconds until they will be there."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if n <= self._tokens:
            self._tokens -= n
            return 0.0
        return (n - self._tokens) / self.rate if self.rate > 0 else math.inf


def _bearer(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def _peer_host(context: grpc.ServicerContext) -> str:
    """ipv4:1.2.3.4:5678 → 1.2.3.4 (one bucket per address, whatever the port)."""
    peer = context.peer() or "unknown"
    return peer.split(":", 1)[-1].rsplit(":", 1)[0]


class Gate:
    """Authenticates and authorizes each call, and charges it to its caller's bucket.

    `store` None means no authentication at all (only for a loopback server):
    every caller is LOCAL, with every role and no limit.
    """

    def __init__(
        self,
        store: Store | None,
        *,
        default_rate: float | None = None,
        anonymous_submits_per_minute: float | None = None,
    ) -> None:
        self._store = store
        self._default_rate = default_rate
        self._anonymous_rate = anonymous_submits_per_minute
        self._keys: dict[str, ApiKey] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._throttled: dict[str, tuple[float, float]] = {}  # key → (rate, until)
        self._lock = threading.Lock()
        self._reloaded_for_unknown = 0.0
        if store is not None:
            self.reload()

    @property
    def enabled(self) -> bool:
        return self._store is not None

    def reload(self) -> None:
        assert self._store is not None
        self._keys = {k.key_id: k for k in self._store.api_keys() if not k.revoked}

    def _reload_soon(self) -> bool:
        """Reload for an unknown key id, but at most every 0.1 s: unknown ids are cheap to
        send and must not turn into a flood of store reads. The periodic reloads do not
        count: one that began just before a key was issued refused the key's first use."""
        with self._lock:
            if time.monotonic() - self._reloaded_for_unknown < 0.1:
                return False
            self._reloaded_for_unknown = time.monotonic()
        self.reload()
        return True

    def watch(self, stop: threading.Event) -> None:
        def loop() -> None:
            while not stop.wait(RELOAD_SECONDS):
                try:
                    self.reload()
                except Exception:
                    log.exception("reloading API keys failed; keeping the last set")

        threading.Thread(target=loop, name="key-reload", daemon=True).start()

    def caller(self, context: grpc.ServicerContext, role: str) -> Caller:
        return self.caller_for(_bearer(context), lambda: _peer_host(context), role)

    def caller_for(self, token: str | None, peer_host: Callable[[], str], role: str) -> Caller:
        """The caller holding `token` (None: no credentials sent), if it may act as `role`;
        any transport passes its bearer token and how to tell the caller's address."""
        if self._store is None:
            return LOCAL
        if token is None:
            if role == "submit" and self._anonymous_rate is not None:
                return Caller(f"anonymous@{peer_host()}", frozenset({"submit"}), None, None, None)
            raise Unauthenticated(
                "no credentials: send the metadata 'authorization: Bearer <API key>'"
            )
        parts = split_token(token)
        key = self._keys.get(parts[0]) if parts else None
        if parts is not None and key is None and self._reload_soon():
            key = self._keys.get(parts[0])  # a key issued since the last reload
        if parts is None or key is None or not secret_matches(parts[1], key.salt, key.secret_hash):
            raise Unauthenticated("unknown or revoked API key")
        caller = Caller(
            f"{key.tenant}/{key.key_id}",
            key.roles,
            key.lists,
            key.key_id,
            key.rate if key.rate is not None else self._default_rate,
        )
        if not caller.may(role):
            held = ", ".join(sorted(key.roles))
            raise PermissionDenied(f"API key {key.key_id} lacks the {role!r} role (it has {held})")
        return caller

    def charge(self, caller: Caller, hashes: int) -> None:
        """Take `hashes` from the caller's bucket; RateLimited when it is empty."""
        if caller.key_id is None and not caller.actor.startswith("anonymous@"):
            return
        bucket_key, rate = caller.actor, caller.rate
        if caller.key_id is None:  # anonymous: cases per minute per address, one per call
            rate, hashes = (self._anonymous_rate or 0) / 60, 1
        with self._lock:
            throttled = self._throttled.get(bucket_key)
            if throttled is not None and throttled[1] < time.monotonic():
                del self._throttled[bucket_key]
                self._buckets.pop(bucket_key, None)
                throttled = None
            if throttled is not None:
                rate = throttled[0]
            if rate is None:
                return
            bucket = self._buckets.get(bucket_key)
            if bucket is None or bucket.rate != rate:
                bucket = self._buckets[bucket_key] = TokenBucket(rate, max(rate * 2, hashes, 1))
            wait = bucket.take(hashes)
        if wait:
            raise RateLimited(
                f"rate limit of {rate:g} {'hashes' if caller.key_id else 'cases'}/s for "
                f"{caller.actor} exceeded; retry in {wait:.2f}s",
                wait,
            )

    def throttle(self, caller: Caller, rate: float, seconds: float) -> None:
        """Cut a caller's rate for a while (a key that seems to be probing the list)."""
        with self._lock:
            self._throttled[caller.actor] = (rate, time.monotonic() + seconds)
