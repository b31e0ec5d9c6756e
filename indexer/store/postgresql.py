"""PostgreSQL hash store: the production backend (psycopg 3).

Selected by a `postgresql://` store URL. Each batch commits on its own, and
PostgreSQL's commit is durable, so an acknowledged write survives a crash.
The schema is versioned in `hashmatch_schema`; migrations run under an
advisory lock, so several processes may start at once. Every write takes a
second advisory lock, so change log sequence numbers follow commit order.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import psycopg

from indexer.store.sql import Cursor, SqlStore

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
    # 5: as SQLite's migration 5.
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
)

MIGRATION_LOCK = 0x68617368  # "hash": the advisory lock key for schema changes
WRITE_LOCK = 0x68617369  # held by every write transaction until it commits


class PostgresStore(SqlStore):
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._db = psycopg.connect(url, autocommit=False)
        self._migrate()

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

    @contextmanager
    def _transaction(self, *setup: str) -> Iterator[Cursor]:
        with self._db.transaction(), self._db.cursor() as cur:
            for statement in setup:
                cur.execute(statement.encode())
            yield cur

    def _begin_write(self) -> AbstractContextManager[Cursor]:
        return self._transaction(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")

    def _begin_read(self) -> AbstractContextManager[Cursor]:
        return self._transaction("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    def close(self) -> None:
        self._db.close()


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
