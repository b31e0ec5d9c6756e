"""Only the right callers, no list leakage, no poisoning: over real gRPC with real keys."""

from __future__ import annotations

import datetime
import importlib
import json
import os
import pkgutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, cast

import grpc
import numpy as np
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import hashmatch.v1
from hashmatch.channel import Credentials, open_channel
from hashmatch.client import MatchClient
from hashmatch.demo.serve_process import ServerProcess, running_server
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
from indexer.snapshot import current_version
from indexer.store import open_store
from tests.conftest import run_cli
from tests.serving import serving_store


def random_pdq(n: int, seed: int) -> list[bytes]:
    rows = np.random.default_rng(seed).integers(0, 256, (n, 32), dtype=np.uint8)
    return [bytes(r) for r in rows]


HASHES = random_pdq(20, 5)


@contextmanager
def secured(tmp_path: Path, *args: str) -> Iterator[tuple[ServerProcess, str]]:
    """A server requiring keys, with lists 'a' (HASHES[:10]) and 'b' (HASHES[10:])."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    lists = {"a": HASHES[:10], "b": HASHES[10:]}
    with serving_store(tmp_path, url, *args, lists=lists) as running:
        yield running.proc, url


def key(url: str, *roles: str, lists: tuple[str, ...] = (), rate: float | None = None) -> str:
    args = [a for r in roles for a in ("--role", r)] + [a for n in lists for a in ("--list", n)]
    done = run_cli(
        "keys", "create", "--store", url, "--tenant", "t", *args,
        *(["--rate", str(rate)] if rate else []),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("key:"))


def creds(token: str | None) -> Credentials:
    return Credentials(api_key=token)


def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    with secured(tmp_path) as s:
        yield s


def every_rpc() -> list[tuple[str, MethodDescriptor]]:
    """(service, method) for every RPC of every hashmatch.v1 proto, from the descriptors:
    a new RPC, or a new service, is in this list without anyone adding it."""
    found = []
    for info in pkgutil.iter_modules(hashmatch.v1.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"hashmatch.v1.{info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                found += [(service.full_name, m) for m in service.methods]
    return found


def empty_call(ch: grpc.Channel, service: str, method: MethodDescriptor) -> Callable[[], object]:
    """A call of `method` with an empty request, whatever its streaming kind."""
    request = GetMessageClass(method.input_type)()
    path = f"/{service}/{method.name}"
    put, get = type(request).SerializeToString, GetMessageClass(method.output_type).FromString
    if method.client_streaming and method.server_streaming:
        return lambda: list(ch.stream_stream(path, put, get)(iter([request]), timeout=5))
    if method.client_streaming:
        return lambda: ch.stream_unary(path, put, get)(iter([request]), timeout=5)
    if method.server_streaming:
        return lambda: list(ch.unary_stream(path, put, get)(request, timeout=5))
    return lambda: ch.unary_unary(path, put, get)(request, timeout=5)


def test_every_rpc_but_health_needs_a_key(server: tuple[ServerProcess, str]) -> None:
    proc, _ = server
    rpcs = every_rpc()
    assert {m.name for _, m in rpcs} >= {"Check", "CaseStatus", "Upload", "Pull"}
    for token in (None, "hm_0000_wrong"):
        with open_channel(proc.address, creds(token)) as ch:
            for service, method in rpcs:
                code = code_of(empty_call(ch, service, method))
                assert code == grpc.StatusCode.UNAUTHENTICATED, (method.full_name, token)
            health = health_pb2_grpc.HealthStub(ch)
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            # Reflection can't check a key, so it is not served unless the operator asks.
            assert code_of(partial(list_services, ch)) == grpc.StatusCode.UNIMPLEMENTED


def list_services(ch: grpc.Channel) -> list[reflection_pb2.ServerReflectionResponse]:
    ask = reflection_pb2.ServerReflectionRequest(list_services="")
    return list(reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(iter([ask])))


def test_a_checker_learns_match_and_an_opaque_id_and_nothing_else(
    server: tuple[ServerProcess, str],
) -> None:
    proc, url = server
    checker = key(url, "check")
    with MatchClient(proc.address, credentials=creds(checker)) as client:
        [v] = client.check([("pdq", HASHES[0])])
        assert v.matched and v.matches[0].list == "a" and v.matches[0].distance == 0
        assert bytes.fromhex(v.matches[0].match_id) not in HASHES[0]
    with SubmissionClient(proc.address, credentials=creds(checker)) as sub:
        for call in (
            lambda: sub.list_info("a"),
            lambda: sub.upload("a", []),
            lambda: sub.remove("a", [("pdq", HASHES[0])]),
            lambda: sub.submit_case([NewEntry("pdq", HASHES[0])]),
        ):
            assert code_of(call) == grpc.StatusCode.PERMISSION_DENIED
    with open_channel(proc.address, creds(checker)) as ch:
        pull = sync_pb2_grpc.SyncServiceStub(ch).Pull(sync_pb2.PullRequest(list="a"), timeout=5)
        assert code_of(lambda: list(pull)) == grpc.StatusCode.PERMISSION_DENIED


def test_keys_see_only_their_lists(server: tuple[ServerProcess, str]) -> None:
    proc, url = server
    only_b = key(url, "check", lists=("b",))
    with MatchClient(proc.address, credentials=creds(only_b)) as client:
        verdicts = client.check([("pdq", HASHES[0]), ("pdq", HASHES[10])])
        assert [v.matched for v in verdicts] == [False, True]
    hotline_a = key(url, "list-manage", "sync-read", lists=("a",))
    with SubmissionClient(proc.address, credentials=creds(hotline_a)) as sub:
        assert sub.list_info("a").entries == 10
        assert code_of(lambda: sub.list_info("b")) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(lambda: sub.upload("b", [])) == grpc.StatusCode.PERMISSION_DENIED
    with open_channel(proc.address, creds(hotline_a)) as ch:
        stub = sync_pb2_grpc.SyncServiceStub(ch)
        pages = list(stub.Pull(sync_pb2.PullRequest(list="a"), timeout=5))
        assert sum(len(p.changes) for p in pages) == 10
        b = stub.Pull(sync_pb2.PullRequest(list="b"), timeout=5)
        assert code_of(lambda: list(b)) == grpc.StatusCode.PERMISSION_DENIED


def test_a_revoked_key_is_refused_within_a_second(server: tuple[ServerProcess, str]) -> None:
    proc, url = server
    token = key(url, "check")
    key_id = token.split("_")[1]
    with MatchClient(proc.address, credentials=creds(token)) as client:
        assert client.check([("pdq", HASHES[0])])[0].matched
        done = run_cli("keys", "revoke", "--store", url, key_id)
        assert done.returncode == 0, done.stderr
        revoked = time.monotonic()
        while True:
            try:
                client.check([("pdq", HASHES[0])])
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
                break
            time.sleep(0.02)
        assert time.monotonic() - revoked < 1.0
    listed = run_cli("keys", "list", "--store", url).stdout
    assert f"{key_id}  t  check  *  default  revoked" in listed and token not in listed


def test_keys_are_stored_only_as_salted_hashes(server: tuple[ServerProcess, str]) -> None:
    _, url = server
    token = key(url, "check")
    raw = b"".join(
        p.read_bytes() for p in Path(url.removeprefix("sqlite:///")).parent.glob("*.db*")
    )
    assert token.split("_", 2)[2].encode() not in raw


def test_rate_limits_answer_resource_exhausted_with_a_retry_hint(
    server: tuple[ServerProcess, str],
) -> None:
    proc, url = server
    token = key(url, "check", rate=100)
    with grpc.insecure_channel(proc.address) as ch:
        stub = match_pb2_grpc.MatchServiceStub(ch)
        queries = [match_pb2.Query(signal="pdq", hash=h) for h in random_pdq(150, 9)]
        meta = (("authorization", f"Bearer {token}"),)
        stub.Check(match_pb2.CheckRequest(queries=queries), metadata=meta, timeout=5)
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(match_pb2.CheckRequest(queries=queries), metadata=meta, timeout=5)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "rate limit of 100 hashes/s" in (info.value.details() or "")
        trailers = dict(info.value.trailing_metadata() or ())  # type: ignore[attr-defined]
        assert 0 < int(trailers["grpc-retry-pushback-ms"]) <= 2000
        time.sleep(1.6)
        stub.Check(match_pb2.CheckRequest(queries=queries), metadata=meta, timeout=5)


def test_a_key_walking_around_one_point_is_throttled_and_audited(
    server: tuple[ServerProcess, str],
) -> None:
    proc, url = server
    token = key(url, "check")
    rng = np.random.default_rng(1)
    centre = np.frombuffer(HASHES[0], np.uint8)
    walk = []
    for _ in range(400):
        step = np.unpackbits(centre).copy()
        step[rng.choice(256, size=int(rng.integers(1, 4)), replace=False)] ^= 1
        walk.append(np.packbits(step).tobytes())
    throttled = False
    with MatchClient(proc.address, credentials=creds(token)) as client:
        for h in walk:
            try:
                client.check([("pdq", h)])
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                throttled = True
                break
    assert throttled, "a 400-query walk around one hash was never throttled"
    assert "probing_suspected" in audit_actions(url)
    # An honest checker, with random uploads and exact repeats, is not throttled.
    honest = key(url, "check")
    with MatchClient(proc.address, credentials=creds(honest)) as client:
        for h in random_pdq(300, 2) + [HASHES[0]] * 100:
            client.check([("pdq", h)])


def audit_actions(url: str, deadline: float = 5.0) -> list[str]:
    time.sleep(0.7)  # one flush interval
    store = open_store(url)
    try:
        return [e.action for e in store.audit_events(0, 100_000)]
    finally:
        store.close()


def test_an_anomalously_matching_entry_is_flagged_quarantined_and_confirmed(
    tmp_path: Path,
) -> None:
    with secured(tmp_path, "--flag-min-matches", "30", "--flag-factor", "5") as (proc, url):
        store = open_store(url)
        store.set_quarantine("a", True)
        store.close()
        checker, manager = key(url, "check"), key(url, "list-manage")
        popular, usual = HASHES[3], HASHES[4:10]
        with MatchClient(proc.address, credentials=creds(checker)) as client:
            for _ in range(5):
                client.check([("pdq", h) for h in usual])
            for _ in range(40):  # a "popular benign image" that slipped onto the list
                client.check([("pdq", popular)])
            deadline = time.monotonic() + 10
            while client.check([("pdq", popular)])[0].matched:
                assert time.monotonic() < deadline, "the entry was never quarantined"
                time.sleep(0.2)
            assert all(v.matched for v in client.check([("pdq", h) for h in usual]))
        assert "entry_quarantined" in audit_actions(url)
        with SubmissionClient(proc.address, credentials=creds(manager)) as sub:
            [flag] = sub.list_info("a").flagged
            assert flag.state == "quarantined" and flag.matches >= 30
            with open_channel(proc.address, creds(manager)) as ch:
                confirmed = submission_pb2_grpc.SubmissionServiceStub(ch).ConfirmEntry(
                    submission_pb2.ConfirmEntryRequest(list="a", match_id=flag.match_id)
                )
            assert confirmed.confirmed
        with MatchClient(proc.address, credentials=creds(checker)) as client:
            assert client.check([("pdq", popular)])[0].matched


def test_victims_may_submit_without_a_key_when_the_operator_allows_it(tmp_path: Path) -> None:
    with secured(tmp_path, "--anonymous-submit", "60") as (proc, _):  # 60 at once, 1 a second
        with SubmissionClient(proc.address, credentials=creds(None)) as sub:
            # A featureless hash is refused as such while the address's budget still allows
            # a case: the refusal, not the rate limit, is what answers.
            with pytest.raises(grpc.RpcError) as refused:
                sub.submit_case([NewEntry("pdq", bytes(32))])
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "hash 0: refused" in (refused.value.details() or "")
            receipt = sub.submit_case([NewEntry("pdq", HASHES[15], 100)])
            assert receipt.added == 1
            with pytest.raises(grpc.RpcError) as info:
                for h in random_pdq(100, 3):
                    sub.submit_case([NewEntry("pdq", h, 100)])
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert code_of(lambda: sub.create_list("x")) == grpc.StatusCode.UNAUTHENTICATED
        with MatchClient(proc.address, credentials=creds(None)) as client:
            assert code_of(lambda: client.check([("pdq", HASHES[0])])) == (
                grpc.StatusCode.UNAUTHENTICATED
            )


def test_the_audit_log_records_who_did_what_and_is_append_only(
    server: tuple[ServerProcess, str],
) -> None:
    proc, url = server
    checker, victim_portal, hotline = key(url, "check"), key(url, "submit"), key(url, "admin")
    with SubmissionClient(proc.address, credentials=creds(victim_portal)) as sub:
        receipt = sub.submit_case([NewEntry("pdq", HASHES[16], 100)])
        sub.withdraw(receipt.case_id, receipt.withdrawal_secret)
    with SubmissionClient(proc.address, credentials=creds(hotline)) as sub:
        sub.create_list("c", owner="hotline")
        sub.upload("c", [NewEntry("pdq", HASHES[17])])
        sub.remove("c", [("pdq", HASHES[17])])
    with MatchClient(proc.address, credentials=creds(checker)) as client:
        client.check([("pdq", HASHES[1])])
    time.sleep(0.7)
    done = run_cli("audit", "--store", url)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    actions = [e["action"] for e in events]
    for action in ("submit_case", "withdraw_case", "create_list", "upload", "remove_entries"):
        assert action in actions, action
    match = next(e for e in events if e["action"] == "match")
    assert match["actor"].startswith("t/") and match["list"] == "a"
    assert match["query"] == HASHES[1].hex() and match["distance"] == 0
    assert any(e["action"] == "key_use" and e["actor"] == match["actor"] for e in events)
    past = run_cli("audit", "--store", url, "--after", str(2**63))
    assert past.returncode == 2 and "--after" in past.stderr and "range" in past.stderr
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE audit SET actor = 'someone else'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM audit")


def _certificates(tmp_path: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def issue(
        name: str, issuer: x509.Name | None, signer: ec.EllipticCurvePrivateKey | None, ca: bool
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer or subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            import ipaddress

            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return key, builder.sign(signer or key, hashes.SHA256())

    files: dict[str, Path] = {}

    def write(name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        files[f"{name}.key"] = tmp_path / f"{name}.key"
        files[f"{name}.crt"] = tmp_path / f"{name}.crt"
        files[f"{name}.key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        files[f"{name}.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    ca_key, ca_cert = issue("hashmatch test CA", None, None, True)
    write("ca", ca_key, ca_cert)
    for name in ("server", "client"):
        k, c = issue(name, ca_cert.subject, ca_key, False)
        write(name, k, c)
    return files


def test_tls_and_mutual_tls(tmp_path: Path) -> None:
    f = _certificates(tmp_path)
    tls = ("--tls-cert", str(f["server.crt"]), "--tls-key", str(f["server.key"]))
    with secured(tmp_path / "one", *tls) as (proc, url):
        token = key(url, "check")
        with MatchClient(proc.address, credentials=Credentials(token, f["ca.crt"])) as client:
            assert client.check([("pdq", HASHES[0])])[0].matched
        with MatchClient(proc.address, credentials=creds(token), timeout=3) as plain:
            assert code_of(lambda: plain.check([("pdq", HASHES[0])])) == (
                grpc.StatusCode.UNAVAILABLE
            )
    mtls = (*tls, "--tls-client-ca", str(f["ca.crt"]))
    with secured(tmp_path / "two", *mtls) as (proc, url):
        assert any("mutual TLS" in line for line in proc.log)
        token = key(url, "check")
        full = Credentials(token, f["ca.crt"], f["client.crt"], f["client.key"])
        with MatchClient(proc.address, credentials=full) as client:
            assert client.check([("pdq", HASHES[0])])[0].matched
        no_cert = Credentials(token, f["ca.crt"])
        with MatchClient(proc.address, credentials=no_cert, timeout=3) as client:
            assert code_of(lambda: client.check([("pdq", HASHES[0])])) == (
                grpc.StatusCode.UNAVAILABLE
            )


def test_no_auth_is_only_for_loopback(tmp_path: Path) -> None:
    done = run_cli("serve", "--index", str(tmp_path), "--listen", "0.0.0.0:0", "--no-auth")
    assert done.returncode == 2 and "--no-auth only on a loopback address" in done.stderr
    done = run_cli("serve", "--index", str(tmp_path), "--listen", "127.0.0.1:0")
    assert done.returncode == 2 and "API keys live in the store" in done.stderr


def test_keys_are_not_taken_in_plaintext_off_loopback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    for host in ("0.0.0.0", "[::]"):
        serve = ["serve", "--index", str(tmp_path / "index"), "--store", url, "--listen"]
        try:
            done = subprocess.run(
                [sys.executable, "-m", "hashmatch", *serve, f"{host}:0"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"a key-protected server started in plaintext on {host}")
        assert done.returncode == 2, done.stderr
        assert f"refusing to take API keys in plaintext on {host}" in done.stderr
        assert "--insecure-plaintext" in done.stderr
    # Said explicitly (a TLS-terminating proxy in front), it serves: bound, not called.
    plain = ("--listen", "0.0.0.0:0", "--insecure-plaintext")
    with secured(tmp_path, *plain) as (proc, _):
        assert proc.address.startswith("0.0.0.0:")


def test_child_processes_never_carry_the_store_password_on_their_command_line(
    tmp_path: Path, postgres_url: str
) -> None:
    password = "not-a-real-password-7f3a"
    url = postgres_url.replace("postgres@", f"postgres:{password}@", 1)
    assert password in url
    args = ("--store", url, "--no-auth", "--processes", "2", "--compact-at", "1")
    seen: dict[int, str] = {}
    with running_server(tmp_path / "index", *args, "--poll-interval", "0.1") as proc:
        done = threading.Event()

        def watch() -> None:  # every process the server starts, as `ps` shows it
            while not done.is_set():
                for pid in proc.pids()[1:]:
                    try:
                        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    seen[pid] = cmdline.replace(b"\0", b" ").decode()
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            store = open_store(url)
            store.add_entries("a", [NewEntry("pdq", h) for h in HASHES[:5]])
            store.close()
            deadline = time.monotonic() + 120
            while not any(" compact" in c for c in seen.values()):
                assert time.monotonic() < deadline, f"no compaction was seen: {seen}"
                time.sleep(0.05)
            while current_version(tmp_path / "index") == 1:  # it found the store it was given
                assert time.monotonic() < deadline, "the compaction wrote no snapshot"
                time.sleep(0.05)
        finally:
            done.set()
            watcher.join()
    assert any("--helper" in c for c in seen.values()), seen
    for cmdline in seen.values():
        assert password not in cmdline, cmdline


def test_the_withdrawal_secret_as_a_flag_value_is_deprecated(tmp_path: Path) -> None:
    nowhere = ("--server", "127.0.0.1:1", "--case", "c0ffee")
    done = run_cli("status", *nowhere, "--secret", "s3cret")
    assert "--secret VALUE is deprecated" in done.stderr and "shell history" in done.stderr
    quiet = subprocess.run(
        [sys.executable, "-m", "hashmatch", "status", *nowhere],
        env={**os.environ, "HASHMATCH_WITHDRAWAL_SECRET": "s3cret"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "deprecated" not in quiet.stderr and "Connect" in quiet.stderr


class _Metadata:
    """What Gate.caller reads of a grpc context: the call's metadata."""

    def __init__(self, token: str) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def test_a_key_issued_just_after_a_periodic_reload_is_known_at_once(tmp_path: Path) -> None:
    from service.auth import Gate, Unauthenticated

    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    reads = 0
    api_keys = store.api_keys

    def counted() -> list[Any]:
        nonlocal reads
        reads += 1
        return api_keys()

    store.api_keys = counted  # type: ignore[method-assign]
    gate = Gate(store)
    gate.reload()  # as the periodic reload does, just before the key is issued
    _, token = store.create_key("t", ["check"])
    before = reads
    assert gate.caller(cast(grpc.ServicerContext, _Metadata(token)), "check").key_id
    assert reads == before + 1
    # A flood of unknown ids reads the store once per 0.1 s at most: each waits out the
    # rest of the 0.1 s since the last such read (so that a key issued meanwhile is let
    # in), and callers waiting together share one read.
    started = time.monotonic()
    for _ in range(20):
        with pytest.raises(Exception, match="unknown or revoked API key"):
            gate.caller(cast(grpc.ServicerContext, _Metadata("hm_000000000000_x")), "check")
    assert reads <= before + 2 + (time.monotonic() - started) / 0.1
    refused: list[str] = []

    def unknown() -> None:
        try:
            gate.caller(cast(grpc.ServicerContext, _Metadata("hm_000000000000_y")), "check")
        except Unauthenticated as exc:
            refused.append(str(exc))

    flood = [threading.Thread(target=unknown) for _ in range(40)]
    before, started = reads, time.monotonic()
    for t in flood:
        t.start()
    for t in flood:
        t.join(30)
    assert reads <= before + 2 + (time.monotonic() - started) / 0.1
    assert time.monotonic() - started < 3, "concurrent unknown ids waited one by one"
    assert len(refused) == 40
    store.close()


