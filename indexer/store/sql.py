"""The SQL both backends share; each backend supplies its connection, transactions,
placeholder style and migrations.

Writers are serialized (SQLite's write lock; a PostgreSQL advisory lock), so
change log sequence numbers are handed out in commit order: a reader that has
seen change N has seen every change before it, which is what lets a cursor
stand for "everything up to here".
"""

from __future__ import annotations

import itertools
import json
import math
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, Protocol

from hashmatch.bounds import (
    DESCRIPTION,
    LIST_NAME,
    OWNER,
    SOURCE_REF,
    SUBMITTER,
    TENANT,
    VARIANT,
)
from hashmatch.feedback import (
    CASE_LIST_THRESHOLD,
    DECISIONS,
    DEFAULT_THRESHOLD,
    threshold_problem,
    verdict_problem,
)
from hashmatch.video_entries import VPDQ
from indexer.credentials import (
    api_key_token,
    hash_secret,
    new_salt,
    new_secret,
    secret_matches,
)
from indexer.store import (
    CASE_LIST,
    LIST_KINDS,
    MAX_CONTENT_ID,
    ROLES,
    TRUST_LEVELS,
    AddCounts,
    ApiKey,
    AuditEvent,
    CaseReceipt,
    CaseStatus,
    Change,
    EntryFlag,
    EntryRow,
    FeedbackCounts,
    InvalidValue,
    ListExists,
    ListInfo,
    ListPolicy,
    NewEntry,
    NoSuchCase,
    NoSuchList,
    NoSuchMatch,
    ReviewItem,
    StoreImage,
    TenantReport,
    distance_problem,
    new_entry_rows,
    signal_entries,
    video_frame_entries,
    whose,
)

BATCH = 10_000

# The second term lets the planner use the partial index on non-empty origins.
BY_ORIGIN = "origin = ? AND origin <> ''"
_CHANGE_COLUMNS = "entry_id, list_id, signal, hash, match_id, quality, source_ref, variant, frames"


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, sql: Any, params: Any, /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _check_distances(distances: Mapping[str, int | None]) -> None:
    """InvalidValue for a list distance the index can't honour (None: the threshold)."""
    for signal, distance in distances.items():
        if (problem := distance_problem(signal, 0 if distance is None else distance)) is not None:
            raise InvalidValue(problem)


def _check_threshold(list_name: str, tenants: int) -> None:
    if (problem := threshold_problem(tenants, list_name == CASE_LIST)) is not None:
        raise InvalidValue(problem)


