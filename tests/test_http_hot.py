"""The hot routes (service/http/hot.py): `GET /m/raw_lookup` and `POST /v1/check` are
answered in front of Starlette, their keys checked and single lookups searched on the
event loop's thread. Attacked here: that this shortcut keeps every promise the routed
path keeps (a key checked per request on a shared connection, other methods, bodies
JSON refuses, concurrency with large batches), and the two signals that send a lookup
to a worker thread instead (an engine with no idle slot, an audit log backing up)."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from indexer.store import Store, open_store
from service.audit import AuditLog
from service.auth import Gate, Unauthenticated
from service.batcher import DIRECT, Batcher
from service.matcher import Matcher
from tests.test_audit import GatedStore
from tests.test_batcher import EchoMatcher, q
from tests.test_http import HASHES, SECURITY_HEADERS, Served, pdq, refused, serving


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("http-hot")) as s:
        yield s


def lookup(signal: str, **extra: str) -> dict[str, str]:
    return {"signal_type": "pdq", "signal": signal, **extra}


def test_each_request_on_one_connection_is_judged_by_its_own_key(served: Served) -> None:
    """A keep-alive connection carries requests with different keys, or none: the key
    checked for one request (remembered in its scope) never answers for the next."""
    hidden = lookup(pdq(HASHES[12]))  # on list 'b', outside the scoped key's lists
    with served.client(None) as http:
        for _ in range(3):
            admin = http.get("/m/raw_lookup", params=hidden, headers=bearer(served.admin))
            assert len(admin.json()["matches"]) == 1, admin.text
            scoped = http.get("/m/raw_lookup", params=hidden, headers=bearer(served.scoped))
            assert scoped.json() == {"matches": []}, scoped.text
            refused(http.get("/m/raw_lookup", params=hidden), 401)
            refused(http.get("/m/raw_lookup", params=hidden, headers=bearer("hm_x.y")), 401)
            refused(
                http.post("/v1/check", json={"queries": []}, headers=bearer(served.submitter)),
                403,
            )


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_other_methods_and_near_paths_go_the_routed_way(served: Served) -> None:
    with served.client(served.checker) as http:
        answers = {
            "post lookup": http.post("/m/raw_lookup", params=lookup(pdq(HASHES[0]))),
            "get check": http.get("/v1/check"),
            "put check": http.put("/v1/check", json={"queries": []}),
            "slash": http.get("/m/raw_lookup/", params=lookup(pdq(HASHES[0]))),
            "case": http.get("/M/RAW_LOOKUP", params=lookup(pdq(HASHES[0]))),
            "head": http.head("/m/raw_lookup", params=lookup(pdq(HASHES[0]))),
        }
    for what in ("post lookup", "get check", "put check"):
        refused(answers[what], 405, "method not allowed")
    refused(answers["case"], 404, "no such route")
    assert answers["slash"].status_code in (307, 404), answers["slash"].status_code
    assert answers["head"].status_code in (200, 405), answers["head"].status_code
    for what, answer in answers.items():
        for header in SECURITY_HEADERS:
            assert header in answer.headers, (what, header)


@pytest.mark.parametrize(
    "body",
    [
        b'{"queries": [], "images": [1e400]}',  # infinity
        b'{"queries": [], "images": [18446744073709551616]}',  # past uint64
        b'{"queries": [{"signal": "pdq", "hex": "\xff\xfe"}]}',  # not UTF-8
        b'\xef\xbb\xbf{"queries": []}',  # a byte order mark
        b'{"queries": [{"signal": "pdq", "hex": NaN}]}',
        b"[" * 1100 + b"]" * 1100,  # past JSON's nesting limit
        b"",
    ],
)
def test_bodies_json_refuses_are_400_on_the_hot_path(served: Served, body: bytes) -> None:
    with served.client(served.checker) as http:
        answer = http.post("/v1/check", content=body)
    assert answer.status_code == 400, (answer.status_code, answer.text)
    assert list(answer.json()) == ["message"]


def test_single_lookups_stay_right_while_large_batches_hold_the_engine(served: Served) -> None:
    """A 10,000-hash check keeps the engine's workers busy, so lookups arriving meanwhile
    go to a worker thread rather than the event loop; whichever way each goes, every
    answer is its own hash's, and the same content id every time."""
    batch = {"queries": [{"signal": "pdq", "hex": pdq(HASHES[i % 20])} for i in range(10_000)]}
    with served.client(served.admin) as http:
        expected = {
            i: http.get("/m/raw_lookup", params=lookup(pdq(HASHES[i]))).json() for i in range(20)
        }
    assert all(len(e["matches"]) == 1 for e in expected.values())
    stop = threading.Event()

    def big(_: int) -> int:
        with served.client(served.admin) as http:
            done = 0
            while not stop.is_set():
                answer = http.post("/v1/check", json=batch)
                assert answer.status_code == 200, answer.text[:200]
                assert all(r["matched"] for r in answer.json()["results"])
                done += 1
            return done

    def small(k: int) -> None:
        with served.client(served.admin) as http:
            for j in range(40):
                i = (k + j) % 20
                miss = http.get("/m/raw_lookup", params=lookup(pdq(HASHES[i])[::-1]))
                assert miss.json() == {"matches": []}
                hit = http.get("/m/raw_lookup", params=lookup(pdq(HASHES[i])))
                assert hit.json() == expected[i]

    # One batch in flight at a time: two would fill the 20,000-query queue, and a lookup
    # then is rightly refused as overloaded.
    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        bigs = [pool.submit(big, 0)]
        try:
            smalls = [pool.submit(small, k) for k in range(8)]
            for f in smalls:
                f.result(timeout=240)
        finally:
            stop.set()
        assert all(f.result(timeout=240) >= 1 for f in bigs)


