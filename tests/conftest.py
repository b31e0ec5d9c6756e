"""Shared fixtures: benign stand-in photos, a store and snapshot of them, a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hashmatch.demo.serve_process import ServerProcess, free_ports, running_server
from hashmatch.demo.standins import bundled_photos
from hashmatch.hashing import hash_bytes
from hashmatch.signals import SIGNALS
from hashmatch.v1 import match_pb2_grpc
from indexer.build import build_snapshot
from indexer.store import NewEntry, Store, open_store

LISTED = ("astronaut", "camera", "chelsea", "coffee", "coins", "hubble_deep_field", "rocket")


POSTGRES_URL = os.environ.get(
    "HASHMATCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A store URL on the real PostgreSQL server, in a schema of its own, dropped afterwards."""
    from indexer.store.postgresql import temporary_schema

    with temporary_schema(POSTGRES_URL, "hm_test") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs against both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


class Clock:
    """A stand-in for time.monotonic that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The API key gate's clock (rate limits, days), moved by the test."""
    fake = Clock()
    monkeypatch.setattr("service.auth.time.monotonic", fake)
    return fake


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A SQLite store of the test's own."""
    s = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.close()


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in bundled_photos()}


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hashmatch", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def add_photos(
    store_url: str, list_name: str, photos: dict[str, bytes], names: tuple[str, ...]
) -> None:
    store = open_store(store_url)
    try:
        store.add_entries(
            list_name,
            [
                NewEntry(h.signal, h.hash, h.quality)
                for name in names
                for h in hash_bytes(photos[name], list(SIGNALS.values()))
            ],
        )
    finally:
        store.close()


def build_index(store_url: str, root: Path) -> Path:
    store = open_store(store_url)
    try:
        return build_snapshot(store, root)
    finally:
        store.close()


@pytest.fixture(scope="session")
def index_root(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, bytes]) -> Path:
    """A snapshot of LISTED under every signal type, in list 'hotline-a'."""
    work = tmp_path_factory.mktemp("served")
    url = f"sqlite:///{work / 'store.db'}"
    add_photos(url, "hotline-a", photos, LISTED)
    build_index(url, work / "index")
    return work / "index"


@pytest.fixture(scope="session")
def metrics_port() -> int:
    return free_ports()


@pytest.fixture(scope="session")
def server(index_root: Path, metrics_port: int) -> Iterator[ServerProcess]:
    args = ("--no-auth", "--reflection", "--metrics-port", str(metrics_port))
    with running_server(index_root, *args) as proc:
        yield proc


@pytest.fixture(scope="session")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture(scope="session")
def stub(channel: grpc.Channel) -> match_pb2_grpc.MatchServiceStub:
    return match_pb2_grpc.MatchServiceStub(channel)