class SqlStore(ABC):
    placeholder = "?"

    def __init__(self) -> None:
        # One connection per store object, shared by the service's threads.
        self._lock = threading.RLock()

    @abstractmethod
    def _begin_write(self) -> AbstractContextManager[Cursor]:
        """A transaction that holds the store's single writer lock until it commits."""

    @abstractmethod
    def _begin_read(self) -> AbstractContextManager[Cursor]:
        """A transaction whose reads all see one committed state."""

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        with self._lock, self._begin_write() as cur:
            yield cur

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        with self._lock, self._begin_read() as cur:
            yield cur

    def _q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _one(self, cur: Cursor, sql: str, *params: Any) -> Any:
        cur.execute(self._q(sql), params)
        return cur.fetchone()

    def _all(self, cur: Cursor, sql: str, *params: Any) -> list[Any]:
        cur.execute(self._q(sql), params)
        return cur.fetchall()

    # Lists

    def _list_id(self, cur: Cursor, name: str) -> int | None:
        row = self._one(cur, "SELECT id FROM lists WHERE name = ?", name)
        return None if row is None else int(row[0])

    def _insert_list(
        self,
        cur: Cursor,
        name: str,
        owner: str,
        trust: str,
        description: str,
        kind: str = "match",
        tenant: str | None = None,
    ) -> int:
        LIST_NAME.check(name, InvalidValue)
        OWNER.check(owner, InvalidValue)
        DESCRIPTION.check(description, InvalidValue)
        if trust not in TRUST_LEVELS:
            raise InvalidValue(f"trust level {trust!r} is not one of {', '.join(TRUST_LEVELS)}")
        if kind not in LIST_KINDS:
            raise InvalidValue(f"list kind {kind[:40]!r} is not one of {', '.join(LIST_KINDS)}")
        if tenant is not None:
            if kind != "negative":
                raise InvalidValue("only a negative list belongs to one tenant")
            TENANT.check(tenant, InvalidValue)
        threshold = CASE_LIST_THRESHOLD if name == CASE_LIST else DEFAULT_THRESHOLD
        cur.execute(
            self._q(
                "INSERT INTO lists (name, owner, trust, description, kind, tenant, created_at,"
                " feedback_threshold) VALUES (?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP, ?)"
            ),
            (name, owner, trust, description, kind, tenant, threshold),
        )
        list_id = self._list_id(cur, name)
        assert list_id is not None
        return list_id

    def _ensure_list(
        self,
        cur: Cursor,
        name: str,
        create: bool,
        trust: str = "unverified",
        kind: str = "match",
        tenant: str | None = None,
    ) -> int:
        list_id = self._list_id(cur, name)
        if list_id is not None:
            return list_id
        if not create:
            raise NoSuchList(name)
        return self._insert_list(cur, name, "", trust, "", kind, tenant)

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
        LIST_NAME.check(name, InvalidValue)
        _check_distances(max_distances or {})
        if feedback_threshold is not None:
            _check_threshold(name, feedback_threshold)
        with self._write() as cur:
            if self._list_id(cur, name) is not None:
                raise ListExists(f"a list named {name!r} exists already")
            list_id = self._insert_list(cur, name, owner, trust, description, kind, tenant)
            self._set_distances(cur, list_id, max_distances or {})
            if feedback_threshold is not None:
                self._set_threshold(cur, list_id, feedback_threshold)
            if quarantine:
                cur.execute(
                    self._q("UPDATE lists SET quarantine = ? WHERE id = ?"), (True, list_id)
                )
        return self.list_info(name)

    def list_info(self, name: str) -> ListInfo:
        with self._read() as cur:
            row = self._one(
                cur,
                "SELECT id, owner, trust, description, created_at, quarantine,"
                " feedback_threshold, kind, tenant FROM lists WHERE name = ?",
                name,
            )
            if row is None:
                raise NoSuchList(name)
            counts = self._all(
                cur,
                "SELECT signal, COUNT(*) FROM entries WHERE list_id = ? GROUP BY signal"
                " ORDER BY signal",
                row[0],
            )
            last = self._one(
                cur, "SELECT COALESCE(MAX(seq), 0) FROM changes WHERE list_id = ?", row[0]
            )
            distances = self._all(
                cur, "SELECT signal, max_distance FROM list_distances WHERE list_id = ?", row[0]
            )
        return ListInfo(
            name,
            str(row[1]),
            str(row[2]),
            str(row[3]),
            _iso(row[4]),
            {str(s): int(n) for s, n in counts},
            int(last[0]),
            bool(row[5]),
            int(row[6]),
            str(row[7]),
            None if row[8] is None else str(row[8]),
            {str(s): int(d) for s, d in distances},
        )

    def set_list_distances(self, list_name: str, distances: Mapping[str, int | None]) -> None:
        _check_distances(distances)
        with self._write() as cur:
            list_id = self._ensure_list(cur, list_name, create=False)
            self._set_distances(cur, list_id, distances)

    def _set_distances(
        self, cur: Cursor, list_id: int, distances: Mapping[str, int | None]
    ) -> None:
        for signal, distance in distances.items():
            cur.execute(
                self._q("DELETE FROM list_distances WHERE list_id = ? AND signal = ?"),
                (list_id, signal),
            )
            if distance is not None:
                cur.execute(
                    self._q(
                        "INSERT INTO list_distances (list_id, signal, max_distance)"
                        " VALUES (?, ?, ?)"
                    ),
                    (list_id, signal, distance),
                )

    def list_policies(self) -> list[ListPolicy]:
        with self._read() as cur:
            rows = self._all(cur, "SELECT id, name, kind, tenant, quarantine FROM lists")
            distances = self._all(cur, "SELECT list_id, signal, max_distance FROM list_distances")
        by_list: dict[int, dict[str, int]] = {}
        for list_id, signal, distance in distances:
            by_list.setdefault(int(list_id), {})[str(signal)] = int(distance)
        return [
            ListPolicy(
                str(name),
                str(kind),
                None if tenant is None else str(tenant),
                bool(quarantine),
                by_list.get(int(list_id), {}),
            )
            for list_id, name, kind, tenant, quarantine in rows
        ]

    def lists(self) -> dict[int, str]:
        with self._read() as cur:
            return {int(i): str(n) for i, n in self._all(cur, "SELECT id, name FROM lists")}

    # Adding and removing, always with change log lines

    def _draw_content_ids(self, cur: Cursor, n: int) -> list[int]:
        """`n` random content ids that no entry holds. Writers are serialized, so none can
        be taken between this check and the insert; the unique index is the backstop."""
        chosen: set[int] = set()
        while len(chosen) < n:
            fresh = list({secrets.randbelow(MAX_CONTENT_ID) + 1 for _ in range(n - len(chosen))})
            for at in range(0, len(fresh), 500):
                chunk = [c for c in fresh[at : at + 500] if c not in chosen]
                if not chunk:
                    continue
                marks = ", ".join("?" * len(chunk))
                held = {
                    int(r[0])
                    for r in self._all(
                        cur, f"SELECT content_id FROM entries WHERE content_id IN ({marks})", *chunk
                    )
                }
                chosen.update(c for c in chunk if c not in held)
        return list(chosen)

    def _insert(self, cur: Cursor, rows: Sequence[EntryRow]) -> int:
        """Insert entry rows (duplicates skipped) and log an add for each one inserted."""
        for row in rows:  # the callers check these too; this is the last line of defence
            SOURCE_REF.check(row[5], InvalidValue)
            SUBMITTER.check(row[6], InvalidValue)
            VARIANT.check(row[8], InvalidValue)
        before = int(self._one(cur, "SELECT COALESCE(MAX(id), 0) FROM entries")[0])
        content_ids = self._draw_content_ids(cur, len(rows))
        cur.executemany(
            self._q(
                "INSERT INTO entries (list_id, signal, hash, match_id, quality, source_ref,"
                " submitter, origin, variant, frames, content_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING"
            ),
            [(*row, c) for row, c in zip(rows, content_ids, strict=True)],
        )
        inserted = cur.rowcount
        after = int(self._one(cur, "SELECT COALESCE(MAX(id), 0) FROM entries")[0])
        # Writers are serialized, so this transaction's entries are exactly those in
        # (before, after]. Both bounds keep a generic (prepared) plan on the id index.
        cur.execute(
            self._q(
                f"INSERT INTO changes (op, at, {_CHANGE_COLUMNS})"
                f" SELECT 'add', ?, {_CHANGE_COLUMNS.replace('entry_id', 'id')}"
                " FROM entries WHERE id > ? AND id <= ? ORDER BY id"
            ),
            (time.time(), before, after),
        )
        return inserted

    def _remove_where(self, cur: Cursor, where: str, params: Sequence[Any]) -> int:
        cur.execute(
            self._q(
                f"INSERT INTO changes (op, at, {_CHANGE_COLUMNS})"
                f" SELECT 'remove', ?, {_CHANGE_COLUMNS.replace('entry_id', 'id')}"
                f" FROM entries WHERE {where}"
            ),
            (time.time(), *params),
        )
        cur.execute(self._q(f"DELETE FROM entries WHERE {where}"), tuple(params))
        return cur.rowcount

    def add_entries(
        self,
        list_name: str,
        entries: Iterable[NewEntry],
        *,
        submitter: str = "",
        create: bool = True,
    ) -> AddCounts:
        """Add in batches, each committed on its own: a crash loses at most the batch in
        flight, and re-running the same import is idempotent (duplicates are skipped)."""
        added = duplicates = 0
        with self._write() as cur:
            list_id = self._ensure_list(cur, list_name, create)
        it = iter(entries)
        while batch := list(itertools.islice(it, BATCH)):
            with self._write() as cur:
                inserted = self._insert(cur, new_entry_rows(list_id, batch, submitter))
            added += inserted
            duplicates += len(batch) - inserted
        return AddCounts(added, duplicates)

    def remove_entries(self, list_name: str, keys: Iterable[tuple[str, bytes]]) -> int:
        removed = 0
        it = iter(keys)
        while batch := list(itertools.islice(it, BATCH)):
            with self._write() as cur:
                list_id = self._ensure_list(cur, list_name, create=False)
                for signal, hash_bytes in batch:
                    removed += self._remove_where(
                        cur,
                        "list_id = ? AND signal = ? AND hash = ?",
                        (list_id, signal, hash_bytes),
                    )
        return removed

    # Victim cases

    def create_case(self, entries: Sequence[NewEntry]) -> CaseReceipt:
        case_id, secret, salt = secrets.token_hex(8), new_secret(), new_salt()
        with self._write() as cur:
            list_id = self._ensure_list(cur, CASE_LIST, create=True, trust="victim")
            cur.execute(
                self._q(
                    "INSERT INTO cases (id, secret_salt, secret_hash, created_at)"
                    " VALUES (?, ?, ?, CURRENT_TIMESTAMP)"
                ),
                (case_id, salt, hash_secret(secret, salt)),
            )
            added = self._insert(cur, new_entry_rows(list_id, entries, origin=f"case:{case_id}"))
        return CaseReceipt(case_id, secret, added)

    def _verify_case(self, cur: Cursor, case_id: str, secret: str) -> bool:
        """Whether the case is withdrawn; NoSuchCase unless the secret is right."""
        row = self._one(
            cur, "SELECT secret_salt, secret_hash, withdrawn_at FROM cases WHERE id = ?", case_id
        )
        if row is None or not secret_matches(secret, bytes(row[0]), bytes(row[1])):
            raise NoSuchCase(case_id)
        return row[2] is not None

    def withdraw_case(self, case_id: str, secret: str) -> int:
        with self._write() as cur:
            self._verify_case(cur, case_id, secret)
            removed = self._remove_where(cur, BY_ORIGIN, (f"case:{case_id}",))
            cur.execute(
                self._q("UPDATE cases SET withdrawn_at = CURRENT_TIMESTAMP WHERE id = ?"),
                (case_id,),
            )
        return removed

    def case_status(self, case_id: str, secret: str) -> CaseStatus:
        with self._read() as cur:
            withdrawn = self._verify_case(cur, case_id, secret)
            row = self._one(
                cur, f"SELECT COUNT(*) FROM entries WHERE {BY_ORIGIN}", f"case:{case_id}"
            )
        return CaseStatus(int(row[0]), withdrawn)

    # Content ids

    def content_ids(self, match_ids: Sequence[bytes]) -> dict[bytes, int]:
        with self._read() as cur:
            return {
                m: int(content_id)
                for m, content_id, _ in self._held_match_ids(cur, match_ids, "content_id")
            }

    def _held_match_ids(
        self, cur: Cursor, match_ids: Sequence[bytes], column: str
    ) -> Iterator[tuple[bytes, Any, int]]:
        """(match id, `column`, list id) of each entry holding one of these match ids."""
        for at in range(0, len(match_ids), 500):
            chunk = list(match_ids[at : at + 500])
            marks = ", ".join("?" * len(chunk))
            for match_id, value, list_id in self._all(
                cur,
                f"SELECT match_id, {column}, list_id FROM entries WHERE match_id IN ({marks})",
                *chunk,
            ):
                yield bytes(match_id), value, int(list_id)

    def content_id_of(self, list_name: str, signal: str, hash_bytes: bytes) -> int | None:
        with self._read() as cur:
            list_id = self._list_id(cur, list_name)
            if list_id is None:
                raise NoSuchList(list_name)
            row = self._one(
                cur,
                "SELECT content_id FROM entries WHERE list_id = ? AND signal = ? AND hash = ?"
                " ORDER BY id LIMIT 1",
                list_id,
                signal,
                hash_bytes,
            )
        return None if row is None else int(row[0])

    def remove_content(self, list_name: str, content_id: int) -> int:
        with self._write() as cur:
            list_id = self._ensure_list(cur, list_name, create=False)
            return self._remove_where(cur, "list_id = ? AND content_id = ?", (list_id, content_id))

    # Reading

    def list_entries(self, list_name: str) -> Iterator[NewEntry]:
        with self._read() as cur:
            list_id = self._list_id(cur, list_name)
            if list_id is None:
                raise NoSuchList(list_name)
            rows = self._all(
                cur,
                "SELECT signal, hash, quality, source_ref, variant, frames FROM entries"
                " WHERE list_id = ? ORDER BY id",
                list_id,
            )
        for signal, hash_bytes, quality, ref, variant, frames in rows:
            yield NewEntry(
                str(signal), bytes(hash_bytes), quality, ref, str(variant), bytes(frames or b"")
            )

    def read_image(self, nbytes: Mapping[str, int]) -> StoreImage:
        with self._read() as cur:
            lists = {int(i): str(n) for i, n in self._all(cur, "SELECT id, name FROM lists")}
            last_seq = int(self._one(cur, "SELECT COALESCE(MAX(seq), 0) FROM changes")[0])
            names = [
                str(r[0])
                for r in self._all(cur, "SELECT DISTINCT signal FROM entries ORDER BY signal")
            ]
            malformed: list[str] = []
            signals = {
                name: (video_frame_entries if name == VPDQ else signal_entries)(
                    name,
                    self._all(
                        cur,
                        f"SELECT id, list_id, {'frames' if name == VPDQ else 'hash'}, match_id,"
                        " variant FROM entries WHERE signal = ? ORDER BY id",
                        name,
                    ),
                    nbytes[name],
                    malformed,
                )
                for name in names
                if name in nbytes
            }
        return StoreImage(
            lists, last_seq, signals, [n for n in names if n not in nbytes], malformed
        )

    def changes(self, after_seq: int, limit: int, list_name: str | None = None) -> list[Change]:
        sql = (
            "SELECT c.seq, c.op, c.entry_id, l.name, c.signal, c.hash, c.match_id, c.quality,"
            " c.source_ref, c.at, c.variant, c.frames FROM changes c"
            " JOIN lists l ON l.id = c.list_id WHERE c.seq > ?"
        )
        params: list[Any] = [after_seq]
        if list_name is not None:
            sql += " AND l.name = ?"
            params.append(list_name)
        with self._read() as cur:
            rows = self._all(cur, sql + " ORDER BY c.seq LIMIT ?", *params, limit)
        return [
            Change(
                int(r[0]),
                str(r[1]),
                int(r[2]),
                str(r[3]),
                str(r[4]),
                bytes(r[5]),
                bytes(r[6]),
                r[7],
                r[8],
                float(r[9]),
                str(r[10]),
                bytes(r[11] or b""),
            )
            for r in rows
        ]

    def last_seq(self) -> int:
        with self._read() as cur:
            return int(self._one(cur, "SELECT COALESCE(MAX(seq), 0) FROM changes")[0])

    # Sync

    def sync_cursor(self, source: str) -> int:
        with self._read() as cur:
            row = self._one(cur, "SELECT cursor FROM sync_cursors WHERE source = ?", source)
        return 0 if row is None else int(row[0])

    def apply_sync(
        self,
        source: str,
        list_name: str,
        changes: Sequence[Change],
        through: int | None = None,
        kind: str = "match",
        tenant: str | None = None,
    ) -> dict[bytes, str]:
        if through is None:
            if not changes:
                return {}
            through = changes[-1].seq
        elsewhere: dict[bytes, str] = {}
        with self._write() as cur:
            list_id = self._ensure_list(cur, list_name, create=True, kind=kind, tenant=tenant)
            held_kind, held_tenant = self._one(
                cur, "SELECT kind, tenant FROM lists WHERE id = ?", list_id
            )
            if held_kind != kind:
                raise InvalidValue(
                    f"list {list_name!r} is a {held_kind} list here,"
                    f" and the remote's is a {kind} list"
                )
            if held_tenant != tenant:
                raise InvalidValue(
                    f"list {list_name!r} is {whose(held_tenant)} here, not {whose(tenant)}"
                )
            for op, group in itertools.groupby(changes, key=lambda c: c.op):
                batch = list(group)
                if op == "add":
                    # Match ids are unique store-wide: one another list holds is refused,
                    # loudly, rather than skipped as a re-applied add of this list is.
                    held = {
                        m: held_by
                        for m, _, held_by in self._held_match_ids(
                            cur, [c.match_id for c in batch], "id"
                        )
                        if held_by != list_id
                    }
                    if held:
                        names = {
                            int(i): str(n) for i, n in self._all(cur, "SELECT id, name FROM lists")
                        }
                        elsewhere.update((m, names[i]) for m, i in held.items())
                        batch = [c for c in batch if c.match_id not in held]
                    # The remote's match id is kept: it makes a re-applied add a duplicate,
                    # and both copies answer a checker with the same opaque id.
                    self._insert(
                        cur,
                        [
                            (
                                list_id,
                                c.signal,
                                c.hash,
                                c.match_id,
                                c.quality,
                                c.source_ref,
                                f"sync:{source}",
                                f"sync:{c.match_id.hex()}",
                                c.variant,
                                c.frames or None,
                            )
                            for c in batch
                        ],
                    )
                else:
                    for c in batch:
                        self._remove_where(
                            cur, "list_id = ? AND match_id = ?", (list_id, c.match_id)
                        )
            cur.execute(
                self._q(
                    "INSERT INTO sync_cursors (source, cursor) VALUES (?, ?)"
                    " ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor"
                ),
                (source, through),
            )
        return elsewhere

    # API keys

    def create_key(
        self,
        tenant: str,
        roles: Iterable[str],
        lists: Iterable[str] | None = None,
        rate: float | None = None,
        burst: float | None = None,
        match_only: bool = False,
    ) -> tuple[ApiKey, str]:
        roles = frozenset(roles)
        if not roles or not roles <= set(ROLES):
            raise InvalidValue(f"roles must be some of {', '.join(ROLES)}, got {sorted(roles)}")
        TENANT.check(tenant, InvalidValue)
        if rate is not None and not (rate >= 0 and math.isfinite(rate)):
            raise InvalidValue(f"a key's rate must be a number of hashes a second, not {rate}")
        if burst is not None and not (burst >= 1 and math.isfinite(burst)):
            raise InvalidValue(f"a key's burst must be a number of hashes, at least 1, not {burst}")
        scope = None if lists is None else frozenset(lists)
        key_id, secret, salt = secrets.token_hex(6), new_secret(), new_salt()
        key = ApiKey(
            key_id,
            tenant,
            roles,
            scope,
            rate,
            salt,
            hash_secret(secret, salt),
            time.time(),
            False,
            burst,
            match_only,
        )
        with self._write() as cur:
            cur.execute(
                self._q(
                    "INSERT INTO api_keys (id, tenant, roles, lists, rate, secret_salt,"
                    " secret_hash, created_at, burst, match_only)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                (
                    key_id,
                    tenant,
                    ",".join(sorted(roles)),
                    None if scope is None else json.dumps(sorted(scope)),
                    rate,
                    salt,
                    key.secret_hash,
                    key.created_at,
                    burst,
                    match_only,
                ),
            )
        return key, api_key_token(key_id, secret)

    def revoke_key(self, key_id: str) -> bool:
        with self._write() as cur:
            cur.execute(
                self._q("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"),
                (time.time(), key_id),
            )
            return cur.rowcount > 0

    def api_keys(self) -> list[ApiKey]:
        with self._read() as cur:
            rows = self._all(
                cur,
                "SELECT id, tenant, roles, lists, rate, secret_salt, secret_hash, created_at,"
                " revoked_at, burst, match_only FROM api_keys ORDER BY created_at",
            )
        return [
            ApiKey(
                str(r[0]),
                str(r[1]),
                frozenset(str(r[2]).split(",")),
                None if r[3] is None else frozenset(json.loads(r[3])),
                None if r[4] is None else float(r[4]),
                bytes(r[5]),
                bytes(r[6]),
                float(r[7]),
                r[8] is not None,
                None if r[9] is None else float(r[9]),
                bool(r[10]),
            )
            for r in rows
        ]

    # Audit log: appended to, never changed (the schema refuses updates, and deletes but
    # for prune_audit's)

    def _insert_audit(self, cur: Cursor, events: Sequence[AuditEvent]) -> None:
        cur.executemany(
            self._q("INSERT INTO audit (at, actor, action, list, detail) VALUES (?, ?, ?, ?, ?)"),
            [
                (e.at or time.time(), e.actor, e.action, e.list, json.dumps(e.detail))
                for e in events
            ],
        )

    def append_audit(self, events: Sequence[AuditEvent]) -> None:
        """Append events; a match event also marks its entry as served to its actor, which
        is what lets that actor report on it (feedback)."""
        if not events:
            return
        with self._write() as cur:
            self._insert_audit(cur, events)
            self._mark_served(cur, events)

    def _mark_served(self, cur: Cursor, events: Sequence[AuditEvent]) -> None:
        served: dict[tuple[str, bytes, str], float] = {}
        for e in events:
            if e.action == "match" and e.list and isinstance(e.detail.get("match_id"), str):
                try:
                    match_id = bytes.fromhex(e.detail["match_id"])
                except ValueError:
                    continue
                served[e.actor, match_id, e.list] = e.at or time.time()
        if served:
            cur.executemany(
                self._q(
                    "INSERT INTO served (actor, match_id, list, at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (actor, match_id, list) DO UPDATE SET at = excluded.at"
                ),
                [(*k, at) for k, at in served.items()],
            )

    def prune_audit(self, before: float, actor: str = "operator") -> int:
        with self._write() as cur:
            cur.execute(self._q("INSERT INTO audit_pruning (cutoff) VALUES (?)"), (before,))
            cur.execute(self._q("DELETE FROM audit WHERE at < ?"), (before,))
            removed = cur.rowcount
            cur.execute("DELETE FROM audit_pruning")
            cur.execute(self._q("DELETE FROM served WHERE at < ?"), (before,))
            pruned = AuditEvent(actor, "prune_audit", None, {"before": before, "removed": removed})
            self._insert_audit(cur, [pruned])
        return removed

    def audit_events(self, after_seq: int = 0, limit: int = 1000) -> list[AuditEvent]:
        with self._read() as cur:
            rows = self._all(
                cur,
                "SELECT seq, at, actor, action, list, detail FROM audit WHERE seq > ?"
                " ORDER BY seq LIMIT ?",
                after_seq,
                limit,
            )
        return [
            AuditEvent(str(r[2]), str(r[3]), r[4], json.loads(r[5]), float(r[1]), int(r[0]))
            for r in rows
        ]

    # Entries matching far above their list's norm

    def set_quarantine(self, list_name: str, quarantine: bool) -> None:
        with self._write() as cur:
            list_id = self._ensure_list(cur, list_name, create=False)
            cur.execute(
                self._q("UPDATE lists SET quarantine = ? WHERE id = ?"), (quarantine, list_id)
            )

    def flag_entry(self, match_id: bytes, matches: int) -> EntryFlag | None:
        with self._write() as cur:
            row = self._one(
                cur,
                "SELECT e.list_id, l.name, l.quarantine FROM entries e"
                " JOIN lists l ON l.id = e.list_id WHERE e.match_id = ?",
                match_id,
            )
            if row is None:
                return None
            existing = self._one(cur, "SELECT state FROM entry_flags WHERE match_id = ?", match_id)
            if existing is not None and existing[0] in ("confirmed", "quarantined"):
                state = str(existing[0])  # reviewed, or quarantined already (on evidence)
            else:
                state = "quarantined" if row[2] else "flagged"
            cur.execute(
                self._q(
                    "INSERT INTO entry_flags (match_id, list_id, state, matches, at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (match_id) DO UPDATE"
                    " SET state = excluded.state, matches = excluded.matches, at = excluded.at"
                ),
                (match_id, row[0], state, matches, time.time()),
            )
            self._bump_flags(cur)
        return EntryFlag(match_id, str(row[1]), state, matches, time.time())

    def confirm_entry(self, list_name: str, match_id: bytes) -> bool:
        with self._write() as cur:
            list_id = self._ensure_list(cur, list_name, create=False)
            cur.execute(
                self._q(
                    "UPDATE entry_flags SET state = 'confirmed', at = ?, reviewed_at = ?"
                    " WHERE match_id = ? AND list_id = ?"
                ),
                (time.time(), time.time(), match_id, list_id),
            )
            confirmed = cur.rowcount > 0
            self._bump_flags(cur)
            return confirmed

    def entry_flags(self) -> list[EntryFlag]:
        with self._read() as cur:
            rows = self._all(
                cur,
                "SELECT f.match_id, l.name, f.state, f.matches, f.at FROM entry_flags f"
                " JOIN lists l ON l.id = f.list_id ORDER BY f.at",
            )
        return [EntryFlag(bytes(r[0]), str(r[1]), str(r[2]), int(r[3]), float(r[4])) for r in rows]

    def _bump_flags(self, cur: Cursor) -> None:
        cur.execute("UPDATE flag_version SET version = version + 1 WHERE id = 1")

    def flags_version(self) -> int:
        with self._read() as cur:
            return int(self._one(cur, "SELECT version FROM flag_version WHERE id = 1")[0])

    # Match feedback

    def set_feedback_threshold(self, list_name: str, tenants: int) -> None:
        _check_threshold(list_name, tenants)
        with self._write() as cur:
            self._set_threshold(cur, self._ensure_list(cur, list_name, create=False), tenants)

    def _set_threshold(self, cur: Cursor, list_id: int, tenants: int) -> None:
        cur.execute(
            self._q("UPDATE lists SET feedback_threshold = ? WHERE id = ?"), (tenants, list_id)
        )

    def served_lists(self, actor: str, match_id: bytes, since: float) -> list[str]:
        with self._read() as cur:
            rows = self._all(
                cur,
                "SELECT list FROM served WHERE actor = ? AND match_id = ? AND at >= ?"
                " ORDER BY list",
                actor,
                match_id,
                since,
            )
        return [str(r[0]) for r in rows]

    def _entry_list(self, cur: Cursor, list_name: str, match_id: bytes) -> tuple[int, int]:
        """(list id, feedback threshold) of a list holding the entry; NoSuchMatch if none."""
        row = self._one(
            cur,
            "SELECT l.id, l.feedback_threshold FROM lists l JOIN entries e ON e.list_id = l.id"
            " WHERE l.name = ? AND e.match_id = ?",
            list_name,
            match_id,
        )
        if row is None:
            raise NoSuchMatch(match_id.hex())
        return int(row[0]), int(row[1])

    def report_feedback(
        self, list_name: str, match_id: bytes, actor: str, tenant: str, verdict: str, reason: str
    ) -> bool:
        if (problem := verdict_problem(verdict, reason)) is not None:
            raise InvalidValue(problem)
        TENANT.check(tenant, InvalidValue)
        now = time.time()
        with self._write() as cur:
            list_id, threshold = self._entry_list(cur, list_name, match_id)
            # Writers are serialized: sequence numbers follow commit order.
            seq = int(self._one(cur, "SELECT COALESCE(MAX(seq), 0) FROM feedback")[0]) + 1
            cur.execute(
                self._q(
                    "INSERT INTO feedback (list_id, match_id, tenant, actor, verdict, reason,"
                    " at, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (list_id, match_id, tenant) DO UPDATE SET actor = excluded.actor,"
                    " verdict = excluded.verdict, reason = excluded.reason, at = excluded.at,"
                    " seq = excluded.seq"
                ),
                (list_id, match_id, tenant, actor, verdict, reason, now, seq),
            )
            if verdict != "false_positive":
                return False
            flag = self._one(
                cur, "SELECT state, reviewed_at FROM entry_flags WHERE match_id = ?", match_id
            )
            if flag is not None and flag[0] == "quarantined":
                return False
            # After a manager confirmed the entry, only later reports count.
            since = float(flag[1] or 0) if flag is not None and flag[0] == "confirmed" else 0.0
            reporters = int(
                self._one(
                    cur,
                    "SELECT COUNT(*) FROM feedback WHERE list_id = ? AND match_id = ?"
                    " AND verdict = 'false_positive' AND at > ?",
                    list_id,
                    match_id,
                    since,
                )[0]
            )
            if reporters < threshold:
                return False
            cur.execute(
                self._q(
                    "INSERT INTO entry_flags (match_id, list_id, state, matches, at, cause)"
                    " VALUES (?, ?, 'quarantined', 0, ?, 'feedback') ON CONFLICT (match_id)"
                    " DO UPDATE SET state = 'quarantined', at = excluded.at, cause = 'feedback',"
                    " reviewed_at = NULL"
                ),
                (match_id, list_id, now),
            )
            self._bump_flags(cur)
        return True

    def review_queue(self, list_names: Sequence[str] | None) -> list[ReviewItem]:
        where, params = "", []
        if list_names is not None:
            if not list_names:
                return []
            where = f" AND l.name IN ({', '.join('?' * len(list_names))})"
            params = list(list_names)
        items: dict[tuple[str, bytes], ReviewItem] = {}
        with self._read() as cur:
            for match_id, name, state, cause, matches, at in self._all(
                cur,
                "SELECT f.match_id, l.name, f.state, f.cause, f.matches, f.at FROM entry_flags f"
                f" JOIN lists l ON l.id = f.list_id WHERE 1 = 1{where}",
                *params,
            ):
                key = (str(name), bytes(match_id))
                items[key] = ReviewItem(*key, str(state), str(cause), int(matches), float(at))
            for name, match_id, tenant, verdict, reason, at in self._all(
                cur,
                "SELECT l.name, f.match_id, f.tenant, f.verdict, f.reason, f.at FROM feedback f"
                " JOIN lists l ON l.id = f.list_id JOIN entries e"
                f" ON e.list_id = f.list_id AND e.match_id = f.match_id WHERE 1 = 1{where}"
                " ORDER BY f.at",
                *params,
            ):
                key = (str(name), bytes(match_id))
                item = items.setdefault(key, ReviewItem(*key, "reported", ""))
                item.reports.append(TenantReport(str(tenant), str(verdict), str(reason), float(at)))
            for name, source, match_id, seq, confirmed, false_positive, pending in self._all(
                cur,
                "SELECT l.name, r.source, r.match_id, r.seq, r.confirmed, r.false_positive,"
                " r.pending_review FROM remote_feedback r JOIN entries e ON e.match_id ="
                f" r.match_id JOIN lists l ON l.id = e.list_id WHERE 1 = 1{where}"
                " ORDER BY r.source",
                *params,
            ):
                key = (str(name), bytes(match_id))
                item = items.setdefault(key, ReviewItem(*key, "reported", ""))
                item.remote.append(
                    FeedbackCounts(
                        key[1],
                        int(seq),
                        int(confirmed),
                        int(false_positive),
                        int(pending),
                        str(source),
                    )
                )
        rank = {"quarantined": 0, "flagged": 1, "reported": 2, "confirmed": 3}
        return sorted(
            items.values(),
            key=lambda i: (rank.get(i.state, 4), -max(i.state_at, i.last_report_at)),
        )

    def decide_entry(self, list_name: str, match_id: bytes, decision: str) -> str:
        if decision not in DECISIONS:
            raise InvalidValue(f"decision {decision[:40]!r} is not one of {', '.join(DECISIONS)}")
        now = time.time()
        with self._write() as cur:
            list_id, _ = self._entry_list(cur, list_name, match_id)
            if decision == "remove":
                self._remove_where(cur, "list_id = ? AND match_id = ?", (list_id, match_id))
                cur.execute(self._q("DELETE FROM entry_flags WHERE match_id = ?"), (match_id,))
                state = "removed"
            else:
                state = "confirmed" if decision == "confirm" else "quarantined"
                cur.execute(
                    self._q(
                        "INSERT INTO entry_flags (match_id, list_id, state, matches, at, cause,"
                        " reviewed_at) VALUES (?, ?, ?, 0, ?, 'feedback', ?)"
                        " ON CONFLICT (match_id) DO UPDATE SET state = excluded.state,"
                        " at = excluded.at, reviewed_at = excluded.reviewed_at"
                    ),
                    (match_id, list_id, state, now, now),
                )
            self._bump_flags(cur)
        return state

    def feedback_counts(self, list_name: str, after_seq: int, limit: int) -> list[FeedbackCounts]:
        with self._read() as cur:
            list_id = self._list_id(cur, list_name)
            if list_id is None:
                raise NoSuchList(list_name)
            rows = self._all(
                cur,
                "SELECT f.match_id, MAX(f.seq),"
                " SUM(CASE WHEN f.verdict = 'confirmed' THEN 1 ELSE 0 END),"
                " SUM(CASE WHEN f.verdict = 'false_positive' THEN 1 ELSE 0 END),"
                " SUM(CASE WHEN f.verdict = 'pending_review' THEN 1 ELSE 0 END)"
                " FROM feedback f JOIN entries e"
                " ON e.list_id = f.list_id AND e.match_id = f.match_id"
                " WHERE f.list_id = ? AND e.origin LIKE ?"
                " GROUP BY f.match_id HAVING MAX(f.seq) > ? ORDER BY MAX(f.seq) LIMIT ?",
                list_id,
                "sync:%",  # copied entries only: a parameter, as % is psycopg's placeholder
                after_seq,
                limit,
            )
        return [
            FeedbackCounts(bytes(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows
        ]

    def apply_remote_feedback(
        self, source: str, list_name: str, counts: Sequence[FeedbackCounts], through: int
    ) -> list[FeedbackCounts]:
        SUBMITTER.check(source, InvalidValue)
        now = time.time()
        with self._write() as cur:
            list_id = self._list_id(cur, list_name)
            if list_id is None:
                raise NoSuchList(list_name)
            held = {
                bytes(r[0])
                for c in counts
                for r in self._all(
                    cur,
                    "SELECT match_id FROM entries WHERE list_id = ? AND match_id = ?",
                    list_id,
                    c.match_id,
                )
            }
            refused = [c for c in counts if c.match_id not in held]
            counts = [c for c in counts if c.match_id in held]
            cur.executemany(
                self._q(
                    "INSERT INTO remote_feedback (source, match_id, confirmed, false_positive,"
                    " pending_review, seq, at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (source, match_id) DO UPDATE SET confirmed = excluded.confirmed,"
                    " false_positive = excluded.false_positive,"
                    " pending_review = excluded.pending_review, seq = excluded.seq,"
                    " at = excluded.at"
                ),
                [
                    (
                        source,
                        c.match_id,
                        c.confirmed,
                        c.false_positive,
                        c.pending_review,
                        c.seq,
                        now,
                    )
                    for c in counts
                ],
            )
            cur.execute(
                self._q(
                    "INSERT INTO sync_cursors (source, cursor) VALUES (?, ?)"
                    " ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor"
                ),
                (f"feedback:{source}", through),
            )
        return refused