def walk_around(centre: bytes, n: int, seed: int) -> list[bytes]:
    """`n` probes 1 to 3 bits from `centre`: a checker mapping an entry's match radius."""
    rng = np.random.default_rng(seed)
    bits = np.unpackbits(np.frombuffer(centre, np.uint8))
    walk = []
    for _ in range(n):
        step = bits.copy()
        step[rng.choice(256, size=int(rng.integers(1, 4)), replace=False)] ^= 1
        walk.append(np.packbits(step).tobytes())
    return walk


def throttled_within(
    stub: match_pb2_grpc.MatchServiceStub,
    requests: Iterator[match_pb2.CheckRequest],
    meta: tuple[tuple[str, str], ...],
) -> bool:
    for request in requests:
        try:
            stub.Check(request, metadata=meta, timeout=30)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
            return True
    return False


def test_probes_hidden_in_the_unsampled_slots_of_large_calls_are_seen(
    server: tuple[ServerProcess, str],
) -> None:
    proc, url = server
    meta = (("authorization", f"Bearer {key(url, 'check')}"),)
    size = 1_600

    def calls() -> Iterator[match_pb2.CheckRequest]:
        for n in range(40):
            hashes = walk_around(HASHES[0], size, seed=100 + n)
            # Unrelated hashes in every slot a fixed stride would sample (0, 100, 200, ...).
            strided = range(0, size, size // 16)
            for slot, filler in zip(strided, random_pdq(16, 200 + n), strict=True):
                hashes[slot] = filler
            yield match_pb2.CheckRequest(
                batch=match_pb2.HashBatch(signal="pdq", hashes=b"".join(hashes))
            )

    with grpc.insecure_channel(proc.address) as ch:
        stub = match_pb2_grpc.MatchServiceStub(ch)
        assert throttled_within(stub, calls(), meta), "a walk hidden in large calls went unseen"
    assert "probing_suspected" in audit_actions(url)


def _generated_image(seed: int) -> Any:
    """A benign generated picture: random bold shapes, different for every seed."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (256, 192), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(14):
        x0, y0 = int(rng.integers(0, 200)), int(rng.integers(0, 140))
        box = (x0, y0, x0 + int(rng.integers(20, 120)), y0 + int(rng.integers(20, 100)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return image


def test_a_platform_checking_one_image_a_call_with_robust_probes_is_not_throttled(
    server: tuple[ServerProcess, str],
) -> None:
    from hashmatch.cli import CheckInput, check_inputs
    from hashmatch.images import ImageSource
    from hashmatch.signals import get_signal
    from hashmatch.variants import probe_variants

    proc, url = server
    honest = key(url, "check")
    pdq = get_signal("pdq")
    with MatchClient(proc.address, credentials=creds(honest)) as client:
        for n in range(200):
            probes = probe_variants(ImageSource(b"", _generated_image(n)), [pdq])
            # An image's orientations and band cuts: 6-18 bits apart, a walk if taken apart.
            assert len(probes) >= 8
            item = CheckInput(
                "file",
                f"upload-{n}",
                tuple((v.hash.signal, v.hash.hash) for v in probes),
                variants=tuple(v.name for v in probes),
            )
            # as `hashmatch check --robust` does: the image's probes in one call
            [verdict] = check_inputs(client, [item])
            assert "error" not in verdict
        # The same viral image checked again and again is no walk either.
        viral = probe_variants(ImageSource(b"", _generated_image(0)), [pdq])
        for _ in range(100):
            client.check([(v.hash.signal, v.hash.hash) for v in viral], [0] * len(viral))
    # A walk sent as numbered "images" is still a walk.
    walker = key(url, "check")
    with grpc.insecure_channel(proc.address) as ch:
        stub = match_pb2_grpc.MatchServiceStub(ch)
        walk = (
            match_pb2.CheckRequest(
                batch=match_pb2.HashBatch(
                    signal="pdq", hashes=b"".join(walk_around(HASHES[0], 30, seed=n))
                ),
                images=[0] * 30,
            )
            for n in range(400)
        )
        meta = (("authorization", f"Bearer {walker}"),)
        assert throttled_within(stub, walk, meta), "a walk numbered as images went unseen"


def test_image_numbers_must_fit_the_request(server: tuple[ServerProcess, str]) -> None:
    proc, url = server
    meta = (("authorization", f"Bearer {key(url, 'check')}"),)
    hashes = b"".join(random_pdq(65, 7))
    with grpc.insecure_channel(proc.address) as ch:
        stub = match_pb2_grpc.MatchServiceStub(ch)
        for images, complaint in (([0, 1], "2 image numbers for 65 queries"), ([3] * 65, "64")):
            request = match_pb2.CheckRequest(
                batch=match_pb2.HashBatch(signal="pdq", hashes=hashes), images=images
            )
            with pytest.raises(grpc.RpcError) as info:
                stub.Check(request, metadata=meta, timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert complaint in (info.value.details() or "")
        # Within bounds, the same request is answered.
        request = match_pb2.CheckRequest(
            batch=match_pb2.HashBatch(signal="pdq", hashes=hashes), images=range(65)
        )
        assert len(stub.Check(request, metadata=meta, timeout=5).results) == 65


def test_a_case_or_upload_packing_near_identical_hashes_is_refused_but_variants_are_not(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    from hashmatch.signals import get_signal
    from hashmatch.submit_commands import case_entries

    proc, url = server
    flood = walk_around(HASHES[19], 40, seed=5)
    with SubmissionClient(proc.address, credentials=creds(key(url, "submit"))) as sub:
        with pytest.raises(grpc.RpcError) as info:
            sub.submit_case([NewEntry("pdq", h, 100) for h in flood])
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "within the pdq threshold of" in (info.value.details() or "")
        # Three images, each with its listing variants (crops, trims, rescales: close by
        # design), as `hashmatch submit` sends them.
        paths = []
        for n in range(3):
            path = tmp_path / f"image-{n}.png"
            _generated_image(1000 + n).save(path)
            paths.append(str(path))
        entries = case_entries(tuple(paths), (get_signal("pdq"),))
        assert len(entries) > 3 * 8
        assert sub.submit_case(entries).added == len(entries)
    with SubmissionClient(proc.address, credentials=creds(key(url, "list-manage"))) as sub:
        distinct = random_pdq(30, 77)
        report = sub.upload("b", [NewEntry("pdq", h) for h in flood + distinct])
        assert report.added == len(distinct) and report.refused == len(flood)
        assert all("other images" in reason for _, reason in report.refusals)
