"""The victims' page served with a key of the operator's (`serve --portal-key-file`): a
key that could do more than submit victims' cases is refused at startup, the page's
calls are charged to the key and to each address's limits (one address can't spend the
key for everyone), the key never reaches the browser, and the page's API works end to
end without `--anonymous-submit`. The browser flow with the key is in test_portal.py."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hashmatch.demo.serve_process import ServerProcess
from indexer.store import CASE_LIST, Store, open_store
from service.auth import Caller, Gate, RateLimited, Unauthenticated
from service.portal_key import PortalKeyRefused, read_portal_key
from service.queries import InvalidRequest
from tests.conftest import Clock, run_cli
from tests.serving import key, serving_store
from tests.test_security import random_pdq


def page_key(store: Store, rate: float | None = None, burst: float | None = None) -> str:
    return store.create_key("victim-page", ["submit"], [CASE_LIST], rate, burst)[1]


def visitor(gate: Gate, address: str, token: str | None = None, role: str = "submit") -> Caller:
    return gate.caller_for(token, lambda: address, role)


# At startup


@pytest.mark.parametrize(
    ("roles", "lists", "problem"),
    [
        (["check"], [CASE_LIST], "holds the roles check"),
        (["admin"], [CASE_LIST], "holds the roles admin"),
        (["submit", "check"], [CASE_LIST], "holds the roles check, submit"),
        (["submit", "sync-read"], [CASE_LIST], "must hold submit alone"),
        (["submit", "list-manage"], [CASE_LIST], "must hold submit alone"),
        (["submit"], None, "is scoped to every list"),
        (["submit"], ["hotline-a"], "is scoped to hotline-a"),
        (["submit"], [CASE_LIST, "hotline-a"], "victim-cases alone"),
    ],
)
def test_a_key_that_may_do_more_than_submit_cases_is_refused(
    store: Store, roles: list[str], lists: list[str] | None, problem: str
) -> None:
    token = store.create_key("victim-page", roles, lists)[1]
    with pytest.raises(PortalKeyRefused, match=problem):
        Gate(store, anonymous_submits_per_minute=6, portal_key=token)


def test_an_unknown_revoked_or_forged_key_is_refused(store: Store) -> None:
    key, token = store.create_key("victim-page", ["submit"], [CASE_LIST])
    forged = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    with pytest.raises(PortalKeyRefused, match="unknown or revoked"):
        Gate(store, anonymous_submits_per_minute=6, portal_key=forged)
    store.revoke_key(key.key_id)
    with pytest.raises(PortalKeyRefused, match="unknown or revoked"):
        Gate(store, anonymous_submits_per_minute=6, portal_key=token)
    with pytest.raises(PortalKeyRefused, match="needs API keys"):
        Gate(None, anonymous_submits_per_minute=6, portal_key=token)


def test_a_key_too_small_for_one_case_is_refused(store: Store) -> None:
    with pytest.raises(PortalKeyRefused, match="at most 100 hashes at once"):
        Gate(store, anonymous_submits_per_minute=6, portal_key=page_key(store, rate=50))
    Gate(store, anonymous_submits_per_minute=6, portal_key=page_key(store, rate=50, burst=300))


def test_the_key_file_holds_the_key_or_what_keys_create_printed(tmp_path: Path) -> None:
    token = "hm_0123456789ab_" + "s" * 40
    path = tmp_path / "page.key"
    for text in (token, f"\n  {token}  \n", f"key id: 0123456789ab\nkey:    {token}\n"):
        path.write_text(text)
        assert read_portal_key(path) == token
    for text in ("", "not a key", f"{token}\n{token}", "x" * 5000 + token, "\udcff"):
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        with pytest.raises(PortalKeyRefused, match=r"holds no API key|cannot read"):
            read_portal_key(path)
    with pytest.raises(PortalKeyRefused, match="cannot read"):
        read_portal_key(tmp_path / "missing.key")
    with pytest.raises(PortalKeyRefused, match="cannot read"):
        read_portal_key(tmp_path)


# At every call


def test_keyless_cases_are_the_keys_and_each_address_keeps_its_limits(
    store: Store, clock: Clock
) -> None:
    """Calls per address per minute, hashes per case and per address per day, as without
    a key; the key's own rate for all addresses together; a refused call spends nothing."""
    token = page_key(store, rate=5, burst=300)
    gate = Gate(
        store,
        anonymous_submits_per_minute=2,
        anonymous_case_hashes=200,
        anonymous_daily_hashes=250,
        portal_key=token,
    )
    a = visitor(gate, "192.0.2.1")
    assert a.key_id is not None and a.visitor and not a.anonymous
    assert a.actor.startswith("victim-page/")
    gate.charge(a, 100)
    gate.charge(a, 100)
    with pytest.raises(RateLimited, match=re.escape("calls/s for address 192.0.2.1")):
        gate.charge(a, 1)
    # The same address sending the page's key by hand is still that address.
    by_hand = visitor(gate, "192.0.2.1", token)
    with pytest.raises(RateLimited, match=re.escape("address 192.0.2.1")):
        gate.charge(by_hand, 1)
    # Another address has its own calls, but the key's 300 hashes are spent.
    b = visitor(gate, "198.51.100.7")
    with pytest.raises(RateLimited, match="hashes/s for victim-page/"):
        gate.charge(b, 101)
    gate.charge(b, 100)  # ...its refused call spent none of b's calls or the key's hashes
    gate.charge(b, 0)
    with pytest.raises(RateLimited, match=re.escape("address 198.51.100.7")):
        gate.charge(b, 0)
    # Cases: at most 200 hashes, 250 a day per address, whoever's key.
    with pytest.raises(InvalidRequest, match="at most 200 hashes"):
        gate.admit_case(a, 201)
    gate.admit_case(a, 200)
    with pytest.raises(RateLimited, match="250 hashes a day"):
        gate.admit_case(by_hand, 51)
    gate.admit_case(b, 200)
    clock.now += 60
    gate.charge(a, 100)


