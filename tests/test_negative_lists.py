"""Per-list distances and negative lists, over real gRPC with real keys of two tenants."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from hashmatch.channel import Credentials, open_channel
from hashmatch.client import MatchClient
from hashmatch.demo.serve_process import ServerProcess, free_ports
from hashmatch.list_formats import NewEntry
from hashmatch.submission import SubmissionClient
from hashmatch.v1 import match_pb2, match_pb2_grpc, sync_pb2, sync_pb2_grpc
from indexer.store import MAX_TENANT_NEGATIVE_ENTRIES, open_store
from indexer.sync import SyncError, pull
from tests.conftest import run_cli
from tests.serving import bearer_client
from tests.test_security import HASHES, code_of, random_pdq, secured

Server = tuple[ServerProcess, str, int]


def flipped(h: bytes, bits: int) -> bytes:
    """`h` with its first `bits` bits flipped: exactly that Hamming distance away."""
    value = bytearray(h)
    for b in range(bits):
        value[b // 8] ^= 0x80 >> (b % 8)
    return bytes(value)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    metrics_port = free_ports()
    args = ("--metrics-port", str(metrics_port), "--http-listen", "127.0.0.1:0")
    with secured(tmp_path_factory.mktemp("negative"), *args) as (proc, url):
        yield proc, url, metrics_port


def key(url: str, tenant: str, *roles: str, lists: tuple[str, ...] | None = None) -> Credentials:
    store = open_store(url)
    try:
        _, token = store.create_key(tenant, roles, lists)
    finally:
        store.close()
    time.sleep(0.6)  # one periodic key reload: a first use just after another is refused
    return Credentials(api_key=token)


def matched(proc: ServerProcess, creds: Credentials, h: bytes) -> bool:
    with MatchClient(proc.address, credentials=creds) as client:
        return client.check([("pdq", h)])[0].matched


def suppressed(metrics_port: int, list_name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    prefix = f'hashmatch_suppressed_total{{list="{list_name}",signal="pdq"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


def eventually(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    """An upload is in effect within the follower's poll (0.1 s here)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


def test_a_negative_entry_suppresses_only_its_owners_matches(server: Server) -> None:
    proc, url, metrics_port = server
    mine = key(url, "t1", "check", "list-manage", "sync-read")
    theirs = key(url, "t2", "check", "list-manage", "sync-read")
    benign = flipped(HASHES[0], 3)  # t1's own benign image, near a listed one
    with SubmissionClient(proc.address, credentials=mine) as sub:
        info = sub.create_list("t1-benign", kind="negative")
        assert info.kind == "negative" and not info.all_tenants
        assert sub.upload("t1-benign", [NewEntry("pdq", benign)]).added == 1
    eventually(lambda: not matched(proc, mine, HASHES[0]))
    assert suppressed(metrics_port, "t1-benign") >= 1
    # The other tenant still matches; so does t1 on entries far from its negative entry.
    assert matched(proc, theirs, HASHES[0])
    assert matched(proc, mine, HASHES[1])
    # A negative list is never matched against, not even by its owner.
    lone = flipped(HASHES[19], 128)
    with SubmissionClient(proc.address, credentials=mine) as sub:
        sub.upload("t1-benign", [NewEntry("pdq", lone)])
    time.sleep(0.5)
    assert not matched(proc, mine, lone) and not matched(proc, theirs, lone)
    # A query narrowed below the negative entry's distance is still suppressed: max_distance
    # narrows matches, not a negative list's reach.
    with open_channel(proc.address, mine) as ch:
        stub = match_pb2_grpc.MatchServiceStub(ch)
        query = match_pb2.Query(signal="pdq", hash=HASHES[0], max_distance=1)
        reply = stub.Check(match_pb2.CheckRequest(queries=[query]), timeout=10)
        assert not reply.results[0].matched


def test_another_tenants_negative_list_is_as_absent_as_no_list(server: Server) -> None:
    proc, url, _ = server
    owner = key(url, "t3", "list-manage", "sync-read")
    other = key(url, "t4", "list-manage", "sync-read")
    with SubmissionClient(proc.address, credentials=owner) as sub:
        sub.create_list("t3-benign", kind="negative")
        sub.upload("t3-benign", [NewEntry("pdq", HASHES[11])])
        assert sub.list_info("t3-benign").entries == 1
    with SubmissionClient(proc.address, credentials=other) as sub:
        for name in ("t3-benign", "no-such-list"):
            for call in (
                lambda n=name: sub.list_info(n),
                lambda n=name: sub.upload(n, [NewEntry("pdq", HASHES[12])]),
                lambda n=name: sub.remove(n, [("pdq", HASHES[11])]),
                lambda n=name: sub.set_policy(n, {"pdq": 5}),
            ):
                assert code_of(call) == grpc.StatusCode.NOT_FOUND, name
    with open_channel(proc.address, other) as ch:
        stub = sync_pb2_grpc.SyncServiceStub(ch)
        for name in ("t3-benign", "no-such-list"):
            stream = stub.Pull(sync_pb2.PullRequest(list=name), timeout=5)
            assert code_of(lambda s=stream: list(s)) == grpc.StatusCode.NOT_FOUND
    with SubmissionClient(proc.address, credentials=owner) as sub:
        assert sub.list_info("t3-benign").entries == 1  # the other tenant changed nothing


