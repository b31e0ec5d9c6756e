"""The HTTP face (`serve --http-listen`) over a real HTTP client against a real server
with keys on: HMA 2.0's routes with its exact response shapes, the JSON mirror of the
gRPC API, and every refusal.

Golden JSON shapes per HMA 1.1.7 (facebook/ThreatExchange hasher-matcher-actioner,
src/OpenMediaMatch/blueprints/matching.py and curation.py): raw_lookup's
`{"matches": [<int>]}` or `[{"bank_content_id": <int>, "distance": "<str>"}]`,
lookup's `{"<BANK>": [...]}` with only matching banks, banks as
`{"name", "matching_enabled_ratio"}`, errors as `{"message": ...}`.
"""

from __future__ import annotations

import concurrent.futures
import re
import ssl
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format

from hashmatch.v1 import match_pb2, match_pb2_grpc
from indexer.store import CASE_LIST, MAX_CONTENT_ID, open_store
from tests.serving import Running, key, serving_store
from tests.test_security import HASHES, _certificates, random_pdq

SECURITY_HEADERS = ("x-content-type-options", "content-security-policy", "x-frame-options")


KEYS = {
    "checker": key("check"),
    "scoped": key("check", "list-manage", lists=("a",)),
    "manager": key("list-manage", "check"),
    "submitter": key("submit"),
    "admin": key("admin"),
    "slow": key("check", rate=5),
    "match_only": key("check", match_only=True),
}


Served = Running  # with KEYS' tokens by name: served.checker


@contextmanager
def serving(tmp_path: Path, *args: str) -> Iterator[Served]:
    """Lists 'a' (HASHES[:10]) and 'b' (HASHES[10:]) and a victim's case, keys required."""
    with serving_store(
        tmp_path,
        f"sqlite:///{tmp_path / 'store.db'}",
        *args,
        lists={"a": HASHES[:10], "b": HASHES[10:]},
        cases=[[CASE_HASH]],
        keys=KEYS,
        http=True,
        metrics=True,
    ) as running:
        yield running


CASE_HASH = random_pdq(1, 77)[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("http")) as s:
        yield s


def pdq(h: bytes) -> str:
    return h.hex()