# What sends a lookup to a worker thread


def test_the_batcher_is_idle_only_while_a_small_request_would_not_wait() -> None:
    matcher = EchoMatcher()
    batcher = Batcher(lambda: cast(Matcher, matcher), workers=1)
    assert batcher.idle
    busy = threading.Thread(target=batcher.check, args=([q(0)] * (DIRECT + 1),))
    busy.start()
    assert matcher.entered.wait(5)
    assert batcher.idle, "a direct search does not wait for the busy worker"
    waiting = threading.Thread(target=batcher.check, args=([q(1)] * (DIRECT + 1),))
    waiting.start()
    while not batcher.queued:
        threading.Event().wait(0.01)
    assert not batcher.idle, "queries are waiting: a small request would be batched"
    matcher.gate.set()
    busy.join(5)
    waiting.join(5)
    assert batcher.idle
    batcher.close()


def test_the_audit_log_is_backed_up_from_half_full(tmp_path: Path) -> None:
    assert not AuditLog(None, max_queued=2).backed_up  # nothing is recorded without a store
    store = GatedStore()
    audit = AuditLog(cast(Store, store), max_queued=4)
    audit.record("t/key", "match", "a")
    assert not audit.backed_up
    audit.record("t/key", "match", "a")
    assert audit.backed_up
    store.open.set()
    audit.flush()
    assert not audit.backed_up


def test_a_new_key_used_just_after_an_unknown_one_is_let_in(tmp_path: Path) -> None:
    """An unknown key id makes the gate reload its keys, at most every 0.1 s. A key
    issued just after and used within that 0.1 s was refused (401) as unknown: fast
    enough callers (the hot routes) met it. It now waits out the 0.1 s and is let in;
    the gate only reports such a key as unknown, so the loop sends it to a thread."""
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    gate = Gate(store)
    gate.reload()
    old = store.create_key("t", ["check"])[1]
    gate.reload()
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            gate.caller_for("hm_nope_nope", lambda: "127.0.0.1", "check")
        new = store.create_key("t", ["check"])[1]
        assert not gate.knows(new)
        assert gate.caller_for(new, lambda: "127.0.0.1", "check").may("check")
        assert gate.knows(new)
    assert gate.knows(old) and gate.knows(None) and gate.knows("not a token")
    assert not gate.knows("hm_nope_nope")
    assert Gate(None).knows("hm_nope_nope")  # keys off: nothing to look up
    store.close()
