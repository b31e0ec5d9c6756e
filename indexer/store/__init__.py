"""The hash store: one interface, selected by URL (SQLite is the embedded default).

Every add and removal is recorded in a change log under a sequence number that
grows in commit order. The service follows that log to match new entries
within seconds; sync pullers follow it to keep remote copies in step; a
snapshot records the last sequence number it holds.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from hashmatch.list_formats import NewEntry
from hashmatch.signals import SIGNALS
from hashmatch.video_entries import VPDQ, indexed_signal
from indexer.video_frames import frame_rows

DEFAULT_STORE_URL = "sqlite:///./hashmatch.db"
# The store URL may hold a password, and a command line is visible to every user of the
# machine (ps, /proc/PID/cmdline): child processes get it in this environment variable.
STORE_URL_ENV = "HASHMATCH_STORE_URL"
MATCH_ID_BYTES = 12
# Content ids (the integers HMA's bank routes name entries by) are drawn at random below
# this: the largest integer a JavaScript number holds exactly.
MAX_CONTENT_ID = 2**53 - 1
# Change and audit sequence numbers are signed 64-bit in both stores: a cursor past this
# names nothing and can't even be sent to the database.
MAX_SEQ = 2**63 - 1
MAX_COUNT = 2**31 - 1  # a feedback count, as the stores hold it (INTEGER)
TRUST_LEVELS = ("verified", "unverified", "victim")
# A match list answers checks; a negative list holds hashes that must never produce a match
# for its tenant (or, with no tenant, for anyone): it is never itself matched against.
LIST_KINDS = ("match", "negative")
CASE_LIST = "victim-cases"
# check: MatchService; submit: victims' cases; list-manage: hotline lists; sync-read:
# SyncService.Pull; admin: everything.
ROLES = ("check", "submit", "list-manage", "sync-read", "admin")


# A tenant's negative lists hold at most this many entries in all: they suppress only its own
# matches, but each is searched with every check.
MAX_TENANT_NEGATIVE_ENTRIES = 10_000


def distance_problem(signal: str, distance: int) -> str | None:
    """Why a list may not match the signal within `distance`, or None: the index is built
    for the signal's threshold, so a list can only narrow it."""
    if signal not in SIGNALS and signal != VPDQ:
        return f"unknown signal {signal[:40]!r}"
    known = indexed_signal(signal)  # a video's frames: PDQ's threshold
    if not 0 <= distance <= known.threshold:
        return (
            f"max_distance {distance} for {signal} exceeds its threshold {known.threshold}: "
            "the index is built for that radius, so a list can only narrow it"
        )
    return None


class StoreURLError(ValueError):
    pass


class NoSuchList(KeyError):
    def __str__(self) -> str:
        return f"no list named {self.args[0]!r}"


class ListExists(ValueError):
    pass


class InvalidValue(ValueError):
    """A value the store will not keep, such as an unknown trust level; said to the caller."""


class StoreUnavailable(Exception):
    """The database cannot be reached or is busy now; the call may be retried shortly.

    The message is what a caller is told, so it never names hosts or ports: the cause,
    chained, is for the server's log.
    """


class NoSuchMatch(KeyError):
    """A match id that is unknown, was never served to the caller, or is of a list it
    may not see: the three are deliberately not told apart (no oracle)."""

    def __str__(self) -> str:
        return "no match with that id was served to this key"


class NoSuchCase(KeyError):
    """Unknown case id or wrong secret: the two are deliberately not told apart."""

    def __str__(self) -> str:
        return "no case with that id and withdrawal secret"


@dataclass(frozen=True)
class AddCounts:
    added: int = 0
    duplicates: int = 0


@dataclass(frozen=True)
class ListInfo:
    name: str
    owner: str
    trust: str
    description: str
    created_at: str
    entries_by_signal: dict[str, int]
    last_seq: int
    quarantine: bool = False
    feedback_threshold: int = 2
    kind: str = "match"
    tenant: str | None = None  # a negative list's tenant; None: every tenant's
    max_distances: dict[str, int] = field(default_factory=dict)  # narrower than the signal's

    @property
    def entries(self) -> int:
        return sum(self.entries_by_signal.values())


@dataclass(frozen=True)
class ListPolicy:
    """What the service needs of a list to answer a check: its kind, its tenant (negative
    lists), whether it quarantines anomalies, and its distances narrower than a signal's
    threshold."""

    name: str
    kind: str = "match"
    tenant: str | None = None
    quarantine: bool = False
    max_distances: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """One line of the change log: an entry added to or removed from a list."""

    seq: int
    op: str  # "add" | "remove"
    entry_id: int
    list: str
    signal: str
    hash: bytes
    match_id: bytes
    quality: int | None
    source_ref: str | None
    at: float  # seconds since the epoch, when committed
    variant: str = ""
    frames: bytes = b""  # a video's packed frames (hashmatch.video_entries)