def test_keyless_calls_get_nothing_but_submit_and_stop_when_the_key_is_revoked(
    store: Store,
) -> None:
    token = page_key(store)
    gate = Gate(store, anonymous_submits_per_minute=6, portal_key=token)
    for role in ("check", "list-manage", "sync-read", "admin"):
        with pytest.raises(Unauthenticated, match="no credentials"):
            visitor(gate, "192.0.2.1", role=role)
    store.revoke_key(token.split("_")[1])
    gate.reload()
    with pytest.raises(Unauthenticated, match="the page's key was revoked"):
        visitor(gate, "192.0.2.1")


# Through `serve`


def serve_fails(tmp_path: Path, *args: str) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    done = run_cli(
        "serve", "--index", str(tmp_path / "index"), "--store", url,
        "--listen", "127.0.0.1:0", *args,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    return done.stderr


def test_serve_refuses_a_key_that_may_do_more_with_a_clear_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = open_store(url)
    try:
        tokens = {
            "check": store.create_key("p", ["check"], [CASE_LIST])[1],
            "admin": store.create_key("p", ["admin"])[1],
            "unscoped": store.create_key("p", ["submit"])[1],
        }
    finally:
        store.close()
    path = tmp_path / "page.key"
    for name, token in tokens.items():
        path.write_text(token)
        err = serve_fails(tmp_path, "--http-listen", "127.0.0.1:0", "--portal-key-file", str(path))
        assert "--portal-key-file: the page's key" in err, (name, err)
        assert "must hold submit alone" in err or "victim-cases alone" in err, (name, err)
        assert token not in err
    path.write_text("garbage")
    err = serve_fails(tmp_path, "--http-listen", "127.0.0.1:0", "--portal-key-file", str(path))
    assert "holds no API key" in err
    err = serve_fails(tmp_path, "--portal-key-file", str(path))
    assert "give --http-listen" in err
    err = serve_fails(
        tmp_path, "--http-listen", "127.0.0.1:0", "--portal-key-file", str(path),
        "--anonymous-submit", "6",
    )  # fmt: skip
    assert "give one" in err


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A server taking the page's cases with its key, not anonymously, one call a minute
    per address, believing the loopback proxy's X-Forwarded-For."""
    tmp = tmp_path_factory.mktemp("portal-key")
    with serving_store(
        tmp, f"sqlite:///{tmp / 'store.db'}",
        "--http-trusted-proxy", "127.0.0.1",
        "--portal-key-file", str(tmp / "page.key"), "--portal-address-rate", "3",
        keys={"page": key("submit", lists=(CASE_LIST,), rate=1000)},
        key_files={"page": tmp / "page.key"},
        http=True,
    ) as running:  # fmt: skip
        yield running.proc, running.tokens["page"]


def case(n: int, seed: int) -> dict[str, list[dict[str, str]]]:
    return {"hashes": [{"signal": "pdq", "hex": h.hex()} for h in random_pdq(n, seed)]}


def test_the_pages_api_works_with_the_key_and_never_shows_it(
    keyed: tuple[ServerProcess, str],
) -> None:
    """No --anonymous-submit: the page is served, a case is taken, its status read and
    it is withdrawn, all without a key from the caller; the key is in no answer."""
    proc, token = keyed
    secret = token.split("_", 2)[2]
    seen = []
    with httpx.Client(base_url=f"http://{proc.http_address}", timeout=30) as http:
        me = {"x-forwarded-for": "203.0.113.10"}
        page = http.get("/")
        assert page.status_code == 200
        seen += [page, http.get("/static/portal/portal.js"), http.get("/openapi.json")]
        sent = http.post("/v1/cases", json=case(20, 1), headers=me)
        assert sent.status_code == 200, sent.text
        body = sent.json()
        path = f"/v1/cases/{body['case_id']}"
        withdrawal = {**me, "x-withdrawal-secret": body["withdrawal_secret"]}
        status = http.get(path, headers=withdrawal)
        assert status.status_code == 200 and status.json()["active_hashes"] == 20
        gone = http.delete(path, headers=withdrawal)
        assert gone.status_code == 200 and gone.json()["removed"] == 20
        seen += [sent, status, gone]
        # A keyless caller may still check nothing.
        refused = http.post("/v1/check", json={"queries": [{"signal": "pdq", "hex": "0" * 64}]})
        assert refused.status_code == 401
        seen.append(refused)
        for response in seen:
            blob = str(response.headers).encode() + response.content
            assert token.encode() not in blob and secret.encode() not in blob
    assert not any(secret in line for line in proc.log)


def test_one_address_cannot_spend_the_key_for_everyone(keyed: tuple[ServerProcess, str]) -> None:
    """3 calls a minute for each address, with or without the page's key sent by hand;
    another address is let in meanwhile; free text and oversized cases are refused as
    without a key."""
    proc, token = keyed
    with httpx.Client(base_url=f"http://{proc.http_address}", timeout=30) as http:
        hog = {"x-forwarded-for": "203.0.113.66"}
        by_hand = {**hog, "authorization": f"Bearer {token}"}
        answers = [
            http.post("/v1/cases", json=case(5, 10 + i), headers=h).status_code
            for i, h in enumerate((hog, by_hand, hog, by_hand, hog))
        ]
        assert answers == [200, 200, 200, 429, 429], answers
        limited = http.post("/v1/cases", json=case(5, 20), headers=hog)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "203.0.113.66" in limited.json()["message"]
        other = {"x-forwarded-for": "203.0.113.67"}
        assert http.post("/v1/cases", json=case(5, 21), headers=other).status_code == 200
        third = {"x-forwarded-for": "203.0.113.68"}
        free_text = case(1, 22)
        free_text["hashes"][0]["source_ref"] = "iVBORw0KGgo"
        refused = http.post("/v1/cases", json=free_text, headers=third)
        assert refused.status_code == 400 and "no free text" in refused.json()["message"]
        big = http.post("/v1/cases", json=case(301, 23), headers=third)
        assert big.status_code == 400 and "at most 300 hashes" in big.json()["message"]
        started = time.monotonic()
        huge = http.post(
            "/v1/cases",
            content=b"[" + b"0," * 600_000 + b"0]",
            headers={**third, "content-type": "application/json"},
        )
        assert huge.status_code == 413 and time.monotonic() - started < 10
