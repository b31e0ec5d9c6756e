"""The hash store: one interface, selected by URL (SQLite is the embedded default)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

DEFAULT_STORE_URL = "sqlite:///./hashmatch.db"
MATCH_ID_BYTES = 12


class StoreURLError(ValueError):
    pass


@dataclass(frozen=True)
class NewEntry:
    signal: str
    hash: bytes
    quality: int | None = None
    source_ref: str | None = None


@dataclass(frozen=True)
class ListEntry:
    signal: str
    hash: bytes
    source_ref: str | None


@dataclass(frozen=True)
class AddCounts:
    added: int = 0
    duplicates: int = 0


@dataclass(frozen=True)
class SignalEntries:
    """Every entry of one signal type, as arrays ready for an index build."""

    entry_ids: npt.NDArray[np.int64]
    list_ids: npt.NDArray[np.uint32]
    hashes: npt.NDArray[np.uint8]  # shape (n, bits / 8)
    match_ids: npt.NDArray[np.uint8]  # shape (n, MATCH_ID_BYTES)


EntryRow = tuple[int, str, bytes, bytes, int | None, str | None]


def new_entry_rows(list_id: int, batch: Iterable[NewEntry]) -> list[EntryRow]:
    """(list_id, signal, hash, match_id, quality, source_ref) rows, each with a fresh
    random match id: the opaque id checkers see, unrelated to the hash."""
    return [
        (list_id, e.signal, e.hash, os.urandom(MATCH_ID_BYTES), e.quality, e.source_ref)
        for e in batch
    ]


def signal_entries(rows: Sequence[Sequence[Any]], nbytes: int) -> SignalEntries:
    """Arrays from (id, list_id, hash, match_id) rows, as both backends return them."""
    n = len(rows)
    return SignalEntries(
        np.fromiter((r[0] for r in rows), dtype=np.int64, count=n),
        np.fromiter((r[1] for r in rows), dtype=np.uint32, count=n),
        np.frombuffer(b"".join(bytes(r[2]) for r in rows), dtype=np.uint8).reshape(n, nbytes),
        np.frombuffer(b"".join(bytes(r[3]) for r in rows), dtype=np.uint8).reshape(
            n, MATCH_ID_BYTES
        ),
    )


class Store(Protocol):
    def add_entries(self, list_name: str, entries: Iterable[NewEntry]) -> AddCounts:
        """Add entries to a list (created if new); committed durably before returning."""
        ...

    def lists(self) -> dict[int, str]: ...

    def list_entries(self, list_name: str) -> Iterator[ListEntry]:
        """Every entry of one list, oldest first; KeyError if there is no such list."""
        ...

    def signal_names(self) -> list[str]: ...

    def read_signal(self, signal: str, nbytes: int) -> SignalEntries: ...

    def last_entry_id(self) -> int: ...

    def close(self) -> None: ...


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
