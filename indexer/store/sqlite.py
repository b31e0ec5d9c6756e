"""SQLite hash store: the embedded default.

WAL with synchronous=FULL, so a committed (acknowledged) write survives a
kill -9 or power loss. The schema is versioned through PRAGMA user_version.
A database another process keeps locked past the busy timeout is
StoreUnavailable, as a PostgreSQL outage is: retryable, not a server fault.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from indexer.store import StoreUnavailable
from indexer.store.malformed import ENTRY_COLUMNS, MOVED_BY, MOVED_SQL, length_sql, log_moved
from indexer.store.sql import Cursor, SqlStore

_RIGHT_LENGTH, _WRONG_LENGTH = length_sql("length")
_NEW_RIGHT_LENGTH, _ = length_sql("length", "NEW.")

BUSY = "the store is busy (locked by another writer); retry shortly"

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE lists (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE TABLE entries (
        id INTEGER PRIMARY KEY,
        list_id INTEGER NOT NULL REFERENCES lists(id),
        signal TEXT NOT NULL,
        hash BLOB NOT NULL,
        match_id BLOB NOT NULL UNIQUE,
        quality INTEGER,
        source_ref TEXT,
        added_at TEXT NOT NULL,
        UNIQUE (list_id, signal, hash)
    );
    CREATE INDEX entries_by_signal ON entries (signal, id);
    """,
    # 2: list metadata, provenance, victim cases, the change log, sync cursors. An entry is
    # unique per (list, hash, origin): two victims may submit the same photo, and one
    # withdrawing must not end the other's protection.
    """
    ALTER TABLE lists ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE lists ADD COLUMN trust TEXT NOT NULL DEFAULT 'unverified';
    ALTER TABLE lists ADD COLUMN description TEXT NOT NULL DEFAULT '';
    CREATE TABLE entries_v2 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        list_id INTEGER NOT NULL REFERENCES lists(id),
        signal TEXT NOT NULL,
        hash BLOB NOT NULL,
        match_id BLOB NOT NULL UNIQUE,
        quality INTEGER,
        source_ref TEXT,
        submitter TEXT NOT NULL DEFAULT '',
        origin TEXT NOT NULL DEFAULT '',
        added_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
        UNIQUE (list_id, signal, hash, origin)
    );
    INSERT INTO entries_v2 (id, list_id, signal, hash, match_id, quality, source_ref, added_at)
        SELECT id, list_id, signal, hash, match_id, quality, source_ref, added_at FROM entries;
    DROP TABLE entries;
    ALTER TABLE entries_v2 RENAME TO entries;
    CREATE INDEX entries_by_signal ON entries (signal, id);
    CREATE INDEX entries_by_origin ON entries (origin) WHERE origin <> '';
    CREATE TABLE cases (
        id TEXT PRIMARY KEY,
        secret_salt BLOB NOT NULL,
        secret_hash BLOB NOT NULL,
        created_at TEXT NOT NULL,
        withdrawn_at TEXT
    );
    CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        op TEXT NOT NULL CHECK (op IN ('add', 'remove')),
        at REAL NOT NULL,
        entry_id INTEGER NOT NULL,
        list_id INTEGER NOT NULL REFERENCES lists(id),
        signal TEXT NOT NULL,
        hash BLOB NOT NULL,
        match_id BLOB NOT NULL,
        quality INTEGER,
        source_ref TEXT
    );
    CREATE INDEX changes_by_list ON changes (list_id, seq);
    INSERT INTO changes (op, at, entry_id, list_id, signal, hash, match_id, quality, source_ref)
        SELECT 'add', CAST(strftime('%s', 'now') AS REAL), id, list_id, signal, hash, match_id,
            quality, source_ref
        FROM entries ORDER BY id;
    CREATE TABLE sync_cursors (
        source TEXT PRIMARY KEY,
        cursor INTEGER NOT NULL
    );
    """,
    # 3: API keys (salted hashes only), the append-only audit log, entries flagged for
    # matching far more than their list's norm, and each list's quarantine policy.
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        roles TEXT NOT NULL,
        lists TEXT,
        rate REAL,
        secret_salt BLOB NOT NULL,
        secret_hash BLOB NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        list TEXT,
        detail TEXT NOT NULL
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TABLE entry_flags (
        match_id BLOB PRIMARY KEY,
        list_id INTEGER NOT NULL REFERENCES lists(id),
        state TEXT NOT NULL CHECK (state IN ('flagged', 'quarantined', 'confirmed')),
        matches INTEGER NOT NULL,
        at REAL NOT NULL
    );
    ALTER TABLE lists ADD COLUMN quarantine INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: which variant of a submitted image an entry is (hashmatch.variants).
    """
    ALTER TABLE entries ADD COLUMN variant TEXT NOT NULL DEFAULT '';
    ALTER TABLE changes ADD COLUMN variant TEXT NOT NULL DEFAULT '';
    """,
    # 5: a hash must be bytes of its signal's length (hashmatch.signals); rows already
    # stored wrong move to malformed_entries, with the reason (indexer.store.malformed).
    # Triggers rather than a CHECK, which SQLite could add only by rebuilding entries.
    f"""
    CREATE TABLE malformed_entries (
        id INTEGER PRIMARY KEY,
        list_id INTEGER NOT NULL,
        signal TEXT NOT NULL,
        hash BLOB,
        match_id BLOB NOT NULL,
        quality INTEGER,
        source_ref TEXT,
        submitter TEXT NOT NULL,
        origin TEXT NOT NULL,
        added_at TEXT NOT NULL,
        variant TEXT NOT NULL,
        reason TEXT NOT NULL,
        moved_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
    );
    INSERT INTO malformed_entries ({ENTRY_COLUMNS}, reason)
        SELECT {ENTRY_COLUMNS}, CASE WHEN typeof(hash) <> 'blob'
            THEN signal || ' hash is stored as ' || typeof(hash) || ', not bytes'
            ELSE {_WRONG_LENGTH} END
        FROM entries WHERE NOT (typeof(hash) = 'blob' AND {_RIGHT_LENGTH});
    DELETE FROM entries WHERE id IN (SELECT id FROM malformed_entries);
    CREATE TRIGGER entries_hash_length BEFORE INSERT ON entries
        WHEN NOT (typeof(NEW.hash) = 'blob' AND {_NEW_RIGHT_LENGTH})
        BEGIN SELECT RAISE(ABORT, 'entries_hash_length: wrong hash length for its signal'); END;
    CREATE TRIGGER entries_hash_length_update BEFORE UPDATE OF signal, hash ON entries
        WHEN NOT (typeof(NEW.hash) = 'blob' AND {_NEW_RIGHT_LENGTH})
        BEGIN SELECT RAISE(ABORT, 'entries_hash_length: wrong hash length for its signal'); END;
    """,
    # 6: each key's burst, the most one call may take from its bucket (NULL: 2 s of rate).
    """
    ALTER TABLE api_keys ADD COLUMN burst REAL;
    """,
    # 7: the audit log's one way to shrink, `hashmatch audit --prune-before`: its
    # transaction names the cutoff in audit_pruning, deletes older events and the cutoff
    # again, so no other delete ever finds a cutoff.
    """
    CREATE TABLE audit_pruning (cutoff REAL NOT NULL);
    DROP TRIGGER audit_no_delete;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        WHEN NOT EXISTS (SELECT 1 FROM audit_pruning WHERE OLD.at < cutoff)
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
    # 8: keys that learn match / no match only, never a distance (a distance oracle lets
    # a checker walk to the stored hash).
    """
    ALTER TABLE api_keys ADD COLUMN match_only INTEGER NOT NULL DEFAULT 0;
    """,
    # 9: each entry's content id, the integer HMA's bank routes name it by: random in
    # [1, 2^53 - 1], so it tells nothing of a list's size or order. The backfill re-draws
    # the ids that collide (twice over: a third collision is out of reach) before the
    # unique index is built.
    """
    ALTER TABLE entries ADD COLUMN content_id INTEGER;
    UPDATE entries SET content_id = (abs(random()) % 9007199254740991) + 1;
    CREATE INDEX entries_content_draw ON entries (content_id);
    UPDATE entries SET content_id = (abs(random()) % 9007199254740991) + 1
        WHERE EXISTS (SELECT 1 FROM entries o
                      WHERE o.content_id = entries.content_id AND o.id < entries.id);
    UPDATE entries SET content_id = (abs(random()) % 9007199254740991) + 1
        WHERE EXISTS (SELECT 1 FROM entries o
                      WHERE o.content_id = entries.content_id AND o.id < entries.id);
    DROP INDEX entries_content_draw;
    CREATE UNIQUE INDEX entries_by_content_id ON entries (content_id);
    """,
    # 10: match feedback. Each list's
    # feedback threshold; which entries each key was served (from its audit, for the
    # feedback window); one verdict per tenant and entry (the latest), with a sequence
    # number for the upstream's feed; what flagged an entry and when it was reviewed; a
    # version that changes with every quarantine, which servers poll; and the counts
    # pulled from downstream copies of our lists.
    """
    ALTER TABLE lists ADD COLUMN feedback_threshold INTEGER NOT NULL DEFAULT 2
        CHECK (feedback_threshold >= 1);
    UPDATE lists SET feedback_threshold = 3 WHERE name = 'victim-cases';
    CREATE TABLE served (
        actor TEXT NOT NULL,
        list TEXT NOT NULL,
        match_id BLOB NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (actor, match_id, list)
    );
    CREATE INDEX served_by_at ON served (at);
    CREATE TABLE feedback (
        list_id INTEGER NOT NULL REFERENCES lists(id),
        match_id BLOB NOT NULL,
        tenant TEXT NOT NULL,
        actor TEXT NOT NULL,
        verdict TEXT NOT NULL
            CHECK (verdict IN ('confirmed', 'false_positive', 'pending_review')),
        reason TEXT NOT NULL CHECK (reason IN ('', 'benign_content', 'different_image',
            'common_image', 'low_detail', 'listed_content', 'other')),
        at REAL NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (list_id, match_id, tenant)
    );
    CREATE INDEX feedback_by_seq ON feedback (list_id, seq);
    ALTER TABLE entry_flags ADD COLUMN cause TEXT NOT NULL DEFAULT 'anomaly'
        CHECK (cause IN ('anomaly', 'feedback'));
    ALTER TABLE entry_flags ADD COLUMN reviewed_at REAL;
    CREATE TABLE flag_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL
    );
    INSERT INTO flag_version (id, version) VALUES (1, 0);
    CREATE TABLE remote_feedback (
        source TEXT NOT NULL,
        match_id BLOB NOT NULL,
        confirmed INTEGER NOT NULL,
        false_positive INTEGER NOT NULL,
        pending_review INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (source, match_id)
    );
    CREATE INDEX remote_feedback_by_match ON remote_feedback (match_id);
    """,
    # 11: per-list policy and negative lists. A list is a match list or a negative list
    # (hashes that must never produce a match for its tenant; no tenant: for everyone); each
    # may match within less than a signal's threshold.
    """
    ALTER TABLE lists ADD COLUMN kind TEXT NOT NULL DEFAULT 'match'
        CHECK (kind IN ('match', 'negative'));
    ALTER TABLE lists ADD COLUMN tenant TEXT;
    CREATE TABLE list_distances (
        list_id INTEGER NOT NULL REFERENCES lists(id),
        signal TEXT NOT NULL,
        max_distance INTEGER NOT NULL CHECK (max_distance >= 0),
        PRIMARY KEY (list_id, signal)
    );
    """,
)


class SqliteStore(SqlStore):
    def __init__(self, path: str) -> None:
        super().__init__()
        parent = Path(path).parent
        if not parent.is_dir():
            raise FileNotFoundError(f"no directory {str(parent)!r} for the SQLite store")
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._migrate()

    def _migrate(self) -> None:
        version: int = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"store {self.path} has schema version {version}; "
                f"this hashmatch knows up to {len(MIGRATIONS)}"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.executescript(
                f"BEGIN IMMEDIATE; {script}; PRAGMA user_version={number}; COMMIT;"
            )
        if version < MOVED_BY <= len(MIGRATIONS):
            log_moved(self._db.execute(MOVED_SQL).fetchall())

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[Cursor]:
        try:
            cur = self._db.cursor()
            cur.execute(begin)
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            # SQLITE_BUSY and SQLITE_LOCKED: another connection held the lock too long.
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise StoreUnavailable(BUSY) from exc
            raise

    def _begin_write(self) -> AbstractContextManager[Cursor]:
        return self._transaction("BEGIN IMMEDIATE")

    def _begin_read(self) -> AbstractContextManager[Cursor]:
        # A deferred transaction in WAL mode reads one committed state throughout.
        return self._transaction("BEGIN")

    def close(self) -> None:
        self._db.close()