def test_a_global_negative_list_suppresses_everyones_matches(server: Server) -> None:
    proc, url, metrics_port = server
    admin = key(url, "operator", "admin")
    t5, t6 = key(url, "t5", "check", "list-manage"), key(url, "t6", "check")
    with SubmissionClient(proc.address, credentials=t5) as sub:
        call = lambda: sub.create_list("not-mine-to-make", kind="negative", all_tenants=True)  # noqa: E731
        assert code_of(call) == grpc.StatusCode.PERMISSION_DENIED
    assert matched(proc, t5, HASHES[2]) and matched(proc, t6, HASHES[2])
    with SubmissionClient(proc.address, credentials=admin) as sub:
        info = sub.create_list("known-benign", kind="negative", all_tenants=True)
        assert info.all_tenants
        sub.upload("known-benign", [NewEntry("pdq", flipped(HASHES[2], 10))])
    eventually(lambda: not matched(proc, t5, HASHES[2]) and not matched(proc, t6, HASHES[2]))
    assert suppressed(metrics_port, "known-benign") >= 2
    # A tenant key sees the global list as absent; it suppresses its matches regardless.
    with SubmissionClient(proc.address, credentials=t5) as sub:
        assert code_of(lambda: sub.list_info("known-benign")) == grpc.StatusCode.NOT_FOUND


def test_a_lists_own_distance_narrows_and_a_wider_one_is_refused(server: Server) -> None:
    proc, url, _ = server
    manager, checker = key(url, "t7", "list-manage"), key(url, "t8", "check")
    listed = random_pdq(1, 77)[0]
    with SubmissionClient(proc.address, credentials=manager) as sub:
        for distance in (32, 1_000, 2**32 - 1):
            call = lambda d=distance: sub.create_list("too-wide", max_distance={"pdq": d})  # noqa: E731
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "exceeds its threshold 31" in str(refused.value.details())
        assert code_of(lambda: sub.list_info("too-wide")) == grpc.StatusCode.NOT_FOUND
        for bad in ({"nope": 3}, {"md5": 1}):
            bad_call = lambda b=bad: sub.create_list("bad-signal", max_distance=b)  # noqa: E731
            assert code_of(bad_call) == grpc.StatusCode.INVALID_ARGUMENT
        info = sub.create_list("narrow", max_distance={"pdq": 8})
        assert dict(info.max_distance) == {"pdq": 8}
        sub.upload("narrow", [NewEntry("pdq", listed)])
    eventually(lambda: matched(proc, checker, flipped(listed, 8)))
    assert not matched(proc, checker, flipped(listed, 9))

    def distance_with(max_distance: int) -> list[int]:
        with open_channel(proc.address, checker) as ch:
            query = match_pb2.Query(
                signal="pdq", hash=flipped(listed, 6), max_distance=max_distance
            )
            reply = match_pb2_grpc.MatchServiceStub(ch).Check(
                match_pb2.CheckRequest(queries=[query]), timeout=10
            )
            return [m.distance for m in reply.results[0].matches]

    assert distance_with(31) == [6] and distance_with(6) == [6]  # wider asks can't widen
    assert distance_with(5) == []  # narrower ones narrow
    with SubmissionClient(proc.address, credentials=manager) as sub:
        wider = lambda: sub.set_policy("narrow", {"pdq": 40})  # noqa: E731
        assert code_of(wider) == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(sub.set_policy("narrow", {"pdq": 12}).max_distance) == {"pdq": 12}
    assert matched(proc, checker, flipped(listed, 12))  # in effect on return
    with SubmissionClient(proc.address, credentials=manager) as sub:
        info = sub.set_policy("narrow", default_distance=["pdq"], quarantine_anomalies=True)
        assert dict(info.max_distance) == {} and info.quarantine_anomalies
    assert matched(proc, checker, flipped(listed, 31))