def refused(response: httpx.Response, status: int, *words: str) -> str:
    """The response is `{"message": ...}` with `status`, naming each of `words`."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert list(body) == ["message"] and isinstance(body["message"], str)
    for word in words:
        assert word in body["message"], (word, body["message"])
    return str(body["message"])


def content_id(value: Any) -> int:
    assert type(value) is int and 1 <= value <= MAX_CONTENT_ID, value
    return int(value)


# HMA lookups


def test_raw_lookup_answers_in_hma_shapes(served: Served) -> None:
    with served.client(served.checker) as http:
        plain = http.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": pdq(HASHES[0])})
        assert plain.status_code == 200, plain.text
        assert list(plain.json()) == ["matches"]
        (only,) = plain.json()["matches"]
        content_id(only)
        near = bytearray(HASHES[0])
        near[0] ^= 0b111
        with_distance = http.get(
            "/m/raw_lookup",
            params={"signal_type": "pdq", "signal": pdq(bytes(near)), "include_distance": "true"},
        )
        assert with_distance.json() == {"matches": [{"bank_content_id": only, "distance": "3"}]}
        none = http.get(
            "/m/raw_lookup", params={"signal_type": "pdq", "signal": pdq(HASHES[0])[::-1]}
        )
        assert none.json() == {"matches": []}
        other_bank = http.get(
            "/m/raw_lookup",
            params={"signal_type": "pdq", "signal": pdq(HASHES[0]), "banks": "b,c"},
        )
        assert other_bank.json() == {"matches": []}


def test_lookup_answers_only_banks_with_matches(served: Served) -> None:
    with served.client(served.checker) as http:
        found = http.get("/m/lookup", params={"signal_type": "pdq", "signal": pdq(HASHES[12])})
        assert found.status_code == 200
        body = found.json()
        assert list(body) == ["b"]
        (match,) = body["b"]
        assert list(match) == ["bank_content_id", "distance"] and match["distance"] == "0"
        content_id(match["bank_content_id"])
        nothing = http.get("/m/lookup", params={"signal_type": "pdq", "signal": "f" * 64})
        assert nothing.status_code == 200 and nothing.json() == {}


def test_content_ids_are_distinct_and_tell_nothing_of_order(served: Served) -> None:
    with served.client(served.checker) as http:
        ids = [
            http.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": pdq(h)}).json()[
                "matches"
            ][0]
            for h in HASHES
        ]
    assert len(set(ids)) == len(HASHES)
    assert all(1 <= i <= MAX_CONTENT_ID for i in ids)
    assert ids != sorted(ids) and max(ids) > 2**40  # drawn at random, not counted


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/m/lookup", {"url": "https://example.invalid/photo.jpg"}),
        ("POST", "/m/lookup", {}),
        ("GET", "/h/hash", {"url": "https://example.invalid/photo.jpg"}),
        ("POST", "/h/hash", {}),
        ("POST", "/c/bank/a/content", {"url": "https://example.invalid/photo.jpg"}),
    ],
)
def test_routes_that_would_take_media_are_refused(
    served: Served, method: str, path: str, params: dict[str, str]
) -> None:
    with served.client(served.manager) as http:
        answer = http.request(
            method, path, params=params, files={"file": ("x.jpg", b"\xff\xd8" + b"0" * 1000)}
        )
    refused(answer, 400, "never takes images", "hash")


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"signal_type": "pdq", "signal": "zz" * 32}, ("signal", "hex")),
        ({"signal_type": "pdq", "signal": "ab" * 31}, ("signal", "64")),
        ({"signal_type": "pdq", "signal": "a" * 10_000}, ("signal",)),
        ({"signal_type": "nope", "signal": "ab" * 32}, ("signal", "nope")),
        ({"signal": "ab" * 32}, ("signal_type",)),
        ({"signal_type": "pdq"}, ("signal",)),
        (
            {"signal_type": "pdq", "signal": "ab" * 32, "include_distance": "maybe"},
            ("include_distance",),
        ),
    ],
)
def test_a_bad_hash_is_400_naming_the_problem(
    served: Served, params: dict[str, str], words: tuple[str, ...]
) -> None:
    with served.client(served.checker) as http:
        refused(http.get("/m/raw_lookup", params=params), 400, *words)
        if "include_distance" not in params:  # a raw_lookup parameter alone
            refused(http.get("/m/lookup", params=params), 400, *words[:1])
        # Past uvicorn's bound on a request head, it refuses before any route runs.
        assert http.get("/m/raw_lookup", params={"signal": "a" * 60_000}).status_code == 400
        good = http.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": pdq(HASHES[1])})
        assert good.status_code == 200 and len(good.json()["matches"]) == 1


def test_hostile_callers_do_not_fail_anyone_else(served: Served) -> None:
    """Bad hashes, huge and unparseable bodies and unknown routes, all at once, while a
    good caller's lookups are all answered."""
    hostile = [
        ("GET", "/m/raw_lookup", {"params": {"signal_type": "pdq", "signal": "\x00" * 64}}),
        ("POST", "/v1/check", {"content": b"{" * 50_000}),
        ("POST", "/v1/check", {"content": b"[1, 2"}),
        ("POST", "/v1/check", {"json": {"queries": [{"signal": "pdq", "hex": 5}]}}),
        ("GET", "/../../etc/passwd", {}),
    ]

    def bad(i: int) -> int:
        method, path, kwargs = hostile[i % len(hostile)]
        with served.client(served.checker) as http:
            return http.request(method, path, **kwargs).status_code

    def good(i: int) -> Any:
        with served.client(served.checker) as http:
            return http.get(
                "/m/raw_lookup", params={"signal_type": "pdq", "signal": pdq(HASHES[i % 10])}
            ).json()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        bads = pool.map(bad, range(60))
        goods = pool.map(good, range(60))
        assert all(400 <= s < 500 for s in bads)
        assert all(len(g["matches"]) == 1 for g in goods)


def test_index_and_service_status(served: Served) -> None:
    with served.client(None) as anyone:
        alive = anyone.get("/status")
        assert alive.status_code == 200 and alive.text == "I-AM-ALIVE"
        assert anyone.get("/status/live").text == "I-AM-ALIVE"
        refused(anyone.get("/m/index/status"), 401)
    with served.client(served.checker) as http:
        status = http.get("/m/index/status").json()
        assert status["pdq"]["present"] is True and status["pdq"]["size"] >= 20
        assert type(status["pdq"]["built_to"]) is int and status["pdq"]["built_to"] > 1e9
        assert status["md5"] == {"present": False, "built_to": -1, "size": 0}
        assert list(http.get("/m/index/status", params={"signal_type": "pdq"}).json()) == ["pdq"]
        refused(http.get("/m/index/status", params={"signal_type": "nope"}), 400, "nope")


