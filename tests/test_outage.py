"""A database outage and a stalled change follower, over real gRPC against a real server.

The PostgreSQL cluster is the test's own, started in a temporary directory: the tests
stop it, restart it and freeze one of its backends, which the machine's shared server
must never suffer.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import assume, given
from hypothesis import strategies as st

from hashmatch.channel import Credentials, open_channel
from hashmatch.demo.serve_process import ServerProcess, free_ports, running_server
from hashmatch.submission import CaseNotYetInEffect, SubmissionClient
from hashmatch.v1 import match_pb2, match_pb2_grpc, submission_pb2, submission_pb2_grpc
from indexer.store import NewEntry, StoreUnavailable, open_store
from service.auth import Gate
from service.readiness import Readiness
from tests.serving import key, serving_store

PG_BIN = Path("/usr/lib/postgresql/15/bin")
HASHES = [bytes(r) for r in np.random.default_rng(22).integers(0, 256, (40, 32), dtype=np.uint8)]
LISTED = HASHES[:5]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
MATCH_SERVICE = "hashmatch.v1.MatchService"
SUBMISSION_SERVICE = "hashmatch.v1.SubmissionService"


@dataclass
class Cluster:
    """A PostgreSQL 15 cluster of the test's own, run as the postgres user."""

    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / program), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            log = self.root / "log"
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n"
                f"{done.stderr}\n{log.read_text() if log.exists() else ''}"
            )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        data, log = str(self.root / "data"), str(self.root / "log")
        self.run("pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.root / "data"), "-m", mode, "-w", "-t", "60", "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A running throwaway cluster; an error, never a skip, if it cannot be had."""
    root = Path(tempfile.mkdtemp(prefix="hm_pg_"))
    shutil.chown(root, "postgres", "postgres")
    c = Cluster(root, free_ports())
    try:
        c.run("initdb", "-D", str(root / "data"), "-A", "trust", "-U", "postgres", "--no-sync")
        c.start()
        yield c
    finally:
        with suppress(RuntimeError):  # never started, or stopped already
            c.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Served:
    proc: ServerProcess
    url: str
    admin: str
    checker: str
    checker_id: str
    metrics_port: int


@contextmanager
def serving(tmp_path: Path, url: str, *args: str) -> Iterator[Served]:
    """A server on `url` with LISTED in list 'hotline', an admin key and a check key."""
    keys = {"admin": key("admin"), "checker": key("check")}
    with serving_store(
        tmp_path, url, *args, lists={"hotline": LISTED}, keys=keys, metrics=True
    ) as running:
        assert running.metrics_port is not None
        yield Served(
            running.proc,
            url,
            running.tokens["admin"],
            running.tokens["checker"],
            running.key_ids["checker"],
            running.metrics_port,
        )


@contextmanager
def stubs(
    served: Served, token: str
) -> Iterator[tuple[match_pb2_grpc.MatchServiceStub, submission_pb2_grpc.SubmissionServiceStub]]:
    with open_channel(served.proc.address, Credentials(api_key=token)) as ch:
        yield match_pb2_grpc.MatchServiceStub(ch), submission_pb2_grpc.SubmissionServiceStub(ch)


def matched(match: match_pb2_grpc.MatchServiceStub, h: bytes) -> bool:
    request = match_pb2.CheckRequest(queries=[match_pb2.Query(signal="pdq", hash=h)])
    return bool(match.Check(request, timeout=10).results[0].matched)


def case(h: bytes) -> submission_pb2.SubmitCaseRequest:
    return submission_pb2.SubmitCaseRequest(hashes=[submission_pb2.HashEntry(signal="pdq", hash=h)])


def failure(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def health(served: Served, service: str) -> int:
    with grpc.insecure_channel(served.proc.address) as ch:
        request = health_pb2.HealthCheckRequest(service=service)
        return int(health_pb2_grpc.HealthStub(ch).Check(request, timeout=5).status)


def metric(served: Served, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{served.metrics_port}/metrics") as page:
        for line in page.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def within(seconds: float, condition: Callable[[], bool]) -> float:
    """Seconds until `condition` held; fails if it did not within `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"not within {seconds}s"
        time.sleep(0.05)
    return time.monotonic() - started


def answers(call: Callable[[], object]) -> bool:
    try:
        call()
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
        return False
    return True


def test_a_database_restart_keeps_checks_answered_and_writes_unavailable_until_it_is_back(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Availability chosen: past the staleness bound, checks are still answered.
    args = ("--max-key-staleness", "1", "--stale-keys", "serve")
    with serving(tmp_path, cluster.url, *args) as served, stubs(served, served.admin) as (m, sub):
        assert matched(m, LISTED[0])
        sub.SubmitCase(case(HASHES[10]), timeout=10)
        cluster.stop("fast")
        try:
            for h in HASHES[11:14]:
                error = failure(lambda h=h: sub.SubmitCase(case(h), timeout=10))
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                assert "unreachable" in str(error.details()) and "retry" in str(error.details())
                assert "127.0.0.1" not in str(error.details())  # no topology for callers
            time.sleep(1.5)
            assert matched(m, LISTED[0]) and matched(m, HASHES[10])
            assert not matched(m, HASHES[11])
        finally:
            cluster.start()
        within(5, lambda: answers(lambda: sub.SubmitCase(case(HASHES[15]), timeout=10)))
        assert matched(m, HASHES[15])  # in effect on return, as before the outage


def test_a_key_revoked_after_a_database_restart_is_refused_within_a_second(
    cluster: Cluster, tmp_path: Path
) -> None:
    with serving(tmp_path, cluster.url) as served, stubs(served, served.checker) as (m, _):
        assert matched(m, LISTED[0])
        cluster.stop("fast")
        cluster.start()
        store = open_store(cluster.url)
        try:
            assert store.revoke_key(served.checker_id)
        finally:
            store.close()

        def refused() -> bool:
            try:
                matched(m, LISTED[0])
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, exc
                return True
            return False

        within(1.5, refused)


def test_with_strict_key_staleness_checks_are_refused_past_the_bound_until_the_store_is_back(
    cluster: Cluster, tmp_path: Path
) -> None:
    args = ("--max-key-staleness", "2", "--stale-keys", "refuse")
    with serving(tmp_path, cluster.url, *args) as served, stubs(served, served.checker) as (m, _):
        cluster.stop("fast")
        try:
            assert matched(m, LISTED[0])  # within the bound: answered from memory
            within(5, lambda: not answers(lambda: matched(m, LISTED[0])))
            error = failure(lambda: matched(m, LISTED[0]))
            assert "API keys could not be reloaded" in str(error.details())
            within(1, lambda: health(served, MATCH_SERVICE) == NOT_SERVING)
            assert health(served, "liveness") == SERVING
        finally:
            cluster.start()
        within(5, lambda: answers(lambda: matched(m, LISTED[0])))
        assert matched(m, LISTED[0])
        within(2, lambda: health(served, MATCH_SERVICE) == SERVING)


def test_readiness_is_not_serving_while_the_store_is_unreachable_and_liveness_stays_serving(
    cluster: Cluster, tmp_path: Path
) -> None:
    with serving(tmp_path, cluster.url) as served:
        assert health(served, "") == SERVING and health(served, "liveness") == SERVING
        assert metric(served, "hashmatch_store_up") == 1
        cluster.stop("immediate")
        try:
            within(3, lambda: health(served, "") == NOT_SERVING)
            assert health(served, SUBMISSION_SERVICE) == NOT_SERVING
            assert health(served, "liveness") == SERVING
            assert health(served, MATCH_SERVICE) == SERVING  # checks still answered
            assert metric(served, "hashmatch_store_up") == 0
            assert metric(served, "hashmatch_ready") == 0
            within(3, lambda: metric(served, "hashmatch_key_reload_age_seconds") > 1)
        finally:
            cluster.start()
        within(5, lambda: health(served, "") == SERVING)
        assert health(served, SUBMISSION_SERVICE) == SERVING
        assert metric(served, "hashmatch_store_up") == 1
        assert metric(served, "hashmatch_key_reload_age_seconds") < 2


def frozen_while_idle(db: psycopg.Connection[tuple[object, ...]], pid: int) -> bool:
    """SIGSTOP a backend, and keep it stopped only if it was idle (holding no lock)."""
    os.kill(pid, signal.SIGSTOP)
    row = db.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    if row is not None and row[0] == "idle":
        return True
    os.kill(pid, signal.SIGCONT)
    return False


def freeze_follower(served: Served, m: match_pb2_grpc.MatchServiceStub) -> int:
    """Freeze the PostgreSQL backend serving the server's change follower, found by what
    happens when it is frozen: an entry added meanwhile does not come to match."""
    probes = iter(HASHES[35:])
    with psycopg.connect(served.url, autocommit=True) as db:
        for _ in range(20):
            pids = [
                int(r[0])
                for r in db.execute(
                    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
                    " AND pid <> pg_backend_pid()"
                ).fetchall()
            ]
            for pid in pids:
                if not frozen_while_idle(db, pid):
                    continue
                probe = next(probes)
                store = open_store(served.url)
                store.add_entries("probes", [NewEntry("pdq", probe)])
                store.close()
                time.sleep(1)
                if not matched(m, probe):
                    return pid
                os.kill(pid, signal.SIGCONT)
    raise AssertionError("found no backend whose freezing stalls the change follower")


def test_with_the_follower_stalled_submit_case_says_stored_but_not_in_effect_and_not_ready(
    cluster: Cluster, tmp_path: Path
) -> None:
    args = ("--max-follower-stall", "1")
    with serving(tmp_path, cluster.url, *args) as served, stubs(served, served.admin) as (m, sub):
        h, creds = HASHES[20], Credentials(api_key=served.admin)
        pid = freeze_follower(served, m)
        try:
            with (
                SubmissionClient(served.proc.address, credentials=creds, timeout=30) as client,
                pytest.raises(CaseNotYetInEffect) as stored,
            ):
                client.submit_case([NewEntry("pdq", h)])
            error = stored.value.__cause__
            assert isinstance(error, grpc.Call)
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error
            assert "stored but is not yet in effect" in str(error.details())
            receipt = stored.value.receipt
            assert not matched(m, h)
            within(3, lambda: health(served, "") == NOT_SERVING)
            assert health(served, "liveness") == SERVING
        finally:
            os.kill(pid, signal.SIGCONT)
        within(5, lambda: health(served, "") == SERVING)
        assert matched(m, h)  # applied once the follower caught up
        withdrawal = submission_pb2.CaseRequest(
            case_id=receipt.case_id, withdrawal_secret=receipt.withdrawal_secret
        )
        assert sub.Withdraw(withdrawal, timeout=10).removed == 1
        assert not matched(m, h)


def test_a_store_locked_by_another_writer_is_unavailable_not_internal(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    url = f"sqlite:///{path}"
    store = open_store(url)
    store.add_entries("hotline", [NewEntry("pdq", h) for h in LISTED])
    store.close()
    with (
        running_server(tmp_path / "index", "--store", url, "--no-auth") as proc,
        grpc.insecure_channel(proc.address) as ch,
    ):
        sub = submission_pb2_grpc.SubmissionServiceStub(ch)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # held past the store's 10 s busy timeout
        try:
            error = failure(lambda: sub.SubmitCase(case(HASHES[30]), timeout=60))
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            assert "busy" in str(error.details())
        finally:
            other.execute("ROLLBACK")
            other.close()
        sub.SubmitCase(case(HASHES[30]), timeout=30)


def test_a_store_rides_out_a_database_restart_and_tells_callers_nothing_of_its_address(
    cluster: Cluster,
) -> None:
    store = open_store(cluster.url)
    try:
        store.add_entries("l", [NewEntry("pdq", HASHES[0])])
        cluster.stop("fast")
        try:
            for _ in range(5):
                with pytest.raises(StoreUnavailable) as info:
                    store.last_seq()
                assert "127.0.0.1" not in str(info.value) and str(cluster.port) not in str(
                    info.value
                )
        finally:
            cluster.start()
        time.sleep(0.6)  # past the longest reconnection backoff
        assert store.last_seq() > 0
        cluster.stop("fast")
        cluster.start()
        # The connection died while idle: the very next call, even a write, succeeds.
        assert store.add_entries("l", [NewEntry("pdq", HASHES[1])]).added == 1
    finally:
        store.close()


class NoKeys:
    def api_keys(self) -> list[object]:
        return []


@dataclass
class FollowerState:
    store_up: bool
    age: float

    def read_age(self) -> float:
        return self.age


@given(
    store_up=st.booleans(),
    read_age=st.floats(0, 100),
    keys_age=st.floats(0, 1000),
    strict=st.booleans(),
    with_store=st.booleans(),
)
def test_readiness_reports_exactly_what_is_wrong(
    store_up: bool, read_age: float, keys_age: float, strict: bool, with_store: bool
) -> None:
    assume(abs(read_age - 10) > 0.5 and abs(keys_age - 300) > 0.5)
    gate = Gate(NoKeys() if with_store else None, max_key_staleness=300, refuse_stale_keys=strict)  # type: ignore[arg-type]
    gate._loaded_at = time.monotonic() - keys_age
    follower = FollowerState(store_up, read_age) if with_store else None
    readiness = Readiness(gate, follower, max_follower_stall=10)  # type: ignore[arg-type]
    readiness.serve(MATCH_SERVICE, [SUBMISSION_SERVICE])

    def status(service: str) -> int:
        request = health_pb2.HealthCheckRequest(service=service)
        return int(readiness.health.Check(request, None).status)  # type: ignore[arg-type]

    stale = with_store and keys_age > 300
    ready = not with_store or (store_up and read_age <= 10 and not stale)
    assert status("liveness") == SERVING
    assert status("") == status(SUBMISSION_SERVICE) == (SERVING if ready else NOT_SERVING)
    assert status(MATCH_SERVICE) == (NOT_SERVING if strict and stale else SERVING)
    assert (readiness.problems() == {}) == ready