@dataclass(frozen=True)
class CaseReceipt:
    case_id: str
    secret: str  # shown to the victim once; only a salted hash is stored
    added: int


@dataclass(frozen=True)
class CaseStatus:
    active: int
    withdrawn: bool


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant: str
    roles: frozenset[str]
    lists: frozenset[str] | None  # lists it may read or manage; None: every list
    rate: float | None  # hash checks per second; None: the server's default
    salt: bytes
    secret_hash: bytes
    created_at: float
    revoked: bool
    burst: float | None = None  # the most one call may take; None: 2 s of the rate
    match_only: bool = False  # learns match / no match, never a distance


@dataclass(frozen=True)
class AuditEvent:
    actor: str  # an API key's "tenant/key id", or "anonymous"
    action: str
    list: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0
    seq: int = 0


@dataclass(frozen=True)
class EntryFlag:
    match_id: bytes
    list: str
    state: str  # flagged | quarantined | confirmed
    matches: int
    at: float


@dataclass(frozen=True)
class TenantReport:
    tenant: str
    verdict: str
    reason: str
    at: float


@dataclass(frozen=True)
class FeedbackCounts:
    """Distinct tenants per verdict on one entry (or, pulled from a downstream copy, the
    counts it reported)."""

    match_id: bytes
    seq: int
    confirmed: int
    false_positive: int
    pending_review: int
    source: str = ""


@dataclass
class ReviewItem:
    """An entry of the review queue: flagged or reported, with the evidence."""

    list: str
    match_id: bytes
    state: str  # quarantined | flagged | confirmed | reported
    cause: str  # anomaly | feedback | "" (reported only)
    anomaly_matches: int = 0
    state_at: float = 0.0
    # `list` is a field here: the builtin by its full name.
    reports: builtins.list[TenantReport] = field(default_factory=builtins.list)
    remote: builtins.list[FeedbackCounts] = field(default_factory=builtins.list)

    def tenants(self, verdict: str) -> int:
        return sum(r.verdict == verdict for r in self.reports)

    @property
    def last_report_at(self) -> float:
        return max((r.at for r in self.reports), default=0.0)


@dataclass(frozen=True)
class SignalEntries:
    """Every entry of one signal type, as arrays ready for an index build."""

    entry_ids: npt.NDArray[np.int64]
    list_ids: npt.NDArray[np.uint32]
    hashes: npt.NDArray[np.uint8]  # shape (n, bits / 8)
    match_ids: npt.NDArray[np.uint8]  # shape (n, MATCH_ID_BYTES)
    variants: list[str]


@dataclass(frozen=True)
class StoreImage:
    """Everything a snapshot build needs, read at one consistent point of the log."""

    lists: dict[int, str]
    last_seq: int
    signals: dict[str, SignalEntries]
    unknown_signals: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)  # rows left out, each with why


EntryRow = tuple[int, str, bytes, bytes, int | None, str | None, str, str, str, bytes | None]


def new_entry_rows(
    list_id: int, batch: Iterable[NewEntry], submitter: str = "", origin: str = ""
) -> list[EntryRow]:
    """(list_id, signal, hash, match_id, quality, source_ref, submitter, origin, variant,
    frames) rows, each with a fresh random match id: the opaque id checkers see, unrelated
    to the hash."""
    return [
        (
            list_id,
            e.signal,
            e.hash,
            os.urandom(MATCH_ID_BYTES),
            e.quality,
            e.source_ref,
            submitter,
            origin,
            e.variant,
            e.frames or None,
        )
        for e in batch
    ]


def signal_entries(
    name: str, rows: Sequence[Sequence[Any]], nbytes: int, malformed: list[str]
) -> SignalEntries:
    """Arrays from (id, list_id, hash, match_id, variant) rows, as both backends return them.
    A row whose hash is not `nbytes` of bytes is left out, and why goes on `malformed`: the
    schema refuses such rows, but a build must not die on one that got in regardless."""
    if not all(type(r[2]) is bytes and len(r[2]) == nbytes for r in rows):
        usable = []
        for r in rows:
            if type(r[2]) is bytes and len(r[2]) == nbytes:
                usable.append(r)
            else:
                got = f"{len(r[2])} bytes" if type(r[2]) is bytes else type(r[2]).__name__
                malformed.append(f"entry {r[0]}: {name} hash is {got}, not {nbytes} bytes")
        rows = usable
    n = len(rows)
    return SignalEntries(
        np.fromiter((r[0] for r in rows), dtype=np.int64, count=n),
        np.fromiter((r[1] for r in rows), dtype=np.uint32, count=n),
        np.frombuffer(b"".join(r[2] for r in rows), dtype=np.uint8).reshape(n, nbytes),
        np.frombuffer(b"".join(bytes(r[3]) for r in rows), dtype=np.uint8).reshape(
            n, MATCH_ID_BYTES
        ),
        [str(r[4]) for r in rows],
    )


