"""One way for a test to start a real server on a store: lists, victims' cases and API
keys put in the store before `hashmatch serve` starts on it (a key made later may be
refused for its first 0.1 s, until the server reloads its keys)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hashmatch.demo.serve_process import ServerProcess, free_ports, running_server
from hashmatch.list_formats import NewEntry
from indexer.store import open_store


@dataclass(frozen=True)
class Key:
    """An API key to issue before the server starts."""

    roles: tuple[str, ...]
    lists: tuple[str, ...] | None = None
    rate: float | None = None
    match_only: bool = False


def key(
    *roles: str,
    lists: tuple[str, ...] | None = None,
    rate: float | None = None,
    match_only: bool = False,
) -> Key:
    return Key(roles, lists, rate, match_only)


@dataclass
class Running:
    """A server started by `serving_store`, with the tokens and ids of its keys by name."""

    proc: ServerProcess
    url: str
    tokens: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)
    metrics_port: int | None = None

    @property
    def base(self) -> str:
        """The HTTP face's base URL (started with `http=True`)."""
        return f"http://{self.proc.http_address}"

    def __getattr__(self, name: str) -> str:
        """A key's token by its name: `running.admin`."""
        tokens = self.__dict__.get("tokens", {})
        if name not in tokens:
            raise AttributeError(name)
        token: str = tokens[name]
        return token

    def client(self, token: str | None, timeout: float = 60) -> httpx.Client:
        """An HTTP client of the face sending `token` as its API key (None: no key)."""
        return bearer_client(self.base, token, timeout)


def bearer_client(base: str, token: str | None, timeout: float) -> httpx.Client:
    """An HTTP client to `base` sending `token` as its API key (none: no credentials)."""
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    return httpx.Client(base_url=base, headers=headers, timeout=timeout)


@contextmanager
def serving_store(
    tmp_path: Path,
    url: str,
    *args: str,
    lists: Mapping[str, Sequence[bytes]] | None = None,
    cases: Sequence[Sequence[bytes]] = (),
    keys: Mapping[str, Key] | None = None,
    key_files: Mapping[str, Path] | None = None,
    http: bool = False,
    metrics: bool = False,
) -> Iterator[Running]:
    """`hashmatch serve --index TMP/index --store URL --poll-interval 0.1 ARGS` once the
    store holds `lists` (PDQ hashes by list name), `cases` and `keys`; `key_files` has
    a key's token written to a file first; `http` and `metrics` listen on free ports."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = open_store(url)
    tokens, key_ids = {}, {}
    try:
        for name, hashes in (lists or {}).items():
            store.add_entries(name, [NewEntry("pdq", h) for h in hashes])
        for case in cases:
            store.create_case([NewEntry("pdq", h) for h in case])
        for name, spec in (keys or {}).items():
            issued, tokens[name] = store.create_key(
                "t", spec.roles, spec.lists, spec.rate, match_only=spec.match_only
            )
            key_ids[name] = issued.key_id
    finally:
        store.close()
    for name, path in (key_files or {}).items():
        path.write_text(tokens[name])
    extra = ["--http-listen", "127.0.0.1:0"] if http else []
    metrics_port = free_ports() if metrics else None
    if metrics_port is not None:
        extra += ["--metrics-port", str(metrics_port)]
    with running_server(
        tmp_path / "index", "--store", url, "--poll-interval", "0.1", *extra, *args
    ) as proc:
        yield Running(proc, url, tokens, key_ids, metrics_port)