# Keys and scopes


def test_missing_bad_revoked_and_underprivileged_keys_are_refused(served: Served) -> None:
    query = {"signal_type": "pdq", "signal": pdq(HASHES[0])}
    with served.client(None) as nobody:
        refused(nobody.get("/m/raw_lookup", params=query), 401, "credentials")
        refused(nobody.post("/v1/check", json={"queries": [{"signal": "pdq", "hex": "ab"}]}), 401)
    with served.client("hm_nope_nope") as forged:
        refused(forged.get("/m/raw_lookup", params=query), 401, "unknown or revoked")
    with served.client(served.submitter) as submitter:
        refused(submitter.get("/m/raw_lookup", params=query), 403, "check")
        refused(submitter.post("/c/banks", json={"name": "NEW"}), 403, "list-manage")
    store = open_store(served.url)
    try:
        key, token = store.create_key("t", ["check"])
        with served.client(token) as http:
            assert http.get("/m/raw_lookup", params=query).status_code == 200
            store.revoke_key(key.key_id)
            deadline = time.monotonic() + 5
            while http.get("/m/raw_lookup", params=query).status_code == 200:
                assert time.monotonic() < deadline, "a revoked key still works"
                time.sleep(0.1)
            refused(http.get("/m/raw_lookup", params=query), 401, "revoked")
    finally:
        store.close()


def test_a_key_sees_only_its_lists_and_never_the_victims_cases_unless_granted(
    served: Served,
) -> None:
    with served.client(served.scoped) as scoped:
        assert scoped.get("/c/banks").json() == [{"name": "a", "matching_enabled_ratio": 1.0}]
        refused(scoped.get("/c/bank/b"), 404, "not found")
        hidden = scoped.get("/m/lookup", params={"signal_type": "pdq", "signal": pdq(HASHES[12])})
        assert hidden.json() == {}
        refused(scoped.post("/c/bank/b/signal", json={"pdq": pdq(HASHES[3])}), 404)
    with served.client(served.manager) as manager:
        names = [b["name"] for b in manager.get("/c/banks").json()]
        assert "a" in names and "b" in names and CASE_LIST not in names
        refused(manager.get(f"/c/bank/{CASE_LIST}"), 404)
        refused(manager.post(f"/c/bank/{CASE_LIST}/signal", json={"pdq": pdq(HASHES[3])}), 404)
    with served.client(served.admin) as admin:
        assert CASE_LIST in [b["name"] for b in admin.get("/c/banks").json()]
        assert admin.get(f"/c/bank/{CASE_LIST}").json() == {
            "name": CASE_LIST,
            "matching_enabled_ratio": 1.0,
        }


def test_rate_limits_are_the_keys_limits(served: Served) -> None:
    # The slow key's rate is 5 hashes/s, so its burst is 10 (2 s of its rate).
    queries = {"queries": [{"signal": "pdq", "hex": pdq(h)} for h in HASHES[:10]]}
    with served.client(served.slow) as http:
        first = http.post("/v1/check", json=queries)  # the whole burst
        assert first.status_code == 200, first.text
        refused(http.post("/v1/check", json={"queries": queries["queries"] * 2}), 400, "split")
        answer = http.post("/v1/check", json=queries)
    refused(answer, 429, "rate limit")
    assert int(answer.headers["retry-after"]) >= 1


# Banks