def test_negative_lists_are_bounded_and_hostile_requests_refused(server: Server) -> None:
    proc, url, _ = server
    flooder = key(url, "t9", "check", "list-manage")
    with SubmissionClient(proc.address, credentials=flooder) as sub:
        for name, kind in (("bad\nname", "negative"), ("x" * 129, "negative"), ("ok", "evil")):
            call = lambda n=name, k=kind: sub.create_list(n, kind=k)  # noqa: E731
            assert code_of(call) == grpc.StatusCode.INVALID_ARGUMENT
        all_match = lambda: sub.create_list("m", all_tenants=True)  # noqa: E731
        assert code_of(all_match) == grpc.StatusCode.INVALID_ARGUMENT
        sub.create_list("flood-1", kind="negative")
        sub.create_list("flood-2", kind="negative")
        hashes = random_pdq(MAX_TENANT_NEGATIVE_ENTRIES + 10, 9)
        first = sub.upload("flood-1", [NewEntry("pdq", h) for h in hashes[:6_000]])
        second = sub.upload("flood-2", [NewEntry("pdq", h) for h in hashes[6_000:]])
        assert first.added == 6_000
        assert second.added == MAX_TENANT_NEGATIVE_ENTRIES - 6_000 and second.refused == 10
        assert "hold at most" in second.refusals[0][1]
    # Its flood suppresses nothing of anyone else's.
    assert matched(proc, key(url, "t10", "check"), HASHES[5])


def test_a_pulled_negative_list_stays_negative(server: Server, tmp_path: Path) -> None:
    proc, url, _ = server
    owner = key(url, "t11", "list-manage", "sync-read")
    with SubmissionClient(proc.address, credentials=owner) as sub:
        sub.create_list("t11-benign", kind="negative")
        sub.upload("t11-benign", [NewEntry("pdq", HASHES[13])])
    local = open_store(f"sqlite:///{tmp_path / 'copy.db'}")
    try:
        # Whose it is here is the operator's to say: unsaid, or said twice, nothing is stored.
        for said in ({}, {"negative_for": "t11", "negative_for_all": True}):
            with pytest.raises(SyncError, match="negative"):
                pull(local, proc.address, "t11-benign", credentials=owner, **said)  # type: ignore[arg-type]
            assert "t11-benign" not in {p.name for p in local.list_policies()}
            assert local.sync_cursor(f"{proc.address}/t11-benign") == 0
        with pytest.raises(SyncError, match="tenant is 10000"):
            pull(local, proc.address, "t11-benign", credentials=owner, negative_for="x" * 10_000)
        report = pull(local, proc.address, "t11-benign", credentials=owner, negative_for="t11")
        assert report.added == 1
        info = local.list_info("t11-benign")
        assert info.kind == "negative" and info.tenant == "t11"
        # The same list, once one tenant's here, is not made everyone's by a later pull.
        with pytest.raises(SyncError, match="tenant 't11'"):
            pull(local, proc.address, "t11-benign", credentials=owner, negative_for_all=True)
        # A second copy (another name for the same server: its own cursor) holds none of
        # the match ids the first holds, and says so.
        alias = f"localhost:{proc.address.rpartition(':')[2]}"
        report = pull(local, alias, "t11-benign", "all", credentials=owner, negative_for_all=True)
        assert local.list_info("all").tenant is None  # every tenant's, as said
        assert report.refused == 1 and "held by list 't11-benign'" in report.refusals[0]
    finally:
        local.close()
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        other.create_list("a-match-list")
        with pytest.raises(SyncError, match="negative"):
            pull(
                other,
                proc.address,
                "t11-benign",
                into="a-match-list",
                credentials=owner,
                negative_for="t11",
            )
        assert other.list_info("a-match-list").entries == 0
        # A match list is not given a tenant.
        sub_key = key(url, "t11b", "list-manage", "sync-read")
        with SubmissionClient(proc.address, credentials=sub_key) as sub:
            sub.create_list("t11b-hot")
            sub.upload("t11b-hot", [NewEntry("pdq", random_pdq(1, 2711)[0])])
        with pytest.raises(SyncError, match="only a negative list"):
            pull(other, proc.address, "t11b-hot", credentials=sub_key, negative_for="t11b")
    finally:
        other.close()


def test_over_http_policy_is_set_and_other_tenants_negative_lists_are_absent(
    server: Server,
) -> None:
    proc, url, _ = server
    owner = key(url, "t12", "check", "list-manage")
    other = key(url, "t13", "check", "list-manage")
    base = f"http://{proc.http_address}"
    with bearer_client(base, owner.api_key, 10) as http:
        made = http.post("/v1/lists", json={"name": "t12-benign", "kind": "negative"})
        assert made.status_code == 200 and made.json()["kind"] == "negative"
        assert http.post("/v1/lists", json={"name": "t12-match"}).status_code == 200
        wider = http.post("/v1/lists/t12-match/policy", json={"max_distance": {"pdq": 99}})
        assert wider.status_code == 400 and "exceeds its threshold" in wider.json()["message"]
        narrowed = http.post("/v1/lists/t12-match/policy", json={"max_distance": {"pdq": 7}})
        assert narrowed.status_code == 200 and narrowed.json()["max_distance"] == {"pdq": 7}
    with bearer_client(base, other.api_key, 10) as http:
        for path in ("/v1/lists/t12-benign", "/v1/lists/no-such-list"):
            assert http.get(path).status_code == 404
        policy = http.post("/v1/lists/t12-benign/policy", json={"max_distance": {"pdq": 1}})
        assert policy.status_code == 404
        assert http.get("/c/bank/t12-benign").status_code == 404
        assert "t12-benign" not in {b["name"] for b in http.get("/c/banks").json()}
        assert "t12-match" in {b["name"] for b in http.get("/c/banks").json()}


