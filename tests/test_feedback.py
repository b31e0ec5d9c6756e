"""Match feedback over real gRPC, on two server processes sharing one store: reports only
on matches served, quarantine on evidence everywhere within a second, the review queue,
and the feed an upstream pulls."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import grpc
import pytest

from hashmatch.channel import Credentials, open_channel
from hashmatch.client import MatchClient
from hashmatch.demo.serve_process import ServerProcess, running_server
from hashmatch.feedback import FeedbackClient
from hashmatch.list_formats import NewEntry
from hashmatch.submission import SubmissionClient
from hashmatch.v1 import feedback_pb2, feedback_pb2_grpc
from indexer.store import CASE_LIST, open_store
from indexer.sync import pull
from service.auth import RELOAD_SECONDS
from tests.conftest import run_cli
from tests.serving import bearer_client
from tests.test_security import random_pdq

HASHES = random_pdq(40, 27)
CASES = random_pdq(4, 28)
RATE = 5  # reports a minute per key (serve --feedback-rate)


@dataclass
class Two:
    """Two server processes (P1, P2) on one store, as two replicas would be."""

    p1: ServerProcess
    p2: ServerProcess
    url: str

    def key(self, tenant: str, *roles: str, lists: tuple[str, ...] | None = None) -> str:
        store = open_store(self.url)
        try:
            return store.create_key(tenant, roles, lists)[1]
        finally:
            store.close()

    def settle(self) -> None:
        """Let both servers' periodic key reload take in the keys just made (a first use
        within 0.1 s of another unknown key's reload is refused by design)."""
        time.sleep(RELOAD_SECONDS + 0.2)


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Two]:
    work = tmp_path_factory.mktemp("feedback")
    url = f"sqlite:///{work / 'store.db'}"
    store = open_store(url)
    store.add_entries("a", [NewEntry("pdq", h) for h in HASHES[:30]])
    store.add_entries("b", [NewEntry("pdq", h) for h in HASHES[30:]])
    for h in CASES:
        store.create_case([NewEntry("pdq", h)])
    store.close()
    common = ("--store", url, "--poll-interval", "0.1", "--feedback-rate", str(RATE))
    with ExitStack() as stack:
        p1 = stack.enter_context(
            running_server(work / "index", *common, "--http-listen", "127.0.0.1:0")
        )
        p2 = stack.enter_context(running_server(work / "index", *common, "--no-compact"))
        yield Two(p1, p2, url)


def creds(token: str) -> Credentials:
    return Credentials(api_key=token)


def served(proc: ServerProcess, token: str, h: bytes) -> list[str]:
    """Check one hash; the match ids answered."""
    with MatchClient(proc.address, credentials=creds(token)) as client:
        return [m.match_id for m in client.check([("pdq", h)])[0].matches]


def report(proc: ServerProcess, token: str, match_id: str, verdict: str, **kw: str) -> list[str]:
    with FeedbackClient(proc.address, credentials=creds(token)) as client:
        return client.report(match_id, verdict, **kw)


def refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    exc = raised.value
    assert isinstance(exc, grpc.Call)
    return exc.code(), str(exc.details())


