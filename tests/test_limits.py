"""Rate limits that a request can't size, text fields that can't carry a payload, hash
channels that are bounded, and victims' cases that leave only where granted: each promise
attacked over real gRPC against a real server with API keys, or at the Gate and store."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashmatch.channel import open_channel
from hashmatch.demo.serve_process import ServerProcess
from hashmatch.list_formats import NewEntry
from hashmatch.submission import SubmissionClient
from hashmatch.v1 import (
    match_pb2,
    match_pb2_grpc,
    submission_pb2,
    submission_pb2_grpc,
    sync_pb2,
    sync_pb2_grpc,
)
from indexer.store import CASE_LIST, InvalidValue, Store, open_store
from indexer.sync import change_problem, from_message
from service.auth import Caller, Gate, RateLimited
from service.queries import InvalidRequest
from tests.conftest import Clock, run_cli
from tests.test_security import HASHES, creds, key, random_pdq, secured

# Only what the code had before these limits is imported at the top, so that each attack
# here can be run against that code and seen to fail.

PAYLOAD = "iVBORw0KGgo" * 20_000  # 220 kB of base64 text, as an encoded image would be
DAY = 86_400.0


def limited_key(url: str, *roles: str, rate: float, burst: float) -> str:
    done = run_cli(
        "keys", "create", "--store", url, "--tenant", "t",
        *[a for r in roles for a in ("--role", r)],
        "--rate", str(rate), "--burst", str(burst),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("key:"))


def details(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code(), info.value.details() or ""


def pdq_entries(hashes: list[bytes], **fields: Any) -> list[submission_pb2.HashEntry]:
    return [submission_pb2.HashEntry(signal="pdq", hash=h, **fields) for h in hashes]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    with secured(tmp_path, "--anonymous-submit", "600") as s:
        yield s


# 2. Rate limits


def test_a_first_call_can_take_no_more_than_the_keys_burst(
    server: tuple[ServerProcess, str],
) -> None:
    proc, url = server
    token = key(url, "check", rate=100)
    with open_channel(proc.address, creds(token)) as ch:
        stub = match_pb2_grpc.MatchServiceStub(ch)

        def check(n: int, seed: int) -> match_pb2.CheckResponse:
            queries = [match_pb2.Query(signal="pdq", hash=h) for h in random_pdq(n, seed)]
            return stub.Check(match_pb2.CheckRequest(queries=queries), timeout=30)

        code, message = details(lambda: check(10_000, 1))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "10000 hashes" in message and "split it" in message and "at most 200" in message
        assert len(check(150, 2).results) == 150  # 2 s of rate: 200
    token = limited_key(url, "check", rate=100, burst=1_000)
    with open_channel(proc.address, creds(token)) as ch:
        stub = match_pb2_grpc.MatchServiceStub(ch)
        many = [match_pb2.Query(signal="pdq", hash=h) for h in random_pdq(1_001, 3)]
        code, message = details(
            lambda: stub.Check(match_pb2.CheckRequest(queries=many), timeout=30)
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most 1000" in message
        assert len(stub.Check(match_pb2.CheckRequest(queries=many[:1_000])).results) == 1_000
    listed = run_cli("keys", "list", "--store", url).stdout
    assert "100/s,burst=1000" in listed
    bad = run_cli(
        "keys", "create", "--store", url, "--tenant", "t", "--role", "check", "--burst", "0.5"
    )
    assert bad.returncode == 1 and "burst" in bad.stderr


def test_upload_remove_and_pull_are_charged(server: tuple[ServerProcess, str]) -> None:
    proc, url = server
    # One hash a second, 20 at once: nothing refills noticeably while the test runs.
    manager = limited_key(url, "list-manage", rate=1, burst=20)
    stub = submission_pb2_grpc.SubmissionServiceStub
    new = random_pdq(40, 11)
    with open_channel(proc.address, creds(manager)) as ch:
        sub = stub(ch)

        def upload(hashes: list[bytes]) -> submission_pb2.UploadResponse:
            message = submission_pb2.UploadRequest(list="a", entries=pdq_entries(hashes))
            return sub.Upload(iter([message]), timeout=30)

        code, message = details(lambda: upload(new[:30]))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "split it" in message
        assert upload(new[:15]).added == 15
        code, _ = details(lambda: upload(new[15:30]))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        remove = submission_pb2.RemoveEntriesRequest(list="a", entries=pdq_entries(new[:30]))
        code, message = details(lambda: sub.RemoveEntries(remove, timeout=30))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "split it" in message
        code, _ = details(
            lambda: sub.RemoveEntries(
                submission_pb2.RemoveEntriesRequest(list="a", entries=pdq_entries(new[:10])),
                timeout=30,
            )
        )
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # List a now has 25 changes: a page of 20 (the key's burst), then the bucket is empty.
    reader = limited_key(url, "sync-read", rate=1, burst=20)
    received = 0
    with open_channel(proc.address, creds(reader)) as ch:
        pull = sync_pb2_grpc.SyncServiceStub(ch).Pull(sync_pb2.PullRequest(list="a"), timeout=30)
        with pytest.raises(grpc.RpcError) as info:
            for page in pull:
                received += len(page.changes)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert received == 20


def test_the_upload_cli_splits_to_fit_a_small_burst(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    proc, url = server
    manager = limited_key(url, "list-manage", rate=1_000, burst=20)
    listed = tmp_path / "list.csv"
    listed.write_text("".join(f"pdq,{h.hex()}\n" for h in random_pdq(30, 41)))
    args = ("list", "upload", "--server", proc.address, "--api-key", manager, "a", str(listed))
    done = run_cli(*args, "--no-progress")
    assert done.returncode == 1 and "split it" in done.stderr
    done = run_cli(*args, "--no-progress", "--batch", "20")
    assert done.returncode == 0, done.stderr
    assert "added 30," in done.stdout


def _context(peer: str) -> grpc.ServicerContext:
    class Anonymous:
        def invocation_metadata(self) -> tuple[()]:
            return ()

        def peer(self) -> str:
            return peer

    return cast(grpc.ServicerContext, Anonymous())


def test_idle_anonymous_buckets_and_days_are_evicted(store: Store, clock: Clock) -> None:
    gate = Gate(store, anonymous_submits_per_minute=60)
    callers = [
        gate.caller(_context(f"ipv4:10.{i // 250}.{i % 250}.1:4000{i % 10}"), "submit")
        for i in range(5_000)
    ]
    for caller in callers:
        gate.charge(caller, 1)
    assert len(gate._buckets) == 5_000
    clock.now += 60  # each bucket holds one case and refills in a second
    last = gate.caller(_context("ipv4:192.0.2.1:5000"), "submit")
    gate.charge(last, 1)
    assert len(gate._buckets) == 1
    for caller in callers:
        gate.admit_case(caller, 1)
    clock.now += 60
    gate.charge(last, 1)
    assert len(gate._daily) == 5_000  # the day's counts stay until the day is over...
    clock.now += DAY
    gate.charge(last, 1)
    assert len(gate._daily) == 0  # ...then go too


def test_an_ipv6_subscriber_is_one_address_and_the_day_is_per_address(
    store: Store, clock: Clock
) -> None:
    gate = Gate(store, anonymous_submits_per_minute=600)
    one = gate.caller(_context("ipv6:[2001:db8:1:2::1]:5000"), "submit")
    same = gate.caller(_context("ipv6:[2001:db8:1:2:ffff::9]:6000"), "submit")
    other = gate.caller(_context("ipv6:[2001:db8:1:3::1]:5000"), "submit")
    assert one.actor == same.actor != other.actor
    gate = Gate(
        store,
        anonymous_submits_per_minute=600,
        anonymous_case_hashes=20,
        anonymous_daily_hashes=30,
    )
    with pytest.raises(InvalidRequest, match="at most 20 hashes"):
        gate.admit_case(one, 21)
    gate.admit_case(one, 20)
    with pytest.raises(RateLimited, match="30 hashes a day") as info:
        gate.admit_case(same, 11)
    assert DAY - 1 < info.value.retry_after <= DAY
    gate.admit_case(same, 10)
    gate.admit_case(other, 20)
    clock.now += DAY
    gate.admit_case(one, 20)


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses(v=6), st.integers(0, 2**64 - 1))
def test_every_address_of_an_ipv6_64_is_one_bucket_on_both_transports(
    address: Any, low: int
) -> None:
    import ipaddress

    from service.auth import _peer_host, address_bucket

    neighbour = ipaddress.IPv6Address((int(address) >> 64 << 64) | low)
    if address.ipv4_mapped is not None or neighbour.ipv4_mapped is not None:
        return  # an IPv4 client of a dual-stack socket: its own address (below)
    bucket = str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    assert address_bucket(str(address)) == bucket  # HTTP: the peer uvicorn reports
    assert address_bucket(str(neighbour)) == bucket
    assert _peer_host(_context(f"ipv6:[{neighbour}]:5000")) == bucket  # gRPC


def test_an_ipv4_client_of_a_dual_stack_socket_is_its_own_address() -> None:
    """A dual-stack HTTP listener sees IPv4 clients as ::ffff:a.b.c.d: as a /64 every
    IPv4 client on the Internet would share one anonymous bucket."""
    from service.auth import address_bucket

    assert address_bucket("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_bucket("::ffff:192.0.2.1") != address_bucket("::ffff:192.0.2.2")
    assert address_bucket("192.0.2.1") == "192.0.2.1"
    assert address_bucket("unknown") == "unknown"


@settings(max_examples=200, deadline=None)
@given(
    st.floats(1, 500),
    st.lists(st.tuples(st.floats(0, 3), st.integers(1, 10_000)), min_size=1, max_size=40),
)
def test_a_key_never_gets_more_than_two_seconds_of_its_rate_at_once(
    rate: float, calls: list[tuple[float, int]]
) -> None:
    clock = Clock()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("service.auth.time.monotonic", clock)
        gate = Gate(None)
        caller = Caller("t/k", frozenset({"check"}), None, "k", rate)
        granted = 0
        for wait, n in calls:
            clock.now += wait
            try:
                gate.charge(caller, n)
            except (RateLimited, InvalidRequest):
                continue
            granted += n
        assert granted <= max(2 * rate, 1) + rate * (clock.now - 1_000.0) + 1e-6


# 3. Bounded text and hash channels


def test_an_anonymous_case_carries_no_free_text(server: tuple[ServerProcess, str]) -> None:
    proc, url = server
    with open_channel(proc.address, creds(None)) as ch:
        sub = submission_pb2_grpc.SubmissionServiceStub(ch)

        def submit(**fields: str) -> submission_pb2.SubmitCaseResponse:
            request = submission_pb2.SubmitCaseRequest(
                hashes=pdq_entries(random_pdq(1, random.randrange(10**9)), **fields)
            )
            return sub.SubmitCase(request, timeout=30)

        for fields, named in (
            ({"source_ref": PAYLOAD}, "source_ref"),
            ({"source_ref": "my case"}, "source_ref"),
            ({"variant": PAYLOAD[:40]}, "variant"),
            ({"variant": "crop-center-80\n"}, "variant"),
        ):
            code, message = details(lambda fields=fields: submit(**fields))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and named in message, fields
            assert "no free text" in message
        assert submit(variant="crop-center-80").added == 1
        assert submit().added == 1
    raw = Path(url.removeprefix("sqlite:///")).parent
    stored = b"".join(p.read_bytes() for p in raw.glob("store.db*"))
    assert b"iVBORw0KGgo" not in stored and b"my case" not in stored


def test_a_victims_case_of_five_photos_with_every_variant_fits_the_anonymous_limits(
    server: tuple[ServerProcess, str], tmp_path: Path, photos: dict[str, bytes]
) -> None:
    """A photo lists up to 30 hashes (PDQ: the whole, its square in 8 orientations, the
    borderless picture, 7 crops, 2 band cuts; pHash: all but the squares). Five framed
    photos, each giving every one, must go in one case without a key, with room for more
    such cases that day; the limits are the channel an address may fill, so no more."""
    from hashmatch.demo.standins import TRANSFORMS
    from hashmatch.images import ImageSource
    from hashmatch.variants import LISTING_VARIANT_NAMES, ORIENTATIONS
    from service.auth import DEFAULT_ANONYMOUS_CASE_HASHES, DEFAULT_ANONYMOUS_DAILY_HASHES

    most = 2 * len(LISTING_VARIANT_NAMES) - len(ORIENTATIONS)
    assert 5 * most <= DEFAULT_ANONYMOUS_CASE_HASHES
    assert 4 * 5 * most <= DEFAULT_ANONYMOUS_DAILY_HASHES
    proc, _ = server
    paths = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "horse"):
        path = tmp_path / f"{name}.png"
        TRANSFORMS["letterbox 16:9"](ImageSource(photos[name]).rgb).save(path)
        paths.append(str(path))
    for _ in range(4):
        done = run_cli("submit", "--server", proc.address, *paths)
        assert done.returncode == 0, done.stderr
        assert f"hashes listed:     {5 * most}" in done.stdout, done.stdout


def test_anonymous_hashes_are_bounded_per_case_and_per_address_a_day(
    server: tuple[ServerProcess, str],
) -> None:
    proc, url = server
    hashes = iter(random_pdq(1_700, 21))
    with SubmissionClient(proc.address, credentials=creds(None)) as sub:

        def case(n: int) -> object:
            return sub.submit_case([NewEntry("pdq", next(hashes)) for _ in range(n)])

        code, message = details(lambda: case(301))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most 300 hashes" in message
        for _ in range(4):
            case(300)
        code, message = details(lambda: case(1))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "1200 hashes a day" in message
    # A key's cases are not the anonymous channel: its limits are its rate and burst.
    portal = key(url, "submit")
    with SubmissionClient(proc.address, credentials=creds(portal)) as sub:
        assert sub.submit_case([NewEntry("pdq", next(hashes)) for _ in range(150)]).added == 150


def test_every_text_field_a_key_can_store_is_bounded(server: tuple[ServerProcess, str]) -> None:
    proc, url = server
    admin = key(url, "admin")
    with open_channel(proc.address, creds(admin)) as ch:
        sub = submission_pb2_grpc.SubmissionServiceStub(ch)

        def create(name: str = "c", owner: str = "", description: str = "") -> Any:
            request = submission_pb2.CreateListRequest(
                name=name, owner=owner, description=description
            )
            return sub.CreateList(request, timeout=30)

        for call, named in (
            (lambda: create(owner=PAYLOAD), "owner"),
            (lambda: create(description=PAYLOAD), "description"),
            (lambda: create(description="line one\nline two"), "description"),
            (lambda: create(owner="right\u202eto left"), "owner"),
            (lambda: create(name="x" * 129), "list name"),
            (lambda: create(name="a/../b"), "list name"),
            (lambda: create(name="tab\tname"), "list name"),
            (
                lambda: sub.Upload(
                    iter([submission_pb2.UploadRequest(list="a", submitter=PAYLOAD)]), timeout=30
                ),
                "submitter",
            ),
            (
                lambda: sub.SubmitCase(
                    submission_pb2.SubmitCaseRequest(
                        hashes=pdq_entries(random_pdq(1, 31), source_ref=PAYLOAD)
                    ),
                    timeout=30,
                ),
                "source_ref",
            ),
            (
                lambda: sub.CaseStatus(
                    submission_pb2.CaseRequest(case_id=PAYLOAD, withdrawal_secret="s"), timeout=30
                ),
                "case_id",
            ),
        ):
            code, message = details(call)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and named in message, named
            assert len(message) < 1_000  # the payload is not echoed back
        upload = submission_pb2.UploadRequest(
            list="a",
            entries=[
                *pdq_entries(random_pdq(1, 32), source_ref=PAYLOAD),
                *pdq_entries(random_pdq(1, 33), source_ref="ticket 4711"),
            ],
        )
        response = sub.Upload(iter([upload]), timeout=30)
        assert (response.added, response.refused) == (1, 1)
        assert "source_ref" in response.refusals[0].reason
        info = create(name="hotline c.1", owner="Hotline C", description="Reviewed weekly")
        assert info.owner == "Hotline C"
    stored = b"".join(
        p.read_bytes() for p in Path(url.removeprefix("sqlite:///")).parent.glob("store.db*")
    )
    assert b"iVBORw0KGgo" not in stored


def test_the_store_refuses_unbounded_text_itself(store_url: str) -> None:
    store = open_store(store_url)
    try:
        with pytest.raises(InvalidValue, match="owner"):
            store.create_list("c", owner=PAYLOAD)
        with pytest.raises(InvalidValue, match="list name"):
            store.add_entries("bad\nname", [NewEntry("pdq", HASHES[0])])
        with pytest.raises(InvalidValue, match="source_ref"):
            store.add_entries("c", [NewEntry("pdq", HASHES[0], None, PAYLOAD)])
        with pytest.raises(InvalidValue, match="source_ref"):
            store.create_case([NewEntry("pdq", HASHES[1], None, PAYLOAD)])
        with pytest.raises(InvalidValue, match="submitter"):
            store.add_entries("c", [NewEntry("pdq", HASHES[0])], submitter=PAYLOAD)
        with pytest.raises(InvalidValue, match="tenant"):
            store.create_key(PAYLOAD, ["check"])
        assert "c" not in store.lists().values() or store.list_info("c").entries == 0
    finally:
        store.close()


def test_imports_and_sync_pulls_refuse_unbounded_text(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    lines = "".join(
        f"pdq,{h.hex()},{ref}\n"
        for h, ref in zip(HASHES[:3], (PAYLOAD, "r" * 201, "ticket 1"), strict=True)
    )
    done = run_cli("import", "--store", url, "--list", "a", "-", stdin=lines)
    assert done.returncode == 0, done.stderr
    assert "line 1: refused: malformed CSV" in done.stderr
    assert "line 2: refused: source_ref is 201 characters" in done.stderr
    assert "added 1," in done.stdout
    done = run_cli("import", "--store", url, "--list", "a\x07b", "-", stdin=lines)
    assert done.returncode == 1 and "list name" in done.stderr
    change = sync_pb2.Change(
        seq=1, op=sync_pb2.Change.OP_ADD, signal="pdq", hash=HASHES[0], match_id=bytes(12)
    )
    for field, value in (("source_ref", PAYLOAD), ("variant", "x" * 41)):
        bad = sync_pb2.Change()
        bad.CopyFrom(change)
        setattr(bad, field, value)
        # A pulled change over its bounds is refused alone, with the reason.
        assert (change_problem(from_message(bad, "a")) or "").startswith(field)
    bad = sync_pb2.Change()
    bad.CopyFrom(change)
    bad.match_id = PAYLOAD.encode()
    assert "match id" in (change_problem(from_message(bad, "a")) or "")
    assert change_problem(from_message(change, "a")) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_a_value_within_bounds_is_short_plain_text(value: str) -> None:
    from hashmatch.bounds import LIST_NAME, OWNER, SOURCE_REF, OutOfBounds

    for bound in (LIST_NAME, OWNER, SOURCE_REF):
        try:
            bound.check(value)
        except OutOfBounds as exc:
            assert str(exc).startswith(bound.field) and len(str(exc)) < 300
            continue
        assert len(value) <= bound.max_chars and value.isprintable()
        if bound is LIST_NAME:
            assert value and value == value.strip() and value.isascii()


# 4. Victims' cases


def test_victims_cases_leave_only_to_keys_granted_them_by_name(
    server: tuple[ServerProcess, str],
) -> None:
    proc, url = server
    with SubmissionClient(proc.address, credentials=creds(None)) as sub:
        sub.submit_case([NewEntry("pdq", HASHES[18])])

    def pull(token: str, list_name: str = CASE_LIST) -> list[sync_pb2.Change]:
        with open_channel(proc.address, creds(token)) as ch:
            stub = sync_pb2_grpc.SyncServiceStub(ch)
            pages = stub.Pull(sync_pb2.PullRequest(list=list_name), timeout=30)
            return [c for page in pages for c in page.changes]

    for token in (key(url, "sync-read"), key(url, "admin"), key(url, "sync-read", lists=("a",))):
        code, message = details(lambda token=token: pull(token))
        assert code == grpc.StatusCode.PERMISSION_DENIED, message
        assert len(pull(token, "a")) == 10
    for granted in (
        key(url, "sync-read", lists=(CASE_LIST,)),
        key(url, "admin", lists=(CASE_LIST,)),
    ):
        [change] = pull(granted)
        assert change.hash == HASHES[18]


def test_a_new_keys_first_uses_at_once_are_all_let_in(tmp_path: Path) -> None:
    """Several first uses of a key issued after the server's last reload, at once: the one
    that reloads and those that wait for its reload are all let in."""
    with secured(tmp_path) as (proc, url):
        time.sleep(1)
        token = key(url, "check")
        codes: list[grpc.StatusCode] = []

        def check() -> None:
            with open_channel(proc.address, creds(token)) as ch:
                stub = match_pb2_grpc.MatchServiceStub(ch)
                request = match_pb2.CheckRequest(
                    queries=[match_pb2.Query(signal="pdq", hash=HASHES[0])]
                )
                try:
                    stub.Check(request, timeout=30)
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as exc:
                    codes.append(exc.code())

        threads = [threading.Thread(target=check) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert codes == [grpc.StatusCode.OK] * 8, codes
