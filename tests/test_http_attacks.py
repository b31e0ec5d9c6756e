"""Attacks on the HTTP face (and the limits it shares with gRPC), each over real HTTP
against a real server on loopback: per-address and per-key limits, wrong JSON types,
text no protobuf string can hold, content ids past any we give out, work done before
authentication, arrays parsed before they are counted, and "in effect on return".

Every request here is hostile only in shape: benign random hashes, loopback only,
bounded loops.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.serving import Running, key, serving_store
from tests.test_outage import Cluster, cluster, freeze_follower, matched, stubs
from tests.test_outage import serving as serving_on
from tests.test_security import random_pdq

__all__ = ["cluster"]  # the throwaway PostgreSQL cluster fixture, used below

X = random_pdq(1, 2201)[0]
Y = random_pdq(1, 2202)[0]


Server = Running  # with its keys' tokens by name: s.admin


@contextmanager
def server(tmp_path: Path, *args: str) -> Iterator[Server]:
    """Keys required; list 'z' holds X and list 'a' holds Y."""
    keys = {
        "admin": key("admin"),
        "manager": key("list-manage"),
        "slow_manager": key("list-manage", rate=5),
        "slow_checker": key("check", rate=5),
    }
    with serving_store(
        tmp_path,
        f"sqlite:///{tmp_path / 'store.db'}",
        *args,
        lists={"z": [X], "a": [Y]},
        keys=keys,
        http=True,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with server(tmp_path_factory.mktemp("review")) as s:
        yield s


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


# Per-address limits over HTTP


def test_http_anonymous_ipv6_addresses_count_as_their_64_as_over_grpc(tmp_path: Path) -> None:
    """Hole: over gRPC an IPv6 address counts as its /64; over HTTP each address is its
    own bucket (service/http/face.py peer()), so one subscriber's /64 buys endless
    anonymous cases a minute, 1,200 hashes a day per address, and can fill the 100,000
    daily address slots that lock every anonymous victim out for a day."""
    with (
        server(tmp_path, "--anonymous-submit", "1", "--http-trusted-proxy", "127.0.0.1") as s,
        s.client(None) as http,
    ):
        statuses = []
        for n, address in enumerate(["2001:db8::1", "2001:db8::2", "2001:db8::3"]):
            case = {"hashes": [{"signal": "pdq", "hex": random_pdq(1, 2300 + n)[0].hex()}]}
            answer = http.post("/v1/cases", headers={"x-forwarded-for": address}, json=case)
            statuses.append(answer.status_code)
        # One case a minute for the whole 2001:db8::/64.
        assert statuses == [200, 429, 429], statuses


# Rate limits over HTTP


def test_hma_delete_content_is_charged_to_the_keys_rate(served: Server) -> None:
    """Hole: DELETE /c/bank/<name>/content/<id> is a store write and an in-effect wait
    per call, but service/submission.py remove_content never charges the key, so a key
    limited to 5 hashes/s (burst 10) removes as fast as it can send."""
    with served.client(served.slow_manager) as http:
        statuses = [http.delete(f"/c/bank/a/content/{n + 1}").status_code for n in range(25)]
    assert 429 in statuses, statuses


# Wrong types over HTTP


@pytest.mark.parametrize(
    ("n", "extra"), [(0, {"enabled": 0}), (1, {"enabled_ratio": True}), (2, {"enabled": None})]
)
def test_create_bank_refuses_wrong_types(served: Server, n: int, extra: dict[str, object]) -> None:
    """Hole: POST /c/banks compares `enabled is False` and `enabled_ratio != 1`, so
    HMA's "disabled" as 0, a boolean ratio, or null are taken and a fully matching bank is
    made (201) where the caller asked for something else, or sent the wrong type."""
    with served.client(served.manager) as http:
        name = f"WRONG_TYPE_{n}"
        answer = http.post("/c/banks", json={"name": name, **extra})
    assert answer.status_code == 400, (answer.status_code, answer.text)


# Answers of 500


LONE_SURROGATE = b"\\ud800"  # valid JSON, but no string protobuf (or UTF-8) can hold


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/check", b'{"queries": [{"signal": "' + LONE_SURROGATE + b'", "hex": "ab"}]}'),
        ("/v1/check", b'{"queries": [{"signal": "pdq", "hex": "' + LONE_SURROGATE + b'"}]}'),
        ("/c/bank/a/signal", b'{"' + LONE_SURROGATE + b'": "ab"}'),
        ("/c/bank/a/signal", b'{"pdq": "' + LONE_SURROGATE + b'"}'),
    ],
)
def test_a_lone_surrogate_in_json_text_is_400_not_500(
    served: Server, path: str, body: bytes
) -> None:
    """Hole: /v1/check's fast path (service/http/native.py _check_request) and HMA's
    add_signal put JSON strings straight into protobuf messages, whose setters raise
    ValueError on an unpaired surrogate; that surfaces as 500 "internal error". The
    general parser (every other route) answers 400 "Unpaired surrogate at ..."."""
    with served.client(served.admin) as http:
        answer = http.post(path, content=body)
    assert answer.status_code == 400, (answer.status_code, answer.text)


@pytest.mark.parametrize("content_id", ["9223372036854775808", "9" * 30, "0" * 5000 + "1"])
def test_a_content_id_past_any_stored_one_is_not_500(served: Server, content_id: str) -> None:
    """Hole: DELETE /c/bank/<name>/content/<id> takes any run of digits: past 2**63 - 1
    the store's driver overflows (500 "internal error"), and past 4,300 digits Starlette's
    int convertor raises before any route runs (a bare "Internal Server Error")."""
    with served.client(served.manager) as http:
        answer = http.delete(f"/c/bank/a/content/{content_id}")
    assert answer.status_code < 500, (answer.status_code, answer.text[:200])


# Work done before authentication


def test_an_unauthenticated_body_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    """Hole: service/http/app.py reads and json.loads the whole body (up to 16 MiB) before
    the route asks for a key: anyone who can connect makes the server build ~5.5 million
    Python lists (about 400 MB, two seconds of CPU) per request, only to be told 401."""
    with server(tmp_path) as s, s.client(None) as anyone:
        assert anyone.post("/v1/check", content=b"{").status_code == 401
        before = peak_rss_kib(s.proc.process.pid)
        body = b"[" + b"[]," * 5_500_000 + b"[]]"
        try:
            status: int | None = anyone.post("/v1/check", content=body).status_code
        except httpx.TransportError:
            status = None  # refused without reading the body: as good
        assert status in (401, None), status
        grown_mib = (peak_rss_kib(s.proc.process.pid) - before) / 1024
        assert grown_mib < 64, f"an unauthenticated request grew the server by {grown_mib:.0f} MiB"


def test_an_anonymous_case_body_is_bounded_at_a_case_worth(tmp_path: Path) -> None:
    """Without a key anyone may send a case: its body is refused past 1 MiB (a 1,000-hash
    case is a few hundred KiB), unread, rather than read and parsed up to 16 MiB."""
    with (
        server(tmp_path, "--anonymous-submit", "60") as s,
        s.client(None) as anyone,
        s.client(s.admin) as keyed,
    ):
        body = b'{"hashes": [], "padding": "' + b"a" * (2 * 1024 * 1024) + b'"}'
        assert anyone.post("/v1/cases", content=body).status_code == 413
        # A key's body is still bounded by the message limit alone: parsed, and refused
        # for what it says.
        assert keyed.post("/v1/cases", content=body).status_code == 400


def test_a_huge_images_array_is_refused_without_parsing_it_in_python(served: Server) -> None:
    """Hole: /v1/check hands anything but the plain query shape to json_format.ParseDict,
    which walks 8 million image numbers in Python (~16 s of CPU holding the GIL) before
    "8000001 image numbers for 1 queries" refuses it, uncharged, from a 5 hashes/s key."""
    body = (
        b'{"queries":[{"signal":"pdq","hex":"'
        + X.hex().encode()
        + b'"}],"images":['
        + b"0," * 8_000_000
        + b"0]}"
    )
    with served.client(served.slow_checker) as http:
        started = time.monotonic()
        answer = http.post("/v1/check", content=body)
        took = time.monotonic() - started
    assert answer.status_code == 400, answer.text
    assert took < 5, f"one refused request took {took:.1f}s of the server's time"


# In effect on return


def test_hma_add_signal_is_not_ok_before_it_matches(cluster: Cluster, tmp_path: Path) -> None:
    """Hole: POST /c/bank/<name>/signal ("matching on return") ignores wait_for's False
    (service/http/hma.py add_signal) and answers 200 with the content id after 5 s
    although the matcher never applied the hash; it should be 504, stored but not yet in
    effect, as SubmitCase and RemoveEntries are."""
    fresh = random_pdq(1, 2400)[0]
    with (
        serving_on(tmp_path, cluster.url, "--http-listen", "127.0.0.1:0") as s,
        stubs(s, s.admin) as (checker, _),
    ):
        pid = freeze_follower(s, checker)
        try:
            headers = {"authorization": f"Bearer {s.admin}"}
            with httpx.Client(base_url=f"http://{s.proc.http_address}", headers=headers) as http:
                answer = http.post("/c/bank/hotline/signal", json={"pdq": fresh.hex()}, timeout=60)
            in_effect = matched(checker, fresh)
        finally:
            os.kill(pid, signal.SIGCONT)
    assert answer.status_code == 504 or in_effect, (
        f"{answer.status_code} {answer.text} while the hash does not match yet"
    )
