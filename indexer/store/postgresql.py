"""PostgreSQL hash store: the production backend (psycopg 3).

Selected by a `postgresql://` store URL. Each batch commits on its own, and
PostgreSQL's commit is durable, so an acknowledged write survives a crash.
The schema is versioned in `hashmatch_schema`; migrations run under an
advisory lock, so several processes may start at once. Every write takes a
second advisory lock, so change log sequence numbers follow commit order.

A connection the database dropped (a restart, a failover) is reopened on next
use, with backoff while the database stays away; meanwhile every call fails
fast with StoreUnavailable, which the service answers as UNAVAILABLE.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from indexer.store import StoreUnavailable
from indexer.store.malformed import ENTRY_COLUMNS, MOVED_BY, MOVED_SQL, length_sql, log_moved
from indexer.store.sql import Cursor, SqlStore

_RIGHT_LENGTH, _WRONG_LENGTH = length_sql("octet_length")
log = logging.getLogger(__name__)

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE lists (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE entries (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        list_id BIGINT NOT NULL REFERENCES lists (id),
        signal TEXT NOT NULL,
        hash BYTEA NOT NULL,
        match_id BYTEA NOT NULL UNIQUE,
        quality INTEGER,
        source_ref TEXT,
        added_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (list_id, signal, hash)
    );
    CREATE INDEX entries_by_signal ON entries (signal, id);
    """,
    # 2: as SQLite's migration 2.
    """
    ALTER TABLE lists
        ADD COLUMN owner TEXT NOT NULL DEFAULT '',
        ADD COLUMN trust TEXT NOT NULL DEFAULT 'unverified',
        ADD COLUMN description TEXT NOT NULL DEFAULT '';
    ALTER TABLE entries
        ADD COLUMN submitter TEXT NOT NULL DEFAULT '',
        ADD COLUMN origin TEXT NOT NULL DEFAULT '',
        DROP CONSTRAINT entries_list_id_signal_hash_key,
        ADD CONSTRAINT entries_list_signal_hash_origin UNIQUE (list_id, signal, hash, origin);
    CREATE INDEX entries_by_origin ON entries (origin) WHERE origin <> '';
    CREATE TABLE cases (
        id TEXT PRIMARY KEY,
        secret_salt BYTEA NOT NULL,
        secret_hash BYTEA NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        withdrawn_at TIMESTAMPTZ
    );
    CREATE TABLE changes (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        op TEXT NOT NULL CHECK (op IN ('add', 'remove')),
        at DOUBLE PRECISION NOT NULL,
        entry_id BIGINT NOT NULL,
        list_id BIGINT NOT NULL REFERENCES lists (id),
        signal TEXT NOT NULL,
        hash BYTEA NOT NULL,
        match_id BYTEA NOT NULL,
        quality INTEGER,
        source_ref TEXT
    );
    CREATE INDEX changes_by_list ON changes (list_id, seq);
    INSERT INTO changes (op, at, entry_id, list_id, signal, hash, match_id, quality, source_ref)
        SELECT 'add', extract(epoch FROM now()), id, list_id, signal, hash, match_id, quality,
            source_ref
        FROM entries ORDER BY id;
    CREATE TABLE sync_cursors (
        source TEXT PRIMARY KEY,
        cursor BIGINT NOT NULL
    );
    """,
    # 3: as SQLite's migration 3.
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        roles TEXT NOT NULL,
        lists TEXT,
        rate DOUBLE PRECISION,
        secret_salt BYTEA NOT NULL,
        secret_hash BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    );
    CREATE TABLE audit (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        list TEXT,
        detail TEXT NOT NULL
    );
    CREATE FUNCTION hashmatch_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
    CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION hashmatch_audit_append_only();
    CREATE TABLE entry_flags (
        match_id BYTEA PRIMARY KEY,
        list_id BIGINT NOT NULL REFERENCES lists (id),
        state TEXT NOT NULL CHECK (state IN ('flagged', 'quarantined', 'confirmed')),
        matches BIGINT NOT NULL,
        at DOUBLE PRECISION NOT NULL
    );
    ALTER TABLE lists ADD COLUMN quarantine BOOLEAN NOT NULL DEFAULT false;
    """,
    # 4: which variant of a submitted image an entry is (hashmatch.variants).
    """
    ALTER TABLE entries ADD COLUMN variant TEXT NOT NULL DEFAULT '';
    ALTER TABLE changes ADD COLUMN variant TEXT NOT NULL DEFAULT '';
    """,
    # 5: as SQLite's migration 5, with a CHECK constraint.
    f"""
    CREATE TABLE malformed_entries (
        id BIGINT PRIMARY KEY,
        list_id BIGINT NOT NULL,
        signal TEXT NOT NULL,
        hash BYTEA,
        match_id BYTEA NOT NULL,
        quality INTEGER,
        source_ref TEXT,
        submitter TEXT NOT NULL,
        origin TEXT NOT NULL,
        added_at TIMESTAMPTZ NOT NULL,
        variant TEXT NOT NULL,
        reason TEXT NOT NULL,
        moved_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    INSERT INTO malformed_entries ({ENTRY_COLUMNS}, reason)
        SELECT {ENTRY_COLUMNS}, {_WRONG_LENGTH} FROM entries WHERE NOT ({_RIGHT_LENGTH});
    DELETE FROM entries WHERE id IN (SELECT id FROM malformed_entries);
    ALTER TABLE entries ADD CONSTRAINT entries_hash_length CHECK ({_RIGHT_LENGTH});
    """,
    # 6: each key's burst, the most one call may take from its bucket (NULL: 2 s of rate).
    """
    ALTER TABLE api_keys ADD COLUMN burst DOUBLE PRECISION;
    """,
    # 7: as SQLite's migration 7; TRUNCATE, which skips row triggers, is refused too.
    """
    CREATE TABLE audit_pruning (cutoff DOUBLE PRECISION NOT NULL);
    CREATE OR REPLACE FUNCTION hashmatch_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN
            IF TG_OP = 'DELETE' THEN
                IF EXISTS (SELECT 1 FROM audit_pruning WHERE OLD.at < cutoff) THEN
                    RETURN OLD;
                END IF;
            END IF;
            RAISE EXCEPTION 'the audit log is append-only';
        END $$;
    CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
        FOR EACH STATEMENT EXECUTE FUNCTION hashmatch_audit_append_only();
    """,
    # 8: as SQLite's migration 8.
    """
    ALTER TABLE api_keys ADD COLUMN match_only BOOLEAN NOT NULL DEFAULT false;
    """,
    # 9: as SQLite's migration 9.
    """
    ALTER TABLE entries ADD COLUMN content_id BIGINT;
    UPDATE entries SET content_id = floor(random() * 9007199254740991)::bigint + 1;
    CREATE INDEX entries_content_draw ON entries (content_id);
    UPDATE entries e SET content_id = floor(random() * 9007199254740991)::bigint + 1
        WHERE EXISTS (SELECT 1 FROM entries o WHERE o.content_id = e.content_id AND o.id < e.id);
    UPDATE entries e SET content_id = floor(random() * 9007199254740991)::bigint + 1
        WHERE EXISTS (SELECT 1 FROM entries o WHERE o.content_id = e.content_id AND o.id < e.id);
    DROP INDEX entries_content_draw;
    CREATE UNIQUE INDEX entries_by_content_id ON entries (content_id);
    """,
    # 10: as SQLite's migration 10.
    """
    ALTER TABLE lists ADD COLUMN feedback_threshold INTEGER NOT NULL DEFAULT 2
        CHECK (feedback_threshold >= 1);
    UPDATE lists SET feedback_threshold = 3 WHERE name = 'victim-cases';
    CREATE TABLE served (
        actor TEXT NOT NULL,
        list TEXT NOT NULL,
        match_id BYTEA NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (actor, match_id, list)
    );
    CREATE INDEX served_by_at ON served (at);
    CREATE TABLE feedback (
        list_id BIGINT NOT NULL REFERENCES lists (id),
        match_id BYTEA NOT NULL,
        tenant TEXT NOT NULL,
        actor TEXT NOT NULL,
        verdict TEXT NOT NULL
            CHECK (verdict IN ('confirmed', 'false_positive', 'pending_review')),
        reason TEXT NOT NULL CHECK (reason IN ('', 'benign_content', 'different_image',
            'common_image', 'low_detail', 'listed_content', 'other')),
        at DOUBLE PRECISION NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (list_id, match_id, tenant)
    );
    CREATE INDEX feedback_by_seq ON feedback (list_id, seq);
    ALTER TABLE entry_flags
        ADD COLUMN cause TEXT NOT NULL DEFAULT 'anomaly' CHECK (cause IN ('anomaly', 'feedback')),
        ADD COLUMN reviewed_at DOUBLE PRECISION;
    CREATE TABLE flag_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version BIGINT NOT NULL
    );
    INSERT INTO flag_version (id, version) VALUES (1, 0);
    CREATE TABLE remote_feedback (
        source TEXT NOT NULL,
        match_id BYTEA NOT NULL,
        confirmed INTEGER NOT NULL,
        false_positive INTEGER NOT NULL,
        pending_review INTEGER NOT NULL,
        seq BIGINT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (source, match_id)
    );
    CREATE INDEX remote_feedback_by_match ON remote_feedback (match_id);
    """,
    # 11: as SQLite's migration 11.
    """
    ALTER TABLE lists
        ADD COLUMN kind TEXT NOT NULL DEFAULT 'match' CHECK (kind IN ('match', 'negative')),
        ADD COLUMN tenant TEXT;
    CREATE TABLE list_distances (
        list_id BIGINT NOT NULL REFERENCES lists (id),
        signal TEXT NOT NULL,
        max_distance INTEGER NOT NULL CHECK (max_distance >= 0),
        PRIMARY KEY (list_id, signal)
    );
    """,
)

# Unless the URL says otherwise: give up connecting after a few seconds, and notice a
# database host that vanished without closing the connection within about half a minute.
CONNECTION_DEFAULTS = {
    "connect_timeout": 3,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
# Reconnection attempts back off from the first to the last delay: a database that is
# coming back is not hammered by every caller, and is in use within half a second.
RECONNECT_DELAYS = (0.05, 0.5)
UNREACHABLE = "the store's database is unreachable; retry shortly"
MIGRATION_LOCK = 0x68617368  # "hash": the advisory lock key for schema changes
WRITE_LOCK = 0x68617369  # held by every write transaction until it commits


class PostgresStore(SqlStore):
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        given = conninfo_to_dict(url)
        self._conninfo = make_conninfo(
            url, **{k: v for k, v in CONNECTION_DEFAULTS.items() if k not in given}
        )
        self._failures = 0
        self._retry_at = 0.0
        self._db = self._reconnect()
        self._migrate()

    def _reconnect(self) -> psycopg.Connection[Any]:
        """A new connection; StoreUnavailable if the database can't be reached, and then
        until the backoff delay has passed."""
        now = time.monotonic()
        if now < self._retry_at:
            raise StoreUnavailable(UNREACHABLE)
        try:
            db = psycopg.connect(self._conninfo, autocommit=False)
        except psycopg.OperationalError as exc:
            first, last = RECONNECT_DELAYS
            self._retry_at = now + min(last, first * 2**self._failures)
            self._failures += 1
            if self._failures == 1:
                log.warning("cannot reach PostgreSQL (%s); retrying with backoff", exc)
            raise StoreUnavailable(UNREACHABLE) from exc
        if self._failures:
            log.warning("reconnected to PostgreSQL after %d failed attempts", self._failures)
        self._failures = 0
        return db

    def _connection(self) -> psycopg.Connection[Any]:
        if self._db.closed or self._db.broken:
            self._db = self._reconnect()
        return self._db

    def _begin(self, setup: tuple[str, ...]) -> tuple[psycopg.Connection[Any], psycopg.Cursor[Any]]:
        """Open a transaction with its setup statements run. A connection found dead here,
        one the database dropped while it sat idle, is replaced once: nothing of this
        transaction can have been committed, so the retry is safe even for a write."""
        for retry in (True, False):
            db = self._connection()
            cur = db.cursor()
            try:
                for statement in setup:
                    cur.execute(statement.encode())
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                _rollback(db)
                if retry and (db.closed or db.broken):
                    continue
                raise StoreUnavailable(UNREACHABLE) from exc
            except BaseException:
                _rollback(db)
                raise
            return db, cur
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _migrate(self) -> None:
        with self._db.transaction(), self._db.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            cur.execute("CREATE TABLE IF NOT EXISTS hashmatch_schema (version INTEGER NOT NULL)")
            cur.execute("SELECT max(version) FROM hashmatch_schema")
            row = cur.fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"store has schema version {version}; "
                    f"this hashmatch knows up to {len(MIGRATIONS)}"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                cur.execute(script.encode())
                cur.execute("INSERT INTO hashmatch_schema (version) VALUES (%s)", (number,))
            if version < MOVED_BY <= len(MIGRATIONS):
                cur.execute(MOVED_SQL.encode())
                log_moved(cur.fetchall())

    @contextmanager
    def _transaction(self, *setup: str) -> Iterator[Cursor]:
        """A transaction committed on exit. Losing the connection in it (even in the
        commit, so a write's fate is unknown) is StoreUnavailable."""
        db, cur = self._begin(setup)
        try:
            with cur:
                yield cur
            db.commit()
        except BaseException as exc:
            _rollback(db)
            if isinstance(exc, psycopg.OperationalError) or (
                isinstance(exc, psycopg.InterfaceError) and (db.closed or db.broken)
            ):
                raise StoreUnavailable(UNREACHABLE) from exc
            raise

    def _begin_write(self) -> AbstractContextManager[Cursor]:
        return self._transaction(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")

    def _begin_read(self) -> AbstractContextManager[Cursor]:
        return self._transaction("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    def close(self) -> None:
        self._db.close()


def _rollback(db: psycopg.Connection[Any]) -> None:
    if not db.closed:
        with suppress(psycopg.Error):  # the connection is gone: the database rolls it back
            db.rollback()


@contextmanager
def temporary_schema(url: str, prefix: str = "hm_tmp") -> Iterator[str]:
    """A store URL for a new, empty schema of `url`'s database, dropped on exit: a store
    of its own for each test or benchmark run, on one PostgreSQL server."""
    schema = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}".encode())
    try:
        yield f"{url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(f"DROP SCHEMA {schema} CASCADE".encode())
