"""Attacks on issue 27's promises (feedback, quarantine on evidence, review, negative lists),
over real gRPC with keys on. Each test here states a promise and fails while it is broken.

The setting: a downstream server copies an upstream's lists with `sync pull`. Synced copies
keep the upstream's match ids, so one match id can sit in several local lists (the issue
names this case: "a match id that exists in several lists ... is reported per list").
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from hashmatch.channel import Credentials, open_channel
from hashmatch.client import MatchClient
from hashmatch.demo.serve_process import ServerProcess, running_server
from hashmatch.feedback import FeedbackClient
from hashmatch.list_formats import NewEntry
from hashmatch.v1 import feedback_pb2, feedback_pb2_grpc
from indexer.store import CASE_LIST, open_store
from indexer.sync import PullReport, SyncError, pull, pull_feedback
from service.auth import RELOAD_SECONDS
from tests.serving import bearer_client
from tests.test_security import random_pdq

HOT = random_pdq(10, 2701)  # the upstream hotline's list
NEG = random_pdq(2, 2703)  # tenant acme's own benign images (also, by collision, on HOT's list)


@dataclass
class Down:
    server: ServerProcess
    url: str
    pulled: dict[str, PullReport]  # by local list name

    def key(self, tenant: str, *roles: str, lists: tuple[str, ...] | None = None) -> str:
        store = open_store(self.url)
        try:
            return store.create_key(tenant, roles, lists)[1]
        finally:
            store.close()


@pytest.fixture(scope="module")
def down(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Down]:
    work = tmp_path_factory.mktemp("attack27")
    up_url, down_url = f"sqlite:///{work / 'up.db'}", f"sqlite:///{work / 'down.db'}"
    up = open_store(up_url)
    up.add_entries("hotline", [NewEntry("pdq", h) for h in (*HOT, *NEG)])
    up.create_list("acme-benign", kind="negative", tenant="acme")
    up.add_entries("acme-benign", [NewEntry("pdq", h) for h in NEG])
    reader = up.create_key("acme", ["sync-read"], ["hotline", "acme-benign"])[1]
    up.close()
    with running_server(work / "up-index", "--store", up_url) as upstream:
        store = open_store(down_url)
        creds = Credentials(api_key=reader)
        # The same upstream reached by two names (as a list copied along two sync paths
        # is): each name is its own sync source, so its own cursor.
        port = upstream.address.rpartition(":")[2]
        pulled = {}
        for target, remote, local in [
            (upstream.address, "hotline", "m1"),
            (f"localhost:{port}", "hotline", "m2"),
        ]:
            pulled[local] = pull(store, target, remote, into=local, credentials=creds)
        # A negative list is pulled only once the operator says whose it is here.
        with pytest.raises(SyncError, match="--negative-for"):
            pull(store, upstream.address, "acme-benign", credentials=creds)
        assert "acme-benign" not in {p.name for p in store.list_policies()}
        pulled["acme-benign"] = pull(
            store, upstream.address, "acme-benign", credentials=creds, negative_for="acme"
        )
        # A victim's case taken by the downstream itself (the same image acme holds benign).
        store.create_case([NewEntry("pdq", NEG[0])])
        # A negative list of the downstream's own tenant beta, made there.
        store.create_list("beta-benign", kind="negative", tenant="beta")
        store.add_entries("beta-benign", [NewEntry("pdq", NEG[1])])
        store.close()
    with running_server(
        work / "down-index",
        "--store",
        down_url,
        "--poll-interval",
        "0.1",
        "--http-listen",
        "127.0.0.1:0",
        "--share-feedback",
    ) as server:
        yield Down(server, down_url, pulled)


def settle() -> None:
    time.sleep(RELOAD_SECONDS + 0.2)


def matches(d: Down, token: str, h: bytes) -> list[tuple[str, str]]:
    """(list, match id) of each match a check of `h` is answered."""
    with MatchClient(d.server.address, credentials=Credentials(api_key=token)) as client:
        return sorted((m.list, m.match_id) for m in client.check([("pdq", h)])[0].matches)


def feedback(d: Down, token: str) -> FeedbackClient:
    return FeedbackClient(d.server.address, credentials=Credentials(api_key=token))


def eventually(condition: Callable[[], bool], limit: float = 1.5) -> bool:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > limit:
            return False
        time.sleep(0.05)
    return True


def test_a_second_sync_copy_of_a_list_is_not_silently_empty(down: Down) -> None:
    """Synced copies keep the upstream's match ids, and match ids are unique across the
    store: the second copy of the same upstream list (m2) can't hold them. The pull must
    say so, entry by entry, naming the list that holds each, not report them added."""
    first, second = down.pulled["m1"], down.pulled["m2"]
    assert (first.added, first.refused) == (len(HOT) + len(NEG), 0)
    assert (second.added, second.refused) == (0, len(HOT) + len(NEG)), (
        "the second sync copy of hotline (m2) was silently left empty"
    )
    assert all(r.endswith("match id already held by list 'm1'") for r in second.refusals)
    platform = down.key("plat-a", "check")
    settle()
    assert [n for n, _ in matches(down, platform, HOT[0])] == ["m1"]


def test_review_does_not_tell_another_tenants_negative_list_from_no_list(down: Down) -> None:
    """Another tenant's negative list is NOT_FOUND "as for a list that does not exist"
    (SubmissionServicer.reach). Review with list= must not confirm it exists either."""
    snoop = down.key("snoop", "list-manage")  # unscoped: it may manage any list it can see
    settle()
    with feedback(down, snoop) as client:
        codes = {}
        for name in ("beta-benign", "no-such-list"):
            try:
                client.review(name)
                codes[name] = "OK"
            except grpc.RpcError as exc:
                assert isinstance(exc, grpc.Call)
                codes[name] = exc.code().name
    assert codes["beta-benign"] == codes["no-such-list"], (
        f"Review tells another tenant's negative list from none: {codes}"
    )


def test_pull_feedback_does_not_tell_another_tenants_negative_list_from_no_list(
    down: Down,
) -> None:
    """Sync Pull answers another tenant's negative list NOT_FOUND, as no list; PullFeedback
    (serve --share-feedback) must not confirm that it exists either."""
    reader = down.key("snoop-sync", "sync-read")
    settle()
    codes = {}
    with open_channel(down.server.address, Credentials(api_key=reader)) as ch:
        stub = feedback_pb2_grpc.FeedbackServiceStub(ch)
        for name in ("beta-benign", "no-such-list"):
            try:
                list(stub.PullFeedback(feedback_pb2.PullFeedbackRequest(list=name), timeout=10))
                codes[name] = "OK"
            except grpc.RpcError as exc:
                assert isinstance(exc, grpc.Call)
                codes[name] = exc.code().name
    assert codes["beta-benign"] == codes["no-such-list"], (
        f"PullFeedback tells another tenant's negative list from none: {codes}"
    )


def test_a_pulled_tenant_negative_list_suppresses_only_that_tenant(down: Down) -> None:
    """acme's negative list, copied by sync, must not become a negative list for every
    tenant of the downstream: another tenant's check of a hash on m1 still matches."""
    other = down.key("plat-c", "check")
    settle()
    store = open_store(down.url)
    try:
        held = {p.name: (p.kind, p.tenant) for p in store.list_policies()}
    finally:
        store.close()
    assert matches(down, other, NEG[0]), (
        f"as pulled here, acme-benign is (kind, tenant) {held['acme-benign']}: "
        "tenant acme's negative list, pulled by sync, suppressed another tenant's matches"
    )
    assert held["acme-benign"] == ("negative", "acme")
    assert matches(down, down.key("acme", "check"), NEG[0]) == []  # still acme's own