def test_bank_lifecycle_in_hma_shapes_and_in_effect_on_return(served: Served) -> None:
    fresh = random_pdq(1, 1234)[0]
    query = {"signal_type": "pdq", "signal": pdq(fresh), "include_distance": "true"}
    with served.client(served.manager) as http:
        created = http.post("/c/banks", json={"name": "MY_BANK"})
        assert created.status_code == 201
        assert created.json() == {"name": "MY_BANK", "matching_enabled_ratio": 1.0}
        assert http.get("/c/bank/MY_BANK").json() == created.json()
        refused(http.post("/c/banks", json={"name": "MY_BANK"}), 403, "already exists")
        refused(http.post("/c/banks", json={"name": "lower-case"}), 400, "UPPER_WITH_UNDERSCORE")
        refused(http.post("/c/banks", json={"name": "9LIVES"}), 400, "UPPER_WITH_UNDERSCORE")
        refused(http.post("/c/banks", json={"nom": "X"}), 400, "name")
        refused(http.post("/c/banks", content=b"not json"), 400, "JSON")

        added = http.post("/c/bank/MY_BANK/signal", json={"pdq": pdq(fresh)})
        assert added.status_code == 200, added.text
        assert list(added.json()) == ["id", "signals"]
        new_id = content_id(added.json()["id"])
        assert added.json()["signals"] == {"pdq": pdq(fresh)}
        assert http.get("/m/raw_lookup", params=query).json() == {
            "matches": [{"bank_content_id": new_id, "distance": "0"}]
        }
        refused(http.post("/c/bank/MY_BANK/signal", json={"pdq": "xyz"}), 400, "pdq")
        refused(http.post("/c/bank/MY_BANK/signal", json={"pdq": "0" * 64}), 400, "refused")
        refused(
            http.post("/c/bank/MY_BANK/signal", json={"pdq": pdq(fresh), "md5": "0" * 32}),
            400,
            "one signal",
        )
        refused(http.post("/c/bank/NO_BANK/signal", json={"pdq": pdq(fresh)}), 404, "NO_BANK")

        assert http.delete(f"/c/bank/MY_BANK/content/{new_id}").json() == {"deleted": 1}
        assert http.get("/m/raw_lookup", params=query).json() == {"matches": []}
        assert http.delete(f"/c/bank/MY_BANK/content/{new_id}").json() == {"deleted": 0}
        refused(http.delete("/c/bank/MY_BANK/content/abc"), 404)


# The JSON mirror of the gRPC API