def test_the_cli_pulls_a_negative_list_only_for_whom_it_is_told(
    server: Server, tmp_path: Path
) -> None:
    proc, url, _ = server
    owner = key(url, "t15", "list-manage", "sync-read")
    assert owner.api_key is not None
    with SubmissionClient(proc.address, credentials=owner) as sub:
        sub.create_list("t15-benign", kind="negative")
        sub.upload("t15-benign", [NewEntry("pdq", HASHES[15])])
    copy = f"sqlite:///{tmp_path / 'cli-copy.db'}"
    pull_cli = ("sync", "pull", "--store", copy, "--from", proc.address, "--list", "t15-benign")
    pull_cli += ("--api-key", owner.api_key)
    for said in ((), ("--negative-for", "t15", "--negative-for-all")):
        refused = run_cli(*pull_cli, *said)
        assert refused.returncode == 1 and "--negative-for" in refused.stderr, refused.stderr
    store = open_store(copy)
    try:
        assert "t15-benign" not in {p.name for p in store.list_policies()}
    finally:
        store.close()
    done = run_cli(*pull_cli, "--negative-for", "t15")
    assert done.returncode == 0 and "added 1," in done.stdout, done.stderr
    store = open_store(copy)
    try:
        assert store.list_info("t15-benign").tenant == "t15"
    finally:
        store.close()


def test_the_cli_creates_negative_lists_and_sets_distances(server: Server) -> None:
    proc, url, _ = server
    manager = key(url, "t14", "list-manage")
    assert manager.api_key is not None
    cli = ("--server", proc.address, "--api-key", manager.api_key)
    made = run_cli("list", "create", *cli, "t14-benign", "--kind", "negative")
    assert made.returncode == 0, made.stderr
    assert "kind:        negative" in made.stdout
    made = run_cli("list", "create", *cli, "t14-match", "--max-distance", "pdq=20")
    assert made.returncode == 0 and "distances:   pdq 20" in made.stdout, made.stderr
    for bad in ("pdq=32", "pdq=-1", "pdq=x", "nope=3"):
        refused = run_cli("list", "policy", *cli, "t14-match", "--max-distance", bad)
        assert refused.returncode == 2 and "--max-distance" in refused.stderr, bad
    changed = run_cli("list", "policy", *cli, "t14-match", "--default-distance", "pdq")
    assert changed.returncode == 0 and "at each signal threshold" in changed.stdout
    quarantine = run_cli("list", "policy", *cli, "t14-match", "--quarantine-anomalies")
    assert "quarantine:  yes" in quarantine.stdout, quarantine.stderr


def test_list_policies_round_trip_in_the_store(store_url: str) -> None:
    store = open_store(store_url)
    try:
        store.create_list("m")
        store.create_list("n", kind="negative", tenant="t")
        with pytest.raises(ValueError):  # nothing is created with a distance refused
            store.create_list("w", max_distances={"pdq": 32})
        with pytest.raises(KeyError):
            store.list_info("w")
        made = store.create_list("q", quarantine=True, max_distances={"pdq": 3})
        assert made.quarantine and made.max_distances == {"pdq": 3}
        store.set_list_distances("m", {"pdq": 10, "phash": 4})
        store.set_list_distances("m", {"phash": None})
        for bad in ({"pdq": 32}, {"pdq": -1}, {"nope": 1}):
            with pytest.raises(ValueError):
                store.set_list_distances("m", bad)
        with pytest.raises(ValueError):
            store.create_list("x", kind="negative ")
        with pytest.raises(ValueError):
            store.create_list("y", tenant="t")  # only a negative list has a tenant
        policies = {p.name: p for p in store.list_policies()}
        assert policies["m"].max_distances == {"pdq": 10} and policies["m"].kind == "match"
        assert (policies["n"].kind, policies["n"].tenant) == ("negative", "t")
        assert store.list_info("m").max_distances == {"pdq": 10}
        assert np.all([p.tenant is None for n, p in policies.items() if n != "n"])
    finally:
        store.close()