def test_many_tenants_reporting_at_once_quarantine_once(down: Down) -> None:
    """Eight tenants report one entry at the same moment (threshold 2): every report is
    recorded, the entry is quarantined exactly once, and the audit says so once."""
    tokens = [down.key(f"race{i}", "check") for i in range(8)]
    settle()
    [match_id] = {m for _, m in matches(down, tokens[0], HOT[2])}
    for token in tokens[1:]:
        matches(down, token, HOT[2])
    start = threading.Barrier(len(tokens))
    answers: list[list[str]] = []

    def one(token: str) -> None:
        with feedback(down, token) as client:
            start.wait()
            answers.append(client.report(match_id, "false_positive"))

    threads = [threading.Thread(target=one, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [["m1"]] * len(tokens)
    assert eventually(lambda: matches(down, tokens[0], HOT[2]) == [])

    def events(action: str) -> int:
        store = open_store(down.url)
        try:
            found = store.audit_events(0, 100_000)
        finally:
            store.close()
        return sum(e.action == action and match_id in str(e) for e in found)

    assert eventually(lambda: events("feedback") == len(tokens), 3.0)
    assert events("entry_quarantined") == 1


def match_ids(db: Path, list_name: str) -> list[bytes]:
    """The match ids of a list, read from the SQLite file (the store API never shows them
    without a check)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT e.match_id FROM entries e JOIN lists l ON l.id = e.list_id WHERE l.name = ?",
            (list_name,),
        ).fetchall()
    return [bytes(r[0]) for r in rows]


class HostileDownstream(feedback_pb2_grpc.FeedbackServiceServicer):
    """A downstream server that answers PullFeedback with whatever it likes."""

    def __init__(self, entries: list[feedback_pb2.EntryFeedback]) -> None:
        self.entries = entries
        self.address = ""

    def PullFeedback(
        self, request: feedback_pb2.PullFeedbackRequest, context: grpc.ServicerContext
    ) -> Iterator[feedback_pb2.PullFeedbackResponse]:
        yield feedback_pb2.PullFeedbackResponse(entries=self.entries)


@pytest.fixture
def hostile() -> Iterator[HostileDownstream]:
    servicer = HostileDownstream([])  # type: ignore[abstract]
    server = grpc.server(futures.ThreadPoolExecutor(2))
    feedback_pb2_grpc.add_FeedbackServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.address = f"127.0.0.1:{port}"
    try:
        yield servicer
    finally:
        server.stop(0)


def test_pulled_feedback_stays_on_the_list_it_was_pulled_for(
    tmp_path: Path, hostile: HostileDownstream
) -> None:
    """`sync feedback --list hotline` takes a downstream's counts on the entries it copied
    of hotline. A downstream must not be able to pin counts on other entries of ours,
    such as a victim's case, where they show in the operator's review as evidence."""
    store = open_store(f"sqlite:///{tmp_path / 'up.db'}")
    try:
        store.add_entries("hotline", [NewEntry("pdq", HOT[0])])
        store.create_case([NewEntry("pdq", HOT[1])])
        [case_id] = match_ids(tmp_path / "up.db", CASE_LIST)
        hostile.entries = [
            feedback_pb2.EntryFeedback(match_id=case_id, seq=1, false_positive=1_000_000)
        ]
        pull_feedback(store, hostile.address, "hotline")
        remote = [r for item in store.review_queue([CASE_LIST]) for r in item.remote]
        assert remote == [], f"a downstream pinned feedback on a victim's entry: {remote}"
    finally:
        store.close()


def test_a_hostile_feedback_seq_is_refused_not_a_crash(
    tmp_path: Path, hostile: HostileDownstream
) -> None:
    """A downstream's seq past what the store holds (2**63 - 1) is a SyncError naming it,
    as a pulled change's is, not an OverflowError out of the store."""
    store = open_store(f"sqlite:///{tmp_path / 'up.db'}")
    try:
        store.add_entries("hotline", [NewEntry("pdq", HOT[0])])
        [mine] = match_ids(tmp_path / "up.db", "hotline")
        hostile.entries = [feedback_pb2.EntryFeedback(match_id=mine, seq=2**64 - 1, confirmed=1)]
        with contextlib.suppress(SyncError):
            pull_feedback(store, hostile.address, "hotline")
    finally:
        store.close()


def test_bogus_reports_do_not_stall_other_tenants_checks(down: Down) -> None:
    """A NOT_FOUND report holds its server thread for SERVED_GRACE (0.8 s, so every
    NOT_FOUND takes as long). Two check keys spending their report burst (60 each, all
    at once) on unknown match ids must not stall another tenant's Check: each of its
    checks during the burst answers in well under the grace."""
    attackers = [down.key("stall", "check") for _ in range(2)]
    victim = down.key("bystander", "check")
    settle()
    matches(down, victim, HOT[3])  # connected and warm
    started = time.monotonic()
    matches(down, victim, HOT[3])
    baseline = time.monotonic() - started
    channels = [
        open_channel(down.server.address, Credentials(api_key=t)).__enter__() for t in attackers
    ]
    try:
        bogus = [
            feedback_pb2_grpc.FeedbackServiceStub(ch).Report.future(
                feedback_pb2.ReportRequest(match_id=f"{i:024x}", verdict="false_positive"),
                timeout=30,
            )
            for ch in channels
            for i in range(60)
        ]
        time.sleep(0.1)
        slowest = 0.0
        for _ in range(5):
            started = time.monotonic()
            assert matches(down, victim, HOT[3])
            slowest = max(slowest, time.monotonic() - started)
        codes = {f.exception().code() if f.exception() else None for f in bogus}  # type: ignore[union-attr]
    finally:
        for ch in channels:
            ch.close()
    assert codes <= {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert slowest < 0.6, (
        f"another tenant's Check took {slowest:.2f}s during the burst ({baseline:.3f}s before)"
    )


def test_bogus_http_reports_of_one_key_do_not_stall_other_tenants_http_calls(
    down: Down,
) -> None:
    """Over HTTP a report runs on a worker thread of a shared pool; one key's report
    burst (60 at once, on unknown ids) must not hold another tenant's HTTP calls (its
    bank listing, its HMA lookup) for the NOT_FOUND grace."""
    attacker, victim = down.key("http-stall", "check"), down.key("http-bystander", "check")
    settle()
    base = f"http://{down.server.http_address}"
    lookup = {"signal_type": "pdq", "signal": HOT[4].hex()}

    def timed(http: httpx.Client, path: str, **kw: object) -> float:
        started = time.monotonic()
        assert http.get(path, **kw).status_code == 200  # type: ignore[arg-type]
        return time.monotonic() - started

    with bearer_client(base, victim, 30) as http:
        timed(http, "/c/banks")
        baseline = timed(http, "/m/raw_lookup", params=lookup)

        def bogus(i: int) -> int:
            with bearer_client(base, attacker, 30) as h:
                body = {"match_id": f"{i:024x}", "verdict": "false_positive"}
                return h.post("/v1/feedback", json=body).status_code

        with futures.ThreadPoolExecutor(60) as pool:
            burst = [pool.submit(bogus, i) for i in range(60)]
            time.sleep(0.2)
            slowest = max(
                max(timed(http, "/c/banks"), timed(http, "/m/raw_lookup", params=lookup))
                for _ in range(3)
            )
            codes = {f.result() for f in burst}
    assert codes <= {404, 429}
    assert slowest < 0.6, (
        f"another tenant's HTTP call took {slowest:.2f}s during the burst ({baseline:.3f}s before)"
    )


def test_a_pulled_negative_list_does_not_switch_off_the_downstreams_victims_cases(
    down: Down,
) -> None:
    """What the upstream's tenant acme keeps benign for itself must not, once pulled, stop
    a victim's case taken by the downstream from matching for the downstream's platforms
    (`sync pull` refuses a negative list until the operator says whose it is here)."""
    other = down.key("plat-d", "check")
    settle()
    assert CASE_LIST in {n for n, _ in matches(down, other, NEG[0])}, (
        "a pulled negative list of one upstream tenant switched off a victim's case here"
    )