def test_v1_check_is_the_grpc_answer_in_proto3_json(served: Served) -> None:
    hexes = [pdq(HASHES[0]), "f" * 64, pdq(HASHES[12])]
    with served.client(served.checker) as http:
        answer = http.post(
            "/v1/check", json={"queries": [{"signal": "pdq", "hex": h} for h in hexes]}
        )
    assert answer.status_code == 200, answer.text
    request = match_pb2.CheckRequest(queries=[match_pb2.Query(signal="pdq", hex=h) for h in hexes])
    with grpc.insecure_channel(served.proc.address) as channel:
        stub = match_pb2_grpc.MatchServiceStub(channel)
        response = stub.Check(request, metadata=[("authorization", f"Bearer {served.checker}")])
    expected = json_format.MessageToDict(
        response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    assert answer.json() == expected
    assert answer.json()["results"][1] == {"matched": False, "matches": [], "capped": False}
    assert answer.json()["results"][0]["matches"][0]["list"] == "a"


def test_a_match_only_key_learns_no_distance_over_http(served: Served) -> None:
    near = bytearray(HASHES[0])
    near[0] ^= 0b111
    query = {"signal_type": "pdq", "signal": pdq(bytes(near))}
    with served.client(served.match_only) as http:
        answer = http.post(
            "/v1/check", json={"queries": [{"signal": "pdq", "hex": query["signal"]}]}
        )
        assert answer.status_code == 200, answer.text
        (match,) = answer.json()["results"][0]["matches"]
        assert "distance" not in match and match["list"] == "a"
        tightened = {"signal": "pdq", "hex": query["signal"], "max_distance": 3}
        refused(http.post("/v1/check", json={"queries": [tightened]}), 400, "max_distance")
        plain = http.get("/m/raw_lookup", params=query)
        assert plain.status_code == 200 and len(plain.json()["matches"]) == 1
        asked = http.get("/m/raw_lookup", params={**query, "include_distance": "true"})
        refused(asked, 400, "match / no match only")
        refused(http.get("/m/lookup", params=query), 400, "match / no match only")


def test_v1_check_refuses_a_bad_query_by_index_and_bounds_the_batch(served: Served) -> None:
    good = {"signal": "pdq", "hex": pdq(HASHES[0])}
    with served.client(served.checker) as http:
        bad = [good, good, good, {"signal": "pdq", "hex": "xyz"}]
        refused(http.post("/v1/check", json={"queries": bad}), 400, "query 3")
        refused(http.post("/v1/check", json={"queries": [good] * 10_001}), 400, "10000")
        refused(http.post("/v1/check", json={"queries": []}), 400, "at least one")
        refused(http.post("/v1/check", json={"queries": [{"signal": "pdq", "hex": 7}]}), 400)
        refused(http.post("/v1/check", json={"queries": [good], "extra": 1}), 400, "extra")
        refused(http.post("/v1/check", json=[good]), 400, "JSON object")
        too_big = b'{"queries": [' + b" " * (17 * 1024 * 1024) + b"]}"
        refused(http.post("/v1/check", content=too_big), 413, "bytes")
        tight = {"signal": "pdq", "hex": pdq(HASHES[0]), "max_distance": 99}
        refused(http.post("/v1/check", json={"queries": [tight]}), 400, "query 0", "max_distance")
        batch = http.post(
            "/v1/check",
            json={
                "batch": {
                    "signal": "pdq",
                    "hashes": __import__("base64").b64encode(HASHES[0] + HASHES[1]).decode(),
                }
            },
        )
        assert [r["matched"] for r in batch.json()["results"]] == [True, True]


def test_v1_cases_keep_the_secret_out_of_the_url(served: Served) -> None:
    mine = random_pdq(1, 4321)[0]
    check = {"queries": [{"signal": "pdq", "hex": pdq(mine)}]}
    with served.client(served.submitter) as victim, served.client(served.checker) as platform:
        receipt = victim.post("/v1/cases", json={"hashes": [{"signal": "pdq", "hex": pdq(mine)}]})
        assert receipt.status_code == 200, receipt.text
        case, secret = receipt.json()["case_id"], receipt.json()["withdrawal_secret"]
        assert receipt.json()["added"] == 1
        assert platform.post("/v1/check", json=check).json()["results"][0]["matched"] is True
        refused(victim.get(f"/v1/cases/{case}"), 400, "x-withdrawal-secret")
        refused(victim.get(f"/v1/cases/{case}", params={"withdrawal_secret": secret}), 400)
        refused(victim.get(f"/v1/cases/{case}", headers={"x-withdrawal-secret": "wrong"}), 404)
        status = victim.get(f"/v1/cases/{case}", headers={"x-withdrawal-secret": secret})
        assert status.json() == {"active_hashes": 1, "withdrawn": False}
        gone = victim.delete(f"/v1/cases/{case}", headers={"x-withdrawal-secret": secret})
        assert gone.json() == {"removed": 1}
        assert platform.post("/v1/check", json=check).json()["results"][0]["matched"] is False
        refused(victim.post("/v1/cases", json={"hashes": []}), 400, "1 to")
        refused(
            victim.post("/v1/cases", json={"hashes": [{"signal": "pdq", "hex": "0" * 64}]}),
            400,
            "hash 0",
        )


def test_v1_lists_create_upload_and_remove(served: Served) -> None:
    entries = random_pdq(3, 999)
    with served.client(served.manager) as http:
        made = http.post("/v1/lists", json={"name": "hotline-x", "trust": "verified"})
        assert made.status_code == 200, made.text
        assert made.json()["name"] == "hotline-x" and made.json()["entries"] == "0"
        refused(http.post("/v1/lists", json={"name": "hotline-x"}), 409, "exists")
        refused(http.post("/v1/lists", json={"name": "y", "trust": "gold"}), 400, "trust")
        upload = {"entries": [{"signal": "pdq", "hex": pdq(h)} for h in entries]}
        upload["entries"].append({"signal": "pdq", "hex": "0" * 64})
        done = http.post("/v1/lists/hotline-x/entries", json=upload)
        assert done.json()["added"] == "3" and done.json()["refused"] == "1"
        assert done.json()["refusals"][0]["index"] == "3"
        refused(
            http.post("/v1/lists/hotline-x/entries", json={"list": "a", "entries": []}), 400, "URL"
        )
        refused(http.post("/v1/lists/nowhere/entries", json=upload), 404, "nowhere")
        assert http.get("/v1/lists/hotline-x").json()["entries"] == "3"
        removal = {"entries": [{"signal": "pdq", "hex": pdq(entries[0])}]}
        assert http.post("/v1/lists/hotline-x/remove", json=removal).json() == {"removed": "1"}
    with served.client(served.scoped) as scoped:
        refused(scoped.get("/v1/lists/hotline-x"), 403, "hotline-x")


# The HTTP layer itself


def test_security_headers_on_every_response_and_no_cors(served: Served) -> None:
    with served.client(served.checker) as http:
        answers = [
            http.get("/status"),
            http.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": "x"}),
            http.get("/no/such/route"),
            http.put("/v1/check"),
            http.options(
                "/v1/check",
                headers={"origin": "https://evil.invalid", "access-control-request-method": "POST"},
            ),
            http.post(
                "/v1/check",
                headers={"origin": "https://evil.invalid"},
                json={"queries": [{"signal": "pdq", "hex": pdq(HASHES[0])}]},
            ),
        ]
    for answer in answers:
        for header in SECURITY_HEADERS:
            assert header in answer.headers, (answer.request.url, header)
        assert "access-control-allow-origin" not in answer.headers
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert answers[2].status_code == 404 and "message" in answers[2].json()
    assert answers[3].status_code == 405


def test_openapi_and_a_docs_page_that_loads_nothing_from_elsewhere(served: Served) -> None:
    with served.client(None) as http:
        document = http.get("/openapi.json").json()
        page = http.get("/docs")
    assert document["openapi"].startswith("3.")
    for path in ("/v1/check", "/m/raw_lookup", "/m/lookup", "/c/banks", "/c/bank/{name}/signal",
                 "/c/bank/{name}/content/{content_id}", "/v1/cases/{case_id}"):  # fmt: skip
        assert path in document["paths"], path
    assert page.status_code == 200 and "/v1/check" in page.text
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page.text)
    assert "<script" not in page.text