def until(condition: Callable[[], bool], limit: float) -> float:
    """Seconds until `condition` held; fails past `limit`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < limit, f"not within {limit}s"
        time.sleep(0.02)
    return time.monotonic() - started


def review(proc: ServerProcess, token: str, list_name: str) -> dict[str, feedback_pb2.ReviewEntry]:
    with FeedbackClient(proc.address, credentials=creds(token)) as client:
        return {e.match_id: e for e in client.review(list_name)}


def test_two_tenants_quarantine_an_entry_everywhere_within_a_second_until_confirmed(
    two: Two,
) -> None:
    t1, t2, t3 = (two.key(t, "check") for t in ("plat1", "plat2", "plat3"))
    manager, operator = two.key("hotline", "list-manage", lists=("a",)), two.key("op", "admin")
    two.settle()
    target = HASHES[3]
    [match_id] = served(two.p1, t1, target)
    assert served(two.p2, t2, target) == [match_id]
    assert report(two.p1, t1, match_id, "false_positive", reason="common_image") == ["a"]
    assert served(two.p2, t3, target) == [match_id], "one tenant alone quarantined it"
    report(two.p2, t2, match_id, "false_positive", reason="benign_content")
    # The process that took the report at once; the other within a second of it.
    assert served(two.p2, t3, target) == []
    assert until(lambda: served(two.p1, t3, target) == [], 1.0) < 1.0
    assert served(two.p1, t3, HASHES[4]), "only that entry stops matching"

    entry = review(two.p1, manager, "a")[match_id]
    assert (entry.state, entry.cause) == ("quarantined", "feedback")
    assert (entry.false_positive, entry.confirmed) == (2, 0)
    assert dict(entry.reasons) == {"common_image": 1, "benign_content": 1}
    assert not entry.tenants, "tenants are named to the operator only"
    named = review(two.p1, operator, "a")[match_id]
    assert sorted(r.tenant for r in named.tenants) == ["plat1", "plat2"]

    with FeedbackClient(two.p2.address, credentials=creds(manager)) as client:
        assert client.decide("a", match_id, "confirm") == "confirmed"
    assert until(lambda: served(two.p1, t3, target) == [match_id], 1.0) < 1.0
    assert served(two.p2, t3, target) == [match_id]
    # Reports from before the confirmation do not count again; two new ones do.
    report(two.p1, t1, match_id, "false_positive")
    assert served(two.p2, t3, target) == [match_id]
    report(two.p1, t2, match_id, "false_positive")
    until(lambda: served(two.p2, t3, target) == [], 1.0)


def test_one_tenant_counts_once_and_its_latest_report_wins(two: Two) -> None:
    k1, k2 = two.key("same", "check"), two.key("same", "check")
    manager = two.key("hotline", "list-manage", lists=("a",))
    two.settle()
    target = HASHES[5]
    [match_id] = served(two.p1, k1, target)
    served(two.p2, k2, target)
    report(two.p1, k1, match_id, "false_positive")
    report(two.p2, k2, match_id, "false_positive")
    report(two.p1, k1, match_id, "false_positive")
    time.sleep(0.5)
    assert served(two.p1, k1, target) == [match_id], "one tenant's keys quarantined it"
    assert review(two.p1, manager, "a")[match_id].false_positive == 1
    report(two.p2, k2, match_id, "confirmed", reason="listed_content")
    entry = review(two.p1, manager, "a")[match_id]
    assert (entry.state, entry.false_positive, entry.confirmed) == ("reported", 0, 1)


def test_not_found_says_nothing_of_other_tenants_or_lists(two: Two) -> None:
    mine, other = two.key("nf-mine", "check"), two.key("nf-other", "check")
    only_b = two.key("nf-b", "check", lists=("b",))
    careless = two.key("nf-mine", "check")  # for bad input: `mine` spends its rate below
    two.settle()
    [theirs] = served(two.p1, other, HASHES[6])
    [in_b] = served(two.p1, only_b, HASHES[31])
    [shown] = served(two.p1, mine, HASHES[7])
    answers = {
        refusal(lambda: report(two.p1, mine, "ab" * 12, "false_positive")),  # unknown
        refusal(lambda: report(two.p2, mine, theirs, "false_positive")),  # served to another
        refusal(lambda: report(two.p1, only_b, theirs, "confirmed", list_name="a")),  # unseen
        refusal(lambda: report(two.p1, mine, shown, "confirmed", list_name="b")),  # other list
        refusal(lambda: report(two.p1, mine, in_b, "pending_review")),
    }
    assert answers == {(grpc.StatusCode.NOT_FOUND, "no match with that id was served to this key")}
    with open_channel(two.p1.address, creds(careless)) as ch:
        stub = feedback_pb2_grpc.FeedbackServiceStub(ch)
        for bad, says in [
            (dict(match_id="zz" * 12, verdict="confirmed"), "match_id"),
            (dict(match_id=shown[:-2], verdict="confirmed"), "match_id"),
            (dict(match_id=shown, verdict="blocked"), "verdict"),
            (dict(match_id=shown, verdict="confirmed", reason="it is my cat"), "reason"),
            (dict(match_id=shown, verdict="confirmed", list="x" * 5000), "list name"),
        ]:
            request = feedback_pb2.ReportRequest(**bad)
            code, detail = refusal(partial(stub.Report, request))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and says in detail, detail


def test_reports_have_their_own_rate_per_key(two: Two) -> None:
    token, fresh = two.key("eager", "check"), two.key("calm", "check")
    two.settle()
    [match_id] = served(two.p1, token, HASHES[8])
    for _ in range(RATE):
        report(two.p1, token, match_id, "pending_review")
    code, detail = refusal(lambda: report(two.p1, token, match_id, "pending_review"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "feedback rate" in detail
    # Another key of the same server is not held back by it.
    served(two.p1, fresh, HASHES[8])
    assert report(two.p1, fresh, match_id, "pending_review") == ["a"]


def test_victims_cases_need_three_tenants_and_the_operator(two: Two) -> None:
    tenants = [two.key(f"vc{i}", "check") for i in range(3)]
    manager, operator = two.key("vc-hotline", "list-manage"), two.key("vc-op", "admin")
    two.settle()
    target = CASES[0]
    [match_id] = served(two.p1, tenants[0], target)
    for t in tenants[:2]:
        served(two.p1, t, target)
        report(two.p1, t, match_id, "false_positive")
    time.sleep(0.5)
    assert served(two.p2, tenants[2], target) == [match_id], "two tenants switched it off"
    report(two.p1, tenants[2], match_id, "false_positive")
    until(lambda: served(two.p2, tenants[2], target) == [], 1.0)
    with FeedbackClient(two.p1.address, credentials=creds(manager)) as client:
        assert match_id not in {e.match_id for e in client.review("")}
        for call in (
            lambda: client.review(CASE_LIST),
            lambda: client.decide(CASE_LIST, match_id, "confirm"),
        ):
            assert refusal(call)[0] == grpc.StatusCode.PERMISSION_DENIED
    assert review(two.p1, operator, CASE_LIST)[match_id].state == "quarantined"
    with FeedbackClient(two.p1.address, credentials=creds(operator)) as client:
        assert client.decide(CASE_LIST, match_id, "confirm") == "confirmed"
    until(lambda: served(two.p2, tenants[2], target) == [match_id], 1.0)


def test_many_reports_at_once_all_count_and_decisions_keep_or_remove(two: Two) -> None:
    tokens = [two.key(f"crowd{i}", "check") for i in range(16)]
    manager = two.key("crowd-hotline", "list-manage", lists=("a",))
    two.settle()
    target = HASHES[9]
    [match_id] = served(two.p1, tokens[0], target)
    for i, t in enumerate(tokens):
        served(two.p1 if i % 2 else two.p2, t, target)
    errors: list[BaseException] = []

    def send(i: int, t: str) -> None:
        try:
            report(two.p1 if i % 2 else two.p2, t, match_id, "false_positive")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i, t)) for i, t in enumerate(tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entry = review(two.p2, manager, "a")[match_id]
    assert (entry.state, entry.false_positive) == ("quarantined", len(tokens))
    with FeedbackClient(two.p1.address, credentials=creds(manager)) as client:
        assert client.decide("a", match_id, "keep") == "quarantined"
        assert served(two.p1, tokens[0], target) == []
        until(lambda: served(two.p2, tokens[0], target) == [], 1.0)
        assert client.decide("a", match_id, "remove") == "removed"
        assert served(two.p1, tokens[0], target) == [], "removed: in effect on return"
        assert match_id not in {e.match_id for e in client.review("a")}
        assert refusal(lambda: client.decide("a", match_id, "confirm"))[0] == (
            grpc.StatusCode.NOT_FOUND
        )
        assert refusal(lambda: client.decide("a", match_id, "undo"))[0] == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
    until(lambda: {"entry_quarantined", "review_keep", "review_remove"} <= audited(two.url), 2.0)


def audited(url: str) -> set[str]:
    store = open_store(url)
    try:
        return {e.action for e in store.audit_events(0, 100_000)}
    finally:
        store.close()


def test_the_cli_speaks_json_and_exit_codes(two: Two) -> None:
    token, manager = two.key("cli", "check"), two.key("cli-hotline", "list-manage", lists=("a",))
    two.settle()
    [match_id] = served(two.p1, token, HASHES[10])
    server = ("--server", two.p1.address)
    done = run_cli("feedback", *server, "--api-key", token, match_id, "false_positive",
                   "--reason", "low_detail")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["lists"] == ["a"]
    missing = run_cli("feedback", *server, "--api-key", token, "cd" * 12, "confirmed")
    assert missing.returncode == 3 and "NOT_FOUND" in missing.stderr
    assert run_cli("feedback", *server, "--api-key", token, match_id, "nope").returncode == 2
    listed = run_cli("review", *server, "--api-key", manager, "--list", "a")
    assert listed.returncode == 0, listed.stderr
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert any(e["match_id"] == match_id and e["reasons"] == {"low_detail": 1} for e in entries)
    kept = run_cli("review", *server, "--api-key", manager, "--list", "a", "--keep", match_id)
    assert kept.returncode == 0 and json.loads(kept.stdout)["state"] == "quarantined"


def test_the_same_over_http(two: Two) -> None:
    platforms = [two.key(f"http{i}", "check") for i in range(2)]
    manager = two.key("http-hotline", "list-manage", lists=("a",))
    two.settle()
    base = f"http://{two.p1.http_address}"
    target = HASHES[11]
    match_id = ""
    for token in platforms:
        with bearer_client(base, token, 30) as http:
            answer = http.post(
                "/v1/check", json={"queries": [{"signal": "pdq", "hex": target.hex()}]}
            )
            match_id = answer.json()["results"][0]["matches"][0]["match_id"]
            missing = http.post(
                "/v1/feedback", json={"match_id": "ef" * 12, "verdict": "confirmed"}
            )
            assert missing.status_code == 404
            assert missing.json() == {"message": "no match with that id was served to this key"}
            bad = http.post("/v1/feedback", json={"match_id": match_id, "verdict": "meh"})
            assert bad.status_code == 400 and "verdict" in bad.json()["message"]
            done = http.post(
                "/v1/feedback", json={"match_id": match_id, "verdict": "false_positive"}
            )
            assert done.status_code == 200 and done.json() == {"lists": ["a"]}
    with bearer_client(base, manager, 30) as http:
        queue = http.get("/v1/review", params={"list": "a"}).json()["entries"]
        [entry] = [e for e in queue if e["match_id"] == match_id]
        assert (entry["state"], entry["false_positive"], entry["tenants"]) == ("quarantined", 2, [])
        assert http.get("/v1/review", params={"list": "b"}).status_code == 403
        decided = http.post(
            "/v1/lists/a/decide", json={"match_id": match_id, "decision": "confirm"}
        )
        assert decided.json() == {"state": "confirmed"}
    with bearer_client(base, platforms[0], 30) as http:
        assert http.get("/v1/review").status_code == 403  # a check key manages nothing


def test_an_hma_lookup_serves_only_the_banks_it_asked_about(two: Two) -> None:
    """`/m/lookup?banks=b` of a hash listed in 'a' answers nothing, so nothing of 'a' was
    served to that key: its report on the entry is refused as never served."""
    hma, other = two.key("hma-banks", "check"), two.key("hma-other", "check")
    two.settle()
    target = HASHES[12]
    [match_id] = served(two.p1, other, target)
    lookup = {"signal_type": "pdq", "signal": target.hex()}
    with bearer_client(f"http://{two.p1.http_address}", hma, 30) as http:
        assert http.get("/m/lookup", params={**lookup, "banks": "b"}).json() == {}
        assert http.get("/m/raw_lookup", params={**lookup, "banks": "b"}).json() == {"matches": []}
        unseen = http.post("/v1/feedback", json={"match_id": match_id, "verdict": "confirmed"})
        assert unseen.status_code == 404, unseen.text
        assert list(http.get("/m/lookup", params={**lookup, "banks": "a,b"}).json()) == ["a"]
        seen = http.post("/v1/feedback", json={"match_id": match_id, "verdict": "confirmed"})
        assert seen.status_code == 200, seen.text


def test_a_list_set_to_one_tenant_quarantines_on_one_report(two: Two) -> None:
    """Threshold 1: one tenant's false_positive is enough. A lowered threshold counts the
    reports already taken at the entry's next report, not at the change; a raised one
    releases nothing already quarantined."""
    t1, t2, t3 = (two.key(t, "check") for t in ("solo1", "solo2", "solo3"))
    manager = two.key("solo-hotline", "list-manage", lists=("solo", "trio"))
    two.settle()
    solo, trio = random_pdq(2, 29)
    with SubmissionClient(two.p1.address, credentials=creds(manager)) as sub:
        assert sub.create_list("solo", feedback_threshold=1).feedback_threshold == 1
        assert sub.create_list("trio").feedback_threshold == 2, "the default"
        assert sub.set_policy("trio", feedback_threshold=3).feedback_threshold == 3
        assert sub.list_info("trio").feedback_threshold == 3
        sub.upload("solo", [NewEntry("pdq", solo)])
        sub.upload("trio", [NewEntry("pdq", trio)])
    until(lambda: bool(served(two.p2, t3, solo)) and bool(served(two.p2, t3, trio)), 3.0)
    [solo_id] = served(two.p1, t1, solo)
    assert report(two.p1, t1, solo_id, "false_positive") == ["solo"]
    assert served(two.p1, t2, solo) == []
    assert until(lambda: served(two.p2, t2, solo) == [], 1.0) < 1.0
    assert review(two.p1, manager, "solo")[solo_id].state == "quarantined"

    [trio_id] = served(two.p1, t1, trio)
    served(two.p1, t2, trio)
    for token in (t1, t2):
        report(two.p1, token, trio_id, "false_positive")
    assert served(two.p1, t3, trio) == [trio_id], "two of three quarantined it"
    with SubmissionClient(two.p1.address, credentials=creds(manager)) as sub:
        assert sub.set_policy("trio", feedback_threshold=2).feedback_threshold == 2
    time.sleep(0.5)
    assert served(two.p2, t3, trio) == [trio_id], "the change alone quarantined it"
    report(two.p1, t2, trio_id, "false_positive")  # the next report; t2 still counts once
    assert served(two.p1, t3, trio) == []
    until(lambda: served(two.p2, t3, trio) == [], 1.0)
    with SubmissionClient(two.p1.address, credentials=creds(manager)) as sub:
        sub.set_policy("trio", feedback_threshold=5)
    time.sleep(0.5)
    assert served(two.p2, t3, trio) == [], "a raised threshold released it without review"
    assert review(two.p1, manager, "trio")[trio_id].state == "quarantined"


def test_feedback_thresholds_out_of_bounds_or_out_of_reach_are_refused(two: Two) -> None:
    manager = two.key("bound-hotline", "list-manage", lists=("bounded", "bounded-http"))
    stranger = two.key("bound-stranger", "list-manage", lists=("elsewhere",))
    everywhere = two.key("bound-wide", "list-manage")  # every list in scope, not an admin
    rival = two.key("bound-rival", "list-manage")
    operator = two.key("bound-op", "admin")
    two.settle()

    def refused(
        token: str, call: Callable[[SubmissionClient], object]
    ) -> tuple[grpc.StatusCode, str]:
        with SubmissionClient(two.p1.address, credentials=creds(token)) as sub:
            return refusal(lambda: call(sub))

    for k in (0, 101, 2**32 - 1):
        code, detail = refused(
            manager, lambda sub, k=k: sub.create_list("bounded", feedback_threshold=k)
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "feedback threshold" in detail, k
    assert refused(manager, lambda sub: sub.list_info("bounded"))[0] == grpc.StatusCode.NOT_FOUND
    with SubmissionClient(two.p1.address, credentials=creds(manager)) as sub:
        sub.create_list("bounded", feedback_threshold=100)
        with pytest.raises(ValueError):  # a negative threshold can't even be sent
            sub.set_policy("bounded", feedback_threshold=-1)
    for k in (0, 101, 2**32 - 1):
        code, detail = refused(
            manager,
            lambda sub, k=k: sub.set_policy(
                "bounded", {"pdq": 9}, quarantine_anomalies=True, feedback_threshold=k
            ),
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "feedback threshold" in detail, k
    with SubmissionClient(two.p1.address, credentials=creds(manager)) as sub:
        info = sub.list_info("bounded")
    assert (info.feedback_threshold, dict(info.max_distance), info.quarantine_anomalies) == (
        100,
        {},
        False,
    ), "a refused policy change changed something"

    out_of_scope = refused(stranger, lambda sub: sub.set_policy("bounded", feedback_threshold=1))
    assert out_of_scope[0] == grpc.StatusCode.PERMISSION_DENIED
    with SubmissionClient(two.p1.address, credentials=creds(everywhere)) as sub:
        sub.create_list("bound-wide-benign", kind="negative")
    absent = refused(rival, lambda sub: sub.set_policy("bound-wide-benign", feedback_threshold=1))
    nothing = refused(rival, lambda sub: sub.set_policy("no-such", feedback_threshold=1))
    assert absent[0] == nothing[0] == grpc.StatusCode.NOT_FOUND
    assert absent[1] == nothing[1].replace("no-such", "bound-wide-benign")
    for token in (everywhere, rival):
        for k in (1, 5):
            call = lambda sub, k=k: sub.set_policy(CASE_LIST, feedback_threshold=k)  # noqa: E731
            assert refused(token, call)[0] == grpc.StatusCode.PERMISSION_DENIED
    for k in (0, 1, 2):
        code, detail = refused(
            operator, lambda sub, k=k: sub.set_policy(CASE_LIST, feedback_threshold=k)
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "victims' cases" in detail, k
    with SubmissionClient(two.p1.address, credentials=creds(operator)) as sub:
        assert sub.set_policy(CASE_LIST, feedback_threshold=4).feedback_threshold == 4
        assert sub.set_policy(CASE_LIST, feedback_threshold=3).feedback_threshold == 3

    with bearer_client(f"http://{two.p1.http_address}", manager, 30) as http:
        for bad in (-1, 0, 101, 2**32, "x", 1.5, [3]):
            answer = http.post("/v1/lists/bounded/policy", json={"feedback_threshold": bad})
            assert answer.status_code == 400, bad
        made = http.post("/v1/lists", json={"name": "bounded-http", "feedback_threshold": 0})
        assert made.status_code == 400 and "feedback threshold" in made.json()["message"]
        assert http.get("/v1/lists/bounded-http").status_code == 404
        done = http.post("/v1/lists/bounded/policy", json={"feedback_threshold": 7})
        assert done.status_code == 200 and done.json()["feedback_threshold"] == 7
    store = open_store(two.url)
    try:
        assert store.list_info("bounded").feedback_threshold == 7
        assert store.list_info(CASE_LIST).feedback_threshold == 3

        def changes() -> list[object]:
            return [
                e.detail["feedback_threshold"]
                for e in store.audit_events(0, 100_000)
                if e.action == "set_list_policy" and e.list == CASE_LIST
                and e.actor.startswith("bound-op/")
            ]  # fmt: skip

        until(lambda: changes() == [4, 3], 3.0)  # every change, by whom, and nothing refused
    finally:
        store.close()


def test_concurrent_threshold_changes_all_land_and_one_wins(two: Two) -> None:
    managers = [two.key(f"race{i}", "list-manage", lists=("race",)) for i in range(6)]
    two.settle()
    with SubmissionClient(two.p1.address, credentials=creds(managers[0])) as sub:
        sub.create_list("race")
    answers: list[int] = []
    errors: list[BaseException] = []

    def change(token: str, k: int) -> None:
        proc = two.p1 if k % 2 else two.p2
        try:
            with SubmissionClient(proc.address, credentials=creds(token)) as sub:
                for _ in range(3):
                    answers.append(sub.set_policy("race", feedback_threshold=k).feedback_threshold)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=change, args=(t, k)) for k, t in enumerate(managers, start=1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(answers) == 18
    assert set(answers) <= set(range(1, 7))
    with SubmissionClient(two.p1.address, credentials=creds(managers[0])) as sub:
        assert sub.list_info("race").feedback_threshold in range(1, 7)


def test_the_cli_sets_a_lists_feedback_threshold(two: Two) -> None:
    manager = two.key("cli-threshold", "list-manage", lists=("cli-k",))
    two.settle()
    cli = ("--server", two.p1.address, "--api-key", manager)
    for bad in ("0", "101", "-1", "x"):
        refused = run_cli("list", "create", *cli, "cli-k", "--feedback-threshold", bad)
        assert refused.returncode == 2 and "--feedback-threshold" in refused.stderr, bad
    made = run_cli("list", "create", *cli, "cli-k", "--feedback-threshold", "4")
    assert made.returncode == 0 and "from 4 tenants\n" in made.stdout, made.stderr
    changed = run_cli("list", "policy", *cli, "cli-k", "--feedback-threshold", "1")
    assert changed.returncode == 0 and "from 1 tenant\n" in changed.stdout, changed.stderr
    refused = run_cli("list", "policy", *cli, "cli-k", "--feedback-threshold", "101")
    assert refused.returncode == 2


def test_feedback_flows_upstream_through_sync_when_shared(tmp_path: Path) -> None:
    """A hotline's list copied downstream: the downstream's platforms report, and the
    hotline pulls the counts (no tenant names) once the downstream opted in."""
    up_url = f"sqlite:///{tmp_path / 'up.db'}"
    down_url = f"sqlite:///{tmp_path / 'down.db'}"
    up = open_store(up_url)
    up.add_entries("hotline", [NewEntry("pdq", h) for h in HASHES[:5]])
    up_reader = up.create_key("downstream", ["sync-read"])[1]
    up.close()
    down = open_store(down_url)
    puller = down.create_key("hotline", ["sync-read"], ["hotline"])[1]
    platforms = [down.create_key(f"p{i}", ["check"])[1] for i in range(2)]
    down.close()
    with running_server(tmp_path / "up-index", "--store", up_url) as upstream:
        down = open_store(down_url)
        pull(down, upstream.address, "hotline", credentials=creds(up_reader))
        down.close()

    def pull_feedback(downstream: ServerProcess) -> subprocess.CompletedProcess[str]:
        return run_cli("sync", "feedback", "--store", up_url, "--from", downstream.address,
                       "--list", "hotline", "--api-key", puller)  # fmt: skip

    for share in (False, True):
        flags = ("--share-feedback",) if share else ()
        index = tmp_path / f"down-index-{share}"
        with running_server(index, "--store", down_url, *flags) as downstream:
            if not share:
                done = pull_feedback(downstream)
                assert done.returncode != 0 and "PERMISSION_DENIED" in done.stderr
                continue
            [match_id] = served(downstream, platforms[0], HASHES[2])
            for p in platforms:
                served(downstream, p, HASHES[2])
                report(downstream, p, match_id, "false_positive")
            done = pull_feedback(downstream)
            assert done.returncode == 0, done.stderr
    up = open_store(up_url)
    try:
        [item] = up.review_queue(["hotline"])
    finally:
        up.close()
    assert item.match_id.hex() == match_id and item.state == "reported"
    [remote] = item.remote
    assert (remote.false_positive, remote.confirmed) == (2, 0)
    assert remote.source.endswith("/hotline")


def test_quarantine_reaches_another_process_within_a_second_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    store = open_store(postgres_url)
    store.add_entries("a", [NewEntry("pdq", h) for h in HASHES[:4]])
    tokens = [store.create_key(f"pg{i}", ["check"])[1] for i in range(3)]
    store.close()
    common = ("--store", postgres_url, "--poll-interval", "0.1")
    with ExitStack() as stack:
        p1 = stack.enter_context(running_server(tmp_path / "index", *common))
        p2 = stack.enter_context(running_server(tmp_path / "index", *common, "--no-compact"))
        [match_id] = served(p1, tokens[0], HASHES[1])
        served(p1, tokens[1], HASHES[1])
        assert served(p2, tokens[2], HASHES[1]) == [match_id]
        for token in tokens[:2]:
            report(p1, token, match_id, "false_positive")
        assert until(lambda: served(p2, tokens[2], HASHES[1]) == [], 1.0) < 1.0
