"""Who may call what: API keys (metadata `authorization: Bearer <token>`), roles, the lists
a key may see, and per-key token-bucket rate limits.

Keys live in the store, only as salted hashes; the server reloads them every
half second, so a revoked key is refused within a second everywhere. While the
store is unreachable the last set loaded stays in use, for at most
`max_key_staleness` seconds if the operator chose strictness (`refuse_stale_keys`):
past it every call is refused as UNAVAILABLE, since a key revoked meanwhile
would still be honoured.

A bucket holds at most its key's burst (2 s of its rate unless the key says otherwise),
whatever a request asks for: a call larger than that is refused and told to split. An
anonymous victim's address gets a bucket of cases per minute, evicted once idle, and a
daily allowance of hashes, since every stored hash is some 255 free bits.

The victims' page may instead be served with a key of the operator's (`serve
--portal-key-file`): calls without a key are then made with it, charged to its rate and
to the same per-address limits, so one address cannot spend it for everyone. Anyone who
opens the page acts with that key, so it may hold the submit role to victims' cases and
nothing else.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from indexer.credentials import secret_matches, split_token
from indexer.store import CASE_LIST, ROLES, ApiKey, ListInfo, NoSuchList, Store, StoreUnavailable
from service import metrics
from service.portal_key import PortalKeyRefused, portal_key_problem
from service.queries import InvalidRequest

log = logging.getLogger(__name__)

RELOAD_SECONDS = 0.5
BURST_SECONDS = 2.0  # a key's burst, unless it has one of its own: this much of its rate
SWEEP_SECONDS = 10.0  # how often buckets that have refilled (so are idle) are dropped
DAY = 86_400.0
# A stream (an upload's messages) waits this long for its bucket to refill before it is
# refused: a long upload is paced to its key's rate instead of failing at the first
# message that comes a few milliseconds early.
STREAM_PATIENCE = 2.0
DEFAULT_ANONYMOUS_CASE_HASHES = 300  # ten photos with all their listing variants (30 a photo)
DEFAULT_ANONYMOUS_DAILY_HASHES = 1_200
# Addresses with a daily count held at once; past it, new anonymous addresses wait.
MAX_ANONYMOUS_ADDRESSES = 100_000


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
    burst: float | None = None  # the most one call may take; None: BURST_SECONDS of rate

    match_only: bool = False  # learns match / no match, never a distance
    tenant: str | None = None  # the key's tenant; None for local and anonymous callers
    # Someone without a key of their own (anonymous, or through the page's key): the
    # address their per-address limits count.
    address: str | None = None

    @property
    def anonymous(self) -> bool:
        """No key at all: only per-address limits apply."""
        return self.key_id is None and self.address is not None

    @property
    def visitor(self) -> bool:
        """Acts for someone without a key of their own: per-address limits, no free text."""
        return self.address is not None

    def may(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles

    def may_see(self, list_name: str) -> bool:
        return self.lists is None or list_name in self.lists

    def may_manage(self, list_name: str) -> bool:
        """A list within the key's scope; victims' cases only with an admin key (the
        operator)."""
        return self.may_see(list_name) and (list_name != CASE_LIST or "admin" in self.roles)

    def may_reach_negative(self, tenant: str | None, list_name: str) -> bool:
        """A negative list is its tenant's keys' alone; one for every tenant (`tenant`
        None), admin keys' or a key's granted it by name. Admin keys reach every one."""
        if self is LOCAL or "admin" in self.roles:
            return True
        if tenant is None:
            return self.lists is not None and list_name in self.lists
        return self.tenant == tenant

    def may_reach(self, kind: str, tenant: str | None, list_name: str) -> bool:
        """Whether a list exists for this key at all: another tenant's negative list is
        as absent as a list that does not exist."""
        return kind != "negative" or self.may_reach_negative(tenant, list_name)

    def may_pull(self, list_name: str) -> bool:
        """Victims' hashes leave the server only to a key granted their list by name (an
        admin key included); every other list, to any key that may see it."""
        if list_name == CASE_LIST:
            return self is LOCAL or (self.lists is not None and CASE_LIST in self.lists)
        return self.may_see(list_name)


LOCAL = Caller("local", frozenset(ROLES), None, None, None)


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = time.monotonic()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def wait(self, n: float) -> float:
        """Seconds until `n` tokens will be there (0: now); nothing is taken."""
        self._refill(time.monotonic())
        if n <= self._tokens:
            return 0.0
        return (n - self._tokens) / self.rate if self.rate > 0 else math.inf

    def take(self, n: float) -> float:
        """0 if `n` tokens were taken, else seconds until they will be there."""
        wait = self.wait(n)
        if not wait:
            self._tokens -= n
        return wait

    def full(self, now: float) -> bool:
        """Refilled to its burst: no different from a new bucket, so it may be dropped."""
        self._refill(now)
        return self._tokens >= self.burst


@dataclass
class DailyCount:
    since: float  # time.monotonic() when this address's day began
    hashes: int


def _bearer(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def address_bucket(host: str) -> str:
    """The address a caller's per-address limits are keyed by, whatever the transport:
    an IPv4 address as it is, an IPv6 address as its /64, which one subscriber usually
    holds whole (so rotating through it buys nothing)."""
    host = host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def _peer_host(context: grpc.ServicerContext) -> str:
    """ipv4:1.2.3.4:5678 → 1.2.3.4 (one bucket per address, whatever the port)."""
    peer = context.peer() or "unknown"
    host = peer.split(":", 1)[-1].rsplit(":", 1)[0]
    return address_bucket(host)


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
        anonymous_case_hashes: int = DEFAULT_ANONYMOUS_CASE_HASHES,
        anonymous_daily_hashes: int = DEFAULT_ANONYMOUS_DAILY_HASHES,
        max_key_staleness: float | None = None,
        refuse_stale_keys: bool = False,
        portal_key: str | None = None,
    ) -> None:
        """`anonymous_submits_per_minute` is each address's calls a minute without a key:
        made anonymously, or with `portal_key` (the page's key; PortalKeyRefused if it
        is not fit to be, see service.portal_key) when one is given."""
        self._store = store
        self.max_key_staleness = max_key_staleness
        self._refuse_stale = refuse_stale_keys and max_key_staleness is not None
        self._default_rate = default_rate
        self._anonymous_rate = anonymous_submits_per_minute
        self._anonymous_case_hashes = anonymous_case_hashes
        self._anonymous_daily_hashes = anonymous_daily_hashes
        self._keys: dict[str, ApiKey] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._throttled: dict[str, tuple[float, float]] = {}  # key → (rate, until)
        self._daily: dict[str, DailyCount] = {}  # anonymous address → its day so far
        self._swept = time.monotonic()
        self._lock = threading.Lock()
        self._reloaded_for_unknown = 0.0
        self._unknown_lock = threading.Lock()
        self._unknown_done = 0.0
        self._loaded_at = time.monotonic()
        self._portal: tuple[str, str] | None = None
        self._portal_lost = False  # the page's key revoked since startup
        if store is not None:
            self.reload()
            metrics.KEY_RELOAD_AGE.set_function(self.keys_age)
        if portal_key is not None:
            self._portal = self._check_portal_key(portal_key)

    def _check_portal_key(self, token: str) -> tuple[str, str]:
        """(key id, secret) of the page's key, if it is fit to be: in the store, of the
        submit role to victims' cases alone, and able to take a whole case at once."""
        parts = split_token(token)
        if self._store is None or parts is None:
            raise PortalKeyRefused("the page's key needs API keys: give --store")
        key = self._keys.get(parts[0])
        if key is not None and not secret_matches(parts[1], key.salt, key.secret_hash):
            key = None
        if (problem := portal_key_problem(key)) is not None:
            raise PortalKeyRefused(f"the page's key {parts[0]} {problem}")
        assert key is not None
        rate = key.rate if key.rate is not None else self._default_rate
        burst = key.burst or (None if rate is None else max(rate * BURST_SECONDS, 1.0))
        if burst is not None and burst < self._anonymous_case_hashes:
            raise PortalKeyRefused(
                f"the page's key {key.key_id} may send at most {burst:g} hashes at once, "
                f"less than a case may hold ({self._anonymous_case_hashes}): give it a "
                "larger --burst or --rate, or lower --anonymous-case-hashes"
            )
        return parts

    def _portal_caller(self, address: str) -> Caller:
        """A visitor of the page, acting with its key (checked again at every use: it may
        have been revoked since)."""
        assert self._portal is not None
        key = self._keys.get(self._portal[0])
        if (problem := portal_key_problem(key)) is not None:
            if not self._portal_lost:  # once, not once per refused visitor
                self._portal_lost = True
                log.warning(
                    "the page's key %s %s: cases without a key are refused",
                    self._portal[0],
                    problem,
                )
            raise Unauthenticated(
                "cases without a key are not taken now: the page's key was revoked"
            )
        assert key is not None
        self._portal_lost = False
        return self._key_caller(key, address)

    def _key_caller(self, key: ApiKey, address: str | None = None) -> Caller:
        return Caller(
            f"{key.tenant}/{key.key_id}",
            key.roles,
            key.lists,
            key.key_id,
            key.rate if key.rate is not None else self._default_rate,
            key.burst,
            key.match_only,
            key.tenant,
            address,
        )

    @property
    def enabled(self) -> bool:
        return self._store is not None

    def knows(self, token: str | None) -> bool:
        """Whether checking `token` needs no store read: keys are off, no token was
        sent, or its key id is in the keys loaded (an unknown id may wait for a reload)."""
        if self._store is None or not token:
            return True
        parts = split_token(token)
        return parts is None or parts[0] in self._keys

    def reload(self) -> None:
        assert self._store is not None
        self._keys = {k.key_id: k for k in self._store.api_keys() if not k.revoked}
        self._loaded_at = time.monotonic()

    def keys_age(self) -> float:
        """Seconds since the key set in use was loaded from the store."""
        return time.monotonic() - self._loaded_at

    def keys_stale(self) -> bool:
        """Whether the key set is older than `max_key_staleness` (never without a store)."""
        bound = self.max_key_staleness
        return self._store is not None and bound is not None and self.keys_age() > bound

    @property
    def refusing(self) -> bool:
        """Whether every call is refused because the keys are stale and strictness chosen."""
        return self._refuse_stale and self.keys_stale()

    def _reload_soon(self) -> bool:
        """Reload for an unknown key id, but at most every 0.1 s: unknown ids are cheap to
        send and must not turn into a flood of store reads. The periodic reloads do not
        count: one that began just before a key was issued refused the key's first use.
        Callers that find a reload under way wait for it and use its keys: several first
        uses of one new key at once are all let in, not only the one that reloaded. One
        that comes within 0.1 s of the last such reload waits out the rest of the 0.1 s
        rather than being refused: a new key used just after someone else's unknown id
        is let in too."""
        asked = time.monotonic()
        with self._unknown_lock:
            if self._unknown_done >= asked:
                return True  # a reload ended while we waited: look again in its keys
            early = self._reloaded_for_unknown + 0.1 - time.monotonic()
            if early > 0:
                time.sleep(early)
            self._reloaded_for_unknown = time.monotonic()
            self.reload()
            self._unknown_done = time.monotonic()
            return True

    def watch(self, stop: threading.Event) -> None:
        def loop() -> None:
            failing = False
            while not stop.wait(RELOAD_SECONDS):
                try:
                    self.reload()
                except StoreUnavailable:
                    if not failing:
                        log.warning("cannot reload API keys: the store is unreachable")
                    failing = True
                    continue
                except Exception:
                    log.exception("reloading API keys failed; keeping the last set")
                    continue
                if failing:
                    log.warning("API keys reloaded: the store is reachable again")
                failing = False

        threading.Thread(target=loop, name="key-reload", daemon=True).start()

    def caller(self, context: grpc.ServicerContext, role: str) -> Caller:
        return self.caller_for(_bearer(context), lambda: _peer_host(context), role)

    def caller_for(self, token: str | None, peer_host: Callable[[], str], role: str) -> Caller:
        """The caller holding `token` (None: no credentials sent), if it may act as `role`;
        any transport passes its bearer token and how to tell the caller's address."""
        if self._store is None:
            return LOCAL
        if self.refusing:
            raise StoreUnavailable(
                f"API keys could not be reloaded from the store for {self.keys_age():.0f}s "
                f"(the limit is {self.max_key_staleness:g}s): calls are refused until it is back"
            )
        if token is None:
            if role == "submit" and self._portal is not None:
                return self._portal_caller(peer_host())
            if role == "submit" and self._anonymous_rate is not None:
                address = peer_host()
                return Caller(
                    f"anonymous@{address}", frozenset({"submit"}), None, None, None, address=address
                )
            raise Unauthenticated(
                "no credentials: send the metadata 'authorization: Bearer <API key>'"
            )
        parts = split_token(token)
        key = self._keys.get(parts[0]) if parts else None
        if parts is not None and key is None and self._reload_soon():
            key = self._keys.get(parts[0])  # a key issued since the last reload
        if parts is None or key is None or not secret_matches(parts[1], key.salt, key.secret_hash):
            raise Unauthenticated("unknown or revoked API key")
        # The page's key sent by hand is as public as the page: the page's limits hold.
        page = self._portal is not None and key.key_id == self._portal[0]
        caller = self._key_caller(key, peer_host() if page else None)
        if not caller.may(role):
            held = ", ".join(sorted(key.roles))
            raise PermissionDenied(f"API key {key.key_id} lacks the {role!r} role (it has {held})")
        return caller

    def _limits(self, caller: Caller) -> list[tuple[str, float, float, float, str]]:
        """(bucket key, rate, burst, throttled until or 0, unit) of each bucket a call of
        the caller takes from: its address's for a visitor, counted in calls, first (one
        address's calls run dry before they spend a shared key), then its key's, counted
        in hashes. Call with the lock held."""
        limits = []
        if caller.address is not None:
            # Calls (cases, status checks, withdrawals) per minute per address, a minute's
            # worth at once: a victim who submits, checks and withdraws in one sitting is
            # not turned away.
            rate = (self._anonymous_rate or 0) / 60
            limits.append((f"address {caller.address}", rate, max(rate * 60, 1.0), 0.0, "calls"))
        if (limit := self._key_limit(caller)) is not None:
            limits.append((*limit, "hashes"))
        return limits

    def _key_limit(self, caller: Caller) -> tuple[str, float, float, float] | None:
        """(bucket key, rate, burst, throttled until or 0) for a key with a limit, else
        None. Call with the lock held."""
        if caller.key_id is None:
            return None
        throttled = self._throttled.get(caller.actor)
        if throttled is not None and throttled[1] < time.monotonic():
            del self._throttled[caller.actor]
            self._buckets.pop(caller.actor, None)
            throttled = None
        if throttled is not None:
            rate = throttled[0]
            return caller.actor, rate, max(rate * BURST_SECONDS, 1.0), throttled[1]
        if caller.rate is None:
            return None
        burst = caller.burst or max(caller.rate * BURST_SECONDS, 1.0)
        return caller.actor, caller.rate, burst, 0.0

    def capacity(self, caller: Caller) -> float | None:
        """The most hashes one call of the caller may take now (None: no limit)."""
        with self._lock:
            limit = self._key_limit(caller)
        return None if limit is None else limit[2]

    def charge(self, caller: Caller, hashes: int, patience: float = 0.0) -> None:
        """Take `hashes` from the caller's bucket (and one call from a visitor's address's):
        RateLimited when one holds too few (after waiting up to `patience` seconds for it
        to refill), and InvalidRequest when the call is larger than a bucket can ever
        hold. Nothing is taken from any bucket unless all have enough."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return self._take(caller, hashes)
            except RateLimited as exc:
                if time.monotonic() + exc.retry_after > deadline:
                    raise
                time.sleep(exc.retry_after)

    def _take(self, caller: Caller, hashes: int) -> None:
        with self._lock:
            self._sweep()
            taking = []
            for bucket_key, rate, burst, throttled_until, unit in self._limits(caller):
                n = 1 if unit == "calls" else hashes
                if n > burst:
                    if throttled_until:
                        wait = throttled_until - time.monotonic()
                        raise RateLimited(
                            f"{caller.actor} is throttled to {rate:g} hashes/s; "
                            f"retry in {wait:.0f}s",
                            wait,
                        )
                    raise InvalidRequest(
                        f"{n} hashes in one call exceed what {caller.actor} may send at once "
                        f"({burst:g}: rate {rate:g} hashes/s, burst {burst:g}); split it into "
                        f"calls of at most {math.floor(burst)}"
                    )
                bucket = self._buckets.get(bucket_key)
                if bucket is None or (bucket.rate, bucket.burst) != (rate, burst):
                    bucket = self._buckets[bucket_key] = TokenBucket(rate, burst)
                if wait := bucket.wait(n):
                    raise RateLimited(
                        f"rate limit of {rate:g} {unit}/s for {bucket_key} exceeded; "
                        f"retry in {wait:.2f}s",
                        wait,
                    )
                taking.append((bucket, n))
            for bucket, n in taking:
                bucket.take(n)

    def _sweep(self) -> None:
        """Drop buckets that have refilled and throttles that have ended, so that many
        addresses seen once do not pile up. Call with the lock held."""
        now = time.monotonic()
        if now - self._swept < SWEEP_SECONDS:
            return
        self._swept = now
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]
        for key in [k for k, (_, until) in self._throttled.items() if until < now]:
            del self._throttled[key]
        for key in [k for k, d in self._daily.items() if now - d.since >= DAY]:
            del self._daily[key]

    def admit_case(self, caller: Caller, hashes: int) -> None:
        """A visitor's case (anonymous or through the page's key): at most
        anonymous_case_hashes, and within its address's daily allowance of hashes (taken
        here). Callers with a key of their own pass."""
        if caller.address is None:
            return
        most = min(self._anonymous_case_hashes, self._anonymous_daily_hashes)
        if hashes > most:
            raise InvalidRequest(
                f"a case sent without a key holds at most {most} hashes, got {hashes}"
            )
        now = time.monotonic()
        with self._lock:
            day = self._daily.get(caller.address)
            if day is not None and now - day.since >= DAY:
                day = None
            if day is None:
                if len(self._daily) >= MAX_ANONYMOUS_ADDRESSES:
                    self._swept = 0.0
                    self._sweep()
                if len(self._daily) >= MAX_ANONYMOUS_ADDRESSES:
                    raise RateLimited(
                        "too many anonymous submitters today; retry in an hour", 3600.0
                    )
                day = self._daily[caller.address] = DailyCount(now, 0)
            if day.hashes + hashes > self._anonymous_daily_hashes:
                wait = day.since + DAY - now
                raise RateLimited(
                    f"address {caller.address} may submit {self._anonymous_daily_hashes} hashes "
                    f"a day without a key ({self._anonymous_daily_hashes - day.hashes} left); "
                    f"retry in {wait / 3600:.1f}h",
                    wait,
                )
            day.hashes += hashes

    def throttle(self, caller: Caller, rate: float, seconds: float) -> None:
        """Cut a caller's rate for a while (a key that seems to be probing the list)."""
        with self._lock:
            self._throttled[caller.actor] = (rate, time.monotonic() + seconds)


def reach(store: Store, caller: Caller, list_name: str) -> ListInfo:
    """The list's info, NoSuchList if there is none or it is another tenant's negative
    list (NOT_FOUND alike, so an answer never tells the two apart)."""
    info = store.list_info(list_name)
    if not caller.may_reach(info.kind, info.tenant, list_name):
        raise NoSuchList(list_name)
    return info