def test_http_requests_are_counted_by_route_and_status(served: Served) -> None:
    with served.client(served.checker) as http:
        http.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": pdq(HASHES[0])})
        http.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": "bad"})
    with urllib.request.urlopen(f"http://127.0.0.1:{served.metrics_port}/metrics") as page:
        text = page.read().decode()
    assert 'hashmatch_http_requests_total{route="GET /m/raw_lookup",status="200"}' in text
    assert 'hashmatch_http_requests_total{route="GET /m/raw_lookup",status="400"}' in text
    assert 'hashmatch_http_request_duration_seconds_count{route="GET /m/raw_lookup"}' in text
    assert 'hashmatch_queries_total{signal="pdq"}' in text


def _anonymous_cases(served: Served, forwarded: list[str]) -> list[int]:
    statuses = []
    with served.client(None) as http:
        for address in forwarded:
            statuses.append(
                http.post(
                    "/v1/cases",
                    headers={"x-forwarded-for": address},
                    json={
                        "hashes": [
                            {"signal": "pdq", "hex": pdq(random_pdq(1, len(statuses) + 50)[0])}
                        ]
                    },
                ).status_code
            )
    return statuses


def test_per_address_limits_believe_forwarded_addresses_only_from_trusted_proxies(
    tmp_path: Path,
) -> None:
    addresses = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
    # One case per address per minute (a burst of 1): a forged header must not buy more.
    with serving(tmp_path / "direct", "--anonymous-submit", "1") as served:
        assert _anonymous_cases(served, addresses) == [200, 429, 429]
    with serving(
        tmp_path / "proxied", "--anonymous-submit", "1", "--http-trusted-proxy", "127.0.0.1"
    ) as served:
        assert _anonymous_cases(served, addresses) == [200, 200, 200]
        assert _anonymous_cases(served, addresses[:1]) == [429]


def test_tls_on_the_http_listener(tmp_path: Path) -> None:
    f = _certificates(tmp_path)
    tls = ("--tls-cert", str(f["server.crt"]), "--tls-key", str(f["server.key"]))
    with serving(tmp_path / "tls", *tls) as served:
        address = served.proc.http_address
        with httpx.Client(
            verify=ssl.create_default_context(cafile=f["ca.crt"]), timeout=10
        ) as https:
            answer = https.get(f"https://{address}/status")
            assert answer.text == "I-AM-ALIVE"
            assert answer.headers["strict-transport-security"].startswith("max-age=")
        with httpx.Client(timeout=5) as plain, pytest.raises(httpx.HTTPError):
            plain.get(f"http://{address}/status")


def test_two_processes_share_the_http_port(tmp_path: Path) -> None:
    with serving(tmp_path / "two", "--processes", "2") as served:
        helper = next(pid for pid in served.proc.pids() if pid != served.proc.process.pid)
        assert helper
        for h in HASHES[:10]:
            with served.client(served.checker) as http:  # a new connection each time
                answer = http.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": pdq(h)})
                assert len(answer.json()["matches"]) == 1