def video_frame_entries(
    name: str, rows: Sequence[Sequence[Any]], nbytes: int, malformed: list[str]
) -> SignalEntries:
    """As signal_entries, from (id, list_id, packed frames, match_id, variant) rows of
    videos: a row per frame matched on (indexer.video_frames)."""
    return SignalEntries(
        *frame_rows(
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[3] for r in rows],
            [r[2] for r in rows],
            malformed,
        )
    )


def whose(tenant: str | None) -> str:
    """A negative list's owner, in words."""
    return "every tenant's" if tenant is None else f"tenant {tenant!r}'s"


class Store(Protocol):
    def create_list(
        self,
        name: str,
        owner: str = "",
        trust: str = "unverified",
        description: str = "",
        kind: str = "match",
        tenant: str | None = None,
        *,
        quarantine: bool = False,
        max_distances: Mapping[str, int] | None = None,
        feedback_threshold: int | None = None,
    ) -> ListInfo:
        """A new, empty list with its policy, in one transaction; ListExists if the name is
        taken. `tenant` is a negative list's owner (None: a negative list for everyone);
        `feedback_threshold` None: the default for the list's name."""
        ...

    def set_list_distances(self, list_name: str, distances: Mapping[str, int | None]) -> None:
        """Per signal, the list's own maximum distance (None: back to the signal's
        threshold); InvalidValue for an unknown signal or a distance beyond its threshold."""
        ...

    def list_policies(self) -> list[ListPolicy]:
        """Every list's policy, at once (the service reloads them)."""
        ...

    def list_info(self, name: str) -> ListInfo:
        """NoSuchList if there is no such list."""
        ...

    def lists(self) -> dict[int, str]: ...

    def add_entries(
        self,
        list_name: str,
        entries: Iterable[NewEntry],
        *,
        submitter: str = "",
        create: bool = True,
    ) -> AddCounts:
        """Add entries (the list is created if new and `create`, else NoSuchList);
        each batch is committed durably, with its change log lines, before the next."""
        ...

    def remove_entries(self, list_name: str, keys: Iterable[tuple[str, bytes]]) -> int:
        """Remove the entries with these (signal, hash) keys; returns how many went."""
        ...

    def create_case(self, entries: Sequence[NewEntry]) -> CaseReceipt:
        """A victim's case: its hashes go on the case list under a new case id."""
        ...

    def withdraw_case(self, case_id: str, secret: str) -> int:
        """Remove every entry of the case; NoSuchCase unless id and secret agree."""
        ...

    def case_status(self, case_id: str, secret: str) -> CaseStatus: ...

    def content_ids(self, match_ids: Sequence[bytes]) -> dict[bytes, int]:
        """The content id of each of these entries that is still in the store."""
        ...

    def content_id_of(self, list_name: str, signal: str, hash_bytes: bytes) -> int | None:
        """The content id of the entry of that list holding that hash (the oldest, if
        several cases hold it); None if none does."""
        ...

    def remove_content(self, list_name: str, content_id: int) -> int:
        """Remove the list's entry with this content id; returns how many went (0 or 1)."""
        ...

    def list_entries(self, list_name: str) -> Iterator[NewEntry]:
        """Every entry of one list, oldest first; NoSuchList if there is no such list."""
        ...

    def read_image(self, nbytes: Mapping[str, int]) -> StoreImage:
        """Every entry of the signals in `nbytes` (name → hash bytes), consistently."""
        ...

    def changes(self, after_seq: int, limit: int, list_name: str | None = None) -> list[Change]:
        """Change log lines after `after_seq`, oldest first."""
        ...

    def last_seq(self) -> int: ...

    def sync_cursor(self, source: str) -> int:
        """The last change of `source` applied here (0 if none)."""
        ...

    def apply_sync(
        self,
        source: str,
        list_name: str,
        changes: Sequence[Change],
        through: int | None = None,
        kind: str = "match",
        tenant: str | None = None,
    ) -> dict[bytes, str]:
        """Apply pulled changes to a local list and advance `source`'s cursor past them (or
        to `through`, past changes refused too), in one transaction: a puller killed at
        any point resumes without loss or repeat. A new local list gets the remote's
        `kind` and, if negative, `tenant` as its owner (None: every tenant's, which the
        caller must have been told); an existing one of another kind or tenant is
        InvalidValue. Returns the added match ids another local list holds already, with
        that list's name: match ids are unique in the store, so those are not added."""
        ...

    def create_key(
        self,
        tenant: str,
        roles: Iterable[str],
        lists: Iterable[str] | None = None,
        rate: float | None = None,
        burst: float | None = None,
        match_only: bool = False,
    ) -> tuple[ApiKey, str]:
        """A new API key and its token, which is shown once and stored only hashed.
        A `match_only` key's matches carry no distance."""
        ...

    def revoke_key(self, key_id: str) -> bool: ...

    def api_keys(self) -> list[ApiKey]: ...

    def append_audit(self, events: Sequence[AuditEvent]) -> None: ...

    def prune_audit(self, before: float, actor: str = "operator") -> int:
        """Delete the audit events older than `before` (seconds since the epoch) and record
        that in the log, in one transaction: the only delete the schema lets through."""
        ...

    def audit_events(self, after_seq: int = 0, limit: int = 1000) -> list[AuditEvent]: ...

    def set_quarantine(self, list_name: str, quarantine: bool) -> None:
        """Whether entries of the list flagged for anomalous matching stop matching."""
        ...

    def flag_entry(self, match_id: bytes, matches: int) -> EntryFlag | None:
        """Flag an entry for review (quarantined if its list says so); None if it is not
        an entry, and an entry a list manager confirmed stays confirmed."""
        ...

    def confirm_entry(self, list_name: str, match_id: bytes) -> bool: ...

    def entry_flags(self) -> list[EntryFlag]: ...

    def flags_version(self) -> int:
        """A number that changes whenever an entry is quarantined or released: servers
        poll it to reload their quarantine within a second."""
        ...

    def set_feedback_threshold(self, list_name: str, tenants: int) -> None:
        """Distinct tenants reporting false_positive that quarantine an entry of the list;
        InvalidValue outside hashmatch.feedback.threshold_problem's bounds. Reports already
        taken are counted against it at the entry's next false_positive report."""
        ...

    def served_lists(self, actor: str, match_id: bytes, since: float) -> list[str]:
        """The lists whose entry `match_id` was served to `actor` (a check's audit) since then."""
        ...

    def report_feedback(
        self, list_name: str, match_id: bytes, actor: str, tenant: str, verdict: str, reason: str
    ) -> bool:
        """Record a tenant's verdict on an entry (replacing its earlier one); quarantine
        the entry when its list's threshold of tenants report false_positive. Returns
        whether this report quarantined it; NoSuchMatch if the entry is gone."""
        ...

    def review_queue(self, list_names: Sequence[str] | None) -> list[ReviewItem]:
        """Flagged and reported entries of these lists (None: every list), quarantined first."""
        ...

    def decide_entry(self, list_name: str, match_id: bytes, decision: str) -> str:
        """confirm, remove or keep an entry; returns its state after. NoSuchMatch if the
        list holds no such entry."""
        ...

    def feedback_counts(self, list_name: str, after_seq: int, limit: int) -> list[FeedbackCounts]:
        """Counts per entry of a list copied from elsewhere, for the entries whose feedback
        changed after `after_seq`, oldest change first."""
        ...

    def apply_remote_feedback(
        self, source: str, list_name: str, counts: Sequence[FeedbackCounts], through: int
    ) -> list[FeedbackCounts]:
        """Keep counts pulled from a downstream copy of `list_name` and advance `source`'s
        cursor, at once. Only counts on entries of that list are kept (a downstream must not
        pin evidence on our other entries); returns those refused. NoSuchList if none."""
        ...

    def close(self) -> None: ...


def store_url_env(url: str) -> dict[str, str]:
    """This process's environment plus the store URL, for a child process."""
    return {**os.environ, STORE_URL_ENV: url}


def open_store(url: str) -> Store:
    """Open a store by URL: `sqlite:///relative.db`, `sqlite:////absolute/path.db`, or
    `postgresql://user@host:port/database` (any libpq URI)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StoreURLError(f"store URL {url!r} has no scheme; try sqlite:///./hashmatch.db")
    if scheme == "sqlite":
        from indexer.store.sqlite import SqliteStore

        if not rest.startswith("/") or rest == "/":
            raise StoreURLError(f"store URL {url!r}: expected sqlite:///PATH")
        return SqliteStore(rest[1:])
    if scheme in ("postgresql", "postgres"):
        from indexer.store.postgresql import PostgresStore

        return PostgresStore(url)
    raise StoreURLError(
        f"store URL {url!r}: unsupported scheme {scheme!r} (supported: sqlite, postgresql)"
    )


__all__ = ["NewEntry"]
