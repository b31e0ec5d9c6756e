"""Videos listed and checked over real gRPC: one entry per video, matched by the share of
its vPDQ frames, withdrawn and removed at once, and every bad frame refused by name.
Frames here are synthetic PDQ hashes (random bits, as real photos' hashes are);
test_video_clips.py does the same with generated clips."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import psycopg
import pytest

from hashmatch.client import MatchClient, VideoVerdict
from hashmatch.demo.serve_process import ServerProcess, running_server
from hashmatch.list_formats import NewEntry, video_entry
from hashmatch.submission import SubmissionClient
from hashmatch.v1 import match_pb2, match_pb2_grpc, submission_pb2, submission_pb2_grpc
from hashmatch.video import VideoFrame
from hashmatch.video_entries import VPDQ, pack_frames, video_digest
from hashmatch.vpdq_formats import to_pytx
from indexer.build import build_snapshot
from indexer.snapshot import read_snapshot
from indexer.store import open_store
from tests.conftest import run_cli
from tests.test_malformed_rows import raw
from tests.test_security import creds, key, secured, walk_around

BLACK = VideoFrame("0" * 64, 0, 0.0)


def synthetic_video(n: int, seed: int, quality: int = 90) -> list[VideoFrame]:
    """n frames of random PDQ hashes (about half their bits set, as real ones)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    while len(odd := np.flatnonzero(abs(np.unpackbits(rows, axis=1).sum(axis=1) - 128) > 24)):
        rows[odd] = rng.integers(0, 256, (len(odd), 32), dtype=np.uint8)  # as listable as photos
    return [VideoFrame(bytes(r).hex(), quality, float(t)) for t, r in enumerate(rows)]


def edited(frames: list[VideoFrame], bits: int, seed: int) -> list[VideoFrame]:
    """Each frame with `bits` bits flipped: a re-encode's small per-frame changes."""
    rng = np.random.default_rng(seed)
    out = []
    for f in frames:
        value = int(f.pdq, 16)
        for b in rng.choice(256, bits, replace=False).tolist():
            value ^= 1 << b
        out.append(VideoFrame(f"{value:064x}", f.quality, f.timestamp))
    return out


def video_message(frames: list[match_pb2.VideoFrame]) -> submission_pb2.HashEntry:
    return submission_pb2.HashEntry(signal=VPDQ, video=submission_pb2.Video(frames=frames))


@pytest.fixture
def fed(tmp_path: Path, store_url: str) -> Iterator[tuple[ServerProcess, str]]:
    """A server taking submissions, on each store backend."""
    with running_server(
        tmp_path / "index", "--store", store_url, "--no-auth", "--poll-interval", "0.1"
    ) as proc:
        yield proc, store_url


def module_server(factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A server taking submissions on a SQLite store of its own, for a module's tests."""
    work = factory.mktemp("served")
    url = f"sqlite:///{work / 'store.db'}"
    with running_server(
        work / "index", "--store", url, "--no-auth", "--poll-interval", "0.1"
    ) as proc:
        yield proc, url


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """One server for the attacks, which change nothing."""
    yield from module_server(tmp_path_factory)


def test_a_listed_video_matches_itself_and_an_edit_with_its_shares_and_nothing_else(
    fed: tuple[ServerProcess, str],
) -> None:
    proc, _ = fed
    listed = synthetic_video(60, seed=1)
    with SubmissionClient(proc.address) as sub, MatchClient(proc.address) as check:
        sub.create_list("videos")
        report = sub.upload("videos", [video_entry(listed, "clip-1")])
        assert (report.added, report.refused) == (1, 0)
        info = sub.list_info("videos")
        assert dict(info.entries_by_signal) == {VPDQ: 1}  # one entry, not 60
        time.sleep(0.5)  # an upload is matched within a poll interval

        same = check.check_video(listed)
        assert same.matched and same.frames_matched_on == 60
        (m,) = same.matches
        assert (m.list, m.query_match_percent, m.compared_match_percent) == ("videos", 100, 100)
        assert len(m.match_id) == 24 and m.match_id not in "".join(f.pdq for f in listed)

        # Re-encoded (12 bits a frame) and trimmed to its middle 40 seconds.
        trimmed = edited(listed, 12, seed=2)[10:50]
        verdict = check.check_video(trimmed)
        assert verdict.matched and verdict.matches[0].match_id == m.match_id
        assert verdict.matches[0].query_match_percent == 100
        assert verdict.matches[0].compared_match_percent == pytest.approx(100 * 40 / 60)
        # The compared share can be asked for; 2/3 of the listed video is too little.
        assert not check.check_video(trimmed, compared_match_percent=70).matched

        # Half the query's frames from elsewhere: 50% < 80%.
        mixed = listed[:30] + synthetic_video(30, seed=3)
        half = check.check_video(mixed)
        assert not half.matched and half.frames_matched_on == 60
        assert not check.check_video(synthetic_video(60, seed=4)).matched
        assert not check.check_video(edited(listed, 40, seed=5)).matched  # beyond 31 bits

        # The same video again is a duplicate; a plain hash check never sees its frames.
        assert sub.upload("videos", [video_entry(listed)]).duplicates == 1
        frame = bytes.fromhex(listed[0].pdq)
        assert not check.check([("pdq", frame)])[0].matched


def test_a_video_in_a_case_is_one_hash_and_stops_matching_on_withdrawal(
    fed: tuple[ServerProcess, str],
) -> None:
    proc, _ = fed
    video = synthetic_video(30, seed=10)
    with SubmissionClient(proc.address) as sub, MatchClient(proc.address) as check:
        receipt = sub.submit_case([video_entry(video)])
        assert receipt.added == 1
        assert check.check_video(video).matched  # in effect on return
        status = sub.case_status(receipt.case_id, receipt.withdrawal_secret)
        assert status.active_hashes == 1
        assert sub.withdraw(receipt.case_id, receipt.withdrawal_secret) == 1
        assert not check.check_video(video).matched  # and withdrawn on return


def test_a_removed_video_stops_matching_on_return_and_stays_out_of_a_new_snapshot(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    kept, removed = synthetic_video(20, seed=20), synthetic_video(20, seed=21)
    store = open_store(url)
    store.add_entries("videos", [video_entry(kept), video_entry(removed)])
    store.close()
    with (
        running_server(
            tmp_path / "index", "--store", url, "--no-auth", "--poll-interval", "0.1"
        ) as proc,
        SubmissionClient(proc.address) as sub,
        MatchClient(proc.address) as check,
    ):
        assert check.check_video(removed).matched  # from the snapshot
        assert sub.remove("videos", [(VPDQ, video_digest(pack_frames(removed)))]) == 1
        assert not check.check_video(removed).matched
        assert check.check_video(kept).matched
    store = open_store(url)
    try:
        build_snapshot(store, tmp_path / "index")  # a fresh build: the removal holds
    finally:
        store.close()
    with (
        running_server(tmp_path / "index", "--no-auth") as proc,
        MatchClient(proc.address) as check,
    ):
        assert not check.check_video(removed).matched
        assert check.check_video(kept).matched


def _refused(call: object) -> str:
    assert isinstance(call, grpc.RpcError) and isinstance(call, grpc.Call)
    assert call.code() == grpc.StatusCode.INVALID_ARGUMENT, call.details()
    return str(call.details())


GOOD = match_pb2.VideoFrame(hash=bytes(range(32)), quality=90, timestamp=1.0)


@pytest.mark.parametrize(
    ("frames", "said"),
    [
        ([], "a video has 1 to 36000 frames, got 0"),
        ([GOOD] * 36_001, "a video has 1 to 36000 frames, got 36001"),
        ([GOOD, match_pb2.VideoFrame(hex="zz" * 32, quality=90)], "frame 1: pdq hash"),
        ([match_pb2.VideoFrame(hash=b"\x01" * 31, quality=90)], "frame 0: hash must be 32 bytes"),
        ([match_pb2.VideoFrame(hash=bytes(32), quality=101)], "frame 0: quality 101"),
        ([match_pb2.VideoFrame(hash=bytes(32), timestamp=float("nan"))], "frame 0: timestamp"),
        ([match_pb2.VideoFrame(hash=bytes(32), timestamp=-1.0)], "frame 0: timestamp"),
        ([match_pb2.VideoFrame(quality=90)], "frame 0: no hash given"),
    ],
)
def test_bad_frames_are_refused_by_name_and_the_server_keeps_serving(
    one: tuple[ServerProcess, str], frames: list[match_pb2.VideoFrame], said: str
) -> None:
    proc, _ = one
    with grpc.insecure_channel(proc.address) as channel:
        match = match_pb2_grpc.MatchServiceStub(channel)
        submit = submission_pb2_grpc.SubmissionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            match.CheckVideo(match_pb2.VideoCheckRequest(frames=frames), timeout=30)
        assert said in _refused(info.value)
        with pytest.raises(grpc.RpcError) as info:
            submit.SubmitCase(
                submission_pb2.SubmitCaseRequest(hashes=[video_message(frames)]), timeout=30
            )
        assert f"hash 0: {said}" in _refused(info.value)
        answer = match.CheckVideo(match_pb2.VideoCheckRequest(frames=[GOOD]), timeout=30)
        assert not answer.matched and answer.frames_matched_on == 1


@pytest.mark.parametrize(
    ("request_fields", "said"),
    [
        ({"query_match_percent": 50.0}, "query_match_percent 50.0 must be between"),
        ({"query_match_percent": float("nan")}, "query_match_percent nan"),
        ({"compared_match_percent": 101.0}, "compared_match_percent 101.0"),
        ({"max_distance": 32}, "max_distance 32 exceeds"),
    ],
)
def test_thresholds_can_only_be_tightened(
    one: tuple[ServerProcess, str], request_fields: dict[str, float], said: str
) -> None:
    with grpc.insecure_channel(one[0].address) as channel:
        match = match_pb2_grpc.MatchServiceStub(channel)
        request = match_pb2.VideoCheckRequest(frames=[GOOD], **request_fields)
        with pytest.raises(grpc.RpcError) as info:
            match.CheckVideo(request, timeout=30)
        assert said in _refused(info.value)


@pytest.mark.parametrize(
    ("slot", "said"),
    [
        (float("nan"), "slot_seconds nan must be from 0.001"),
        (-1.0, "slot_seconds -1.0 must be from 0.001"),
        (0.0, "slot_seconds 0.0 must be from 0.001"),
        (float("inf"), "slot_seconds inf must be"),
        (1e9, "slot_seconds 1000000000.0 must be from 0.001 to 60 seconds"),
    ],
)
def test_a_bad_slot_is_refused_by_name_and_the_server_keeps_serving(
    one: tuple[ServerProcess, str], slot: float, said: str
) -> None:
    with grpc.insecure_channel(one[0].address) as channel:
        match = match_pb2_grpc.MatchServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            match.CheckVideo(match_pb2.VideoCheckRequest(frames=[GOOD], slot_seconds=slot))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert said in _refused(info.value)
        answer = match.CheckVideo(match_pb2.VideoCheckRequest(frames=[GOOD], slot_seconds=1.0))
        assert not answer.matched and answer.frames_matched_on == 1


def test_a_phased_check_counts_each_slot_once_matched_when_any_frame_is(
    fed: tuple[ServerProcess, str],
) -> None:
    """A query whose every second holds one frame near the listed video among three
    others (a trim out of phase, checked at four phases) matches in slots of 1 s and not
    frame by frame; slots of unrelated frames still do not match."""
    proc, _ = fed
    listed = synthetic_video(20, seed=21)
    near = edited(listed, 12, seed=22)
    others = synthetic_video(60, seed=23)
    phased = []
    for s, f in enumerate(near):
        phased.append(replace(f, timestamp=s + 0.25))
        phased += [
            replace(o, timestamp=s + 0.25 + k / 5)
            for k, o in enumerate(others[3 * s : 3 * s + 3], 1)
        ]
    with SubmissionClient(proc.address) as sub, MatchClient(proc.address) as check:
        sub.create_list("videos")
        assert sub.upload("videos", [video_entry(listed, "clip")]).added == 1
        time.sleep(0.5)
        plain = check.check_video(phased)
        assert not plain.matched and plain.frames_matched_on == 80
        verdict = check.check_video(phased, slot_seconds=1.0)
        assert verdict.matched and verdict.frames_matched_on == 20
        (m,) = verdict.matches
        assert (m.query_match_percent, m.compared_match_percent) == (100, 100)

        # Four of the twenty seconds without their near frame: 80%, still a match; five
        # without: 75%, none.
        def without(n: int) -> list[VideoFrame]:
            return [f for f in phased if f.pdq not in {x.pdq for x in near[:n]}]

        four = check.check_video(without(4), slot_seconds=1.0)
        assert four.matched and four.matches[0].query_match_percent == 80
        five = check.check_video(without(5), slot_seconds=1.0)
        assert not five.matched and five.frames_matched_on == 20
        assert not check.check_video(others, slot_seconds=1.0).matched


def test_a_video_of_black_frames_is_nothing_to_match_on_and_cannot_be_listed(
    one: tuple[ServerProcess, str],
) -> None:
    proc, _ = one
    black = [VideoFrame(BLACK.pdq, 0, float(t)) for t in range(1000)]
    with MatchClient(proc.address) as check, grpc.insecure_channel(proc.address) as channel:
        verdict = check.check_video(black)
        assert (verdict.matched, verdict.frames_matched_on) == (False, 0)
        # 1,000 copies sent as they are: one frame to search, still nothing to match on.
        raw = [match_pb2.VideoFrame(hash=bytes(32), quality=0, timestamp=t) for t in range(1000)]
        match = match_pb2_grpc.MatchServiceStub(channel)
        answer = match.CheckVideo(match_pb2.VideoCheckRequest(frames=raw), timeout=30)
        assert (answer.matched, answer.frames_matched_on) == (False, 0)
        submit = submission_pb2_grpc.SubmissionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            submit.SubmitCase(
                submission_pb2.SubmitCaseRequest(hashes=[video_message(raw)]), timeout=30
            )
        assert "no frame of quality 50 or more" in _refused(info.value)
        # A lying quality does not get a featureless frame listed.
        lying = [match_pb2.VideoFrame(hash=bytes(32), quality=100)]
        with pytest.raises(grpc.RpcError) as info:
            submit.SubmitCase(
                submission_pb2.SubmitCaseRequest(hashes=[video_message(lying)]), timeout=30
            )
        assert "refused: frame 0: pdq hash has all bits zero" in _refused(info.value)


def test_a_long_video_with_repeated_frames_is_one_entry_of_its_distinct_frames(
    one: tuple[ServerProcess, str],
) -> None:
    """1,000 copies of one good frame, then 59 others: 60 frames matched on, one entry."""
    proc, _ = one
    frames = synthetic_video(60, seed=30)
    video = [VideoFrame(frames[0].pdq, 90, float(t)) for t in range(1000)] + frames[1:]
    with SubmissionClient(proc.address) as sub, MatchClient(proc.address) as check:
        assert sub.submit_case([video_entry(video)]).added == 1
        verdict = check.check_video(video)
        assert verdict.frames_matched_on == 60
        assert verdict.matches[0].compared_match_percent == 100


def test_an_intro_frame_shared_by_10000_listed_videos_keeps_checks_fast(tmp_path: Path) -> None:
    """Every listed video opens on the same card: a check holding it costs about what one
    without it does, and the video it really is still matches on its own frames."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    intro = synthetic_video(1, seed=40)[0]
    frames = synthetic_video(40_000, seed=41)
    own = [frames[k : k + 4] for k in range(0, 40_000, 4)]
    store = open_store(url)
    try:
        store.add_entries("videos", [video_entry([intro, *frames]) for frames in own])
        build_snapshot(store, tmp_path / "index")
    finally:
        store.close()

    def timed(check: MatchClient, frames: list[VideoFrame]) -> tuple[float, VideoVerdict]:
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            verdict = check.check_video(frames)
            best = min(best, time.perf_counter() - started)
        return best, verdict

    with (
        running_server(tmp_path / "index", "--no-auth") as proc,
        MatchClient(proc.address) as check,
    ):
        plain, _ = timed(check, own[7])
        with_intro, verdict = timed(check, [intro, *own[7]])
        assert verdict.matched and verdict.frames_matched_on == 5
        best = verdict.matches[0]
        # The card counts for the 32 videos it keeps (ties by random match id), which may
        # or may not be this one: its own 4 frames carry it either way.
        assert (best.query_match_percent, best.compared_match_percent) in ((100, 100), (80, 80))
        assert verdict.capped
        assert best.match_id == check.check_video(own[7]).matches[0].match_id
        # The card alone matches many videos: the answer is capped, not 10,000 long.
        alone = check.check_video([intro])
        assert alone.matched and alone.capped and len(alone.matches) == 32
        print(
            f"check of 4 frames {plain * 1e3:.1f} ms, with the shared card {with_intro * 1e3:.1f}"
        )
        assert with_intro < max(0.05, 5 * plain), (with_intro, plain)


def test_shares_agree_with_python_threatexchange_vpdq_index(
    one: tuple[ServerProcess, str],
) -> None:
    """The same listed videos and queries through our server and through pytx's VPDQIndex
    (its own matching code): the same videos match, with the same shares."""
    vpdq_index = pytest.importorskip("threatexchange.extensions.vpdq.vpdq_index")
    proc, _ = one
    listed = [synthetic_video(20, seed=100 + k) for k in range(20)]
    queries = []
    for q in range(12):
        own = edited(listed[q], 6 + q, seed=200 + q)[: 8 + q]  # 8-19 frames of video q
        neighbour = listed[q + 1][: q % 4]  # and a few of the next
        queries.append(own + neighbour + synthetic_video(q % 3, seed=300 + q))
    with SubmissionClient(proc.address) as sub, MatchClient(proc.address) as check:
        sub.create_list("agree")
        assert sub.upload("agree", [video_entry(v) for v in listed]).added == 20
        time.sleep(0.5)
        ids = [check.check_video(v).matches[0].match_id for v in listed]
        ours = [
            {(ids.index(m.match_id), m.query_match_percent, m.compared_match_percent)
             for m in check.check_video(q).matches}
            for q in queries
        ]  # fmt: skip
    index = vpdq_index.VPDQIndex.build([(to_pytx(v), k) for k, v in enumerate(listed)])
    theirs = [
        {(m.metadata, m.similarity_info.query_match_percent,
          m.similarity_info.compared_match_percent) for m in index.query(to_pytx(q))}
        for q in queries
    ]  # fmt: skip
    assert ours == theirs
    assert any(ours) and not all(ours)  # some queries cross 80%, some don't


def test_a_videos_frames_are_one_question_for_the_probing_watch(tmp_path: Path) -> None:
    """A platform checking 250 uploaded videos, whose frames lie close to each other as a
    video's do, is not throttled; a key hiding a walk in 250 "videos" is."""
    with secured(tmp_path) as (proc, url):
        honest, walker = key(url, "check"), key(url, "check")
        with MatchClient(proc.address, credentials=creds(honest)) as client:
            for n in range(250):
                start = bytes.fromhex(synthetic_video(1, seed=5000 + n)[0].pdq)
                video = [VideoFrame(h.hex(), 90, float(t)) for t, h in
                         enumerate(walk_around(start, 30, seed=n))]  # fmt: skip
                assert not client.check_video(video).matched
        centre = bytes.fromhex(synthetic_video(1, seed=7)[0].pdq)
        with MatchClient(proc.address, credentials=creds(walker)) as client:
            with pytest.raises(grpc.RpcError) as info:
                for n in range(250):
                    walk = walk_around(centre, 30, seed=9000 + n)
                    client.check_video([VideoFrame(h.hex(), 90, 0.0) for h in walk])
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_key_sees_only_its_lists_videos_and_a_match_only_key_no_shares(
    tmp_path: Path,
) -> None:
    video = synthetic_video(10, seed=60)
    with secured(tmp_path) as (proc, url):
        store = open_store(url)
        store.add_entries("b", [video_entry(video)])
        store.close()
        time.sleep(0.5)
        for lists, seen in (((), True), (("a",), False), (("b",), True)):
            token = key(url, "check", lists=lists)
            with MatchClient(proc.address, credentials=creds(token)) as client:
                assert client.check_video(video).matched is seen
        done = run_cli("keys", "create", "--store", url, "--tenant", "t", "--role", "check",
                       "--match-only")  # fmt: skip
        token = next(ln.split()[1] for ln in done.stdout.splitlines() if ln.startswith("key:"))
        with MatchClient(proc.address, credentials=creds(token)) as client:
            (m,) = client.check_video(video).matches
            assert m.query_match_percent is None and m.compared_match_percent is None
            with pytest.raises(grpc.RpcError) as info:
                client.check_video(video, query_match_percent=90)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_videos_sync_to_another_server_in_pages_and_match_there(tmp_path: Path) -> None:
    """Twelve 10-hour videos (1.5 MB of frames each, 18 MB in all: more than one message
    may hold) and a short one go over SyncService in pages; the copy matches as the
    original, and a removal syncs."""
    long_ones = [synthetic_video(36_000, seed=70 + k) for k in range(12)]
    short = synthetic_video(20, seed=80)
    a_url = f"sqlite:///{tmp_path / 'a.db'}"
    b_url = f"sqlite:///{tmp_path / 'b.db'}"
    store = open_store(a_url)
    store.add_entries("shared", [video_entry(v) for v in (*long_ones, short)])
    store.close()
    with running_server(tmp_path / "a-index", "--store", a_url, "--no-auth") as a:
        pull = ("sync", "pull", "--store", b_url, "--from", a.address, "--list", "shared")
        done = run_cli(*pull)
        assert done.returncode == 0 and "added 13" in done.stdout, (done.stdout, done.stderr)
        with SubmissionClient(a.address) as sub:
            assert sub.remove("shared", [(VPDQ, video_digest(pack_frames(long_ones[0])))]) == 1
        done = run_cli(*pull)
        assert "removed 1" in done.stdout, (done.stdout, done.stderr)
    with (
        running_server(tmp_path / "b-index", "--store", b_url, "--no-auth") as b,
        MatchClient(b.address) as check,
    ):
        verdict = check.check_video(short)
        assert verdict.matched and verdict.matches[0].compared_match_percent == 100
        assert check.check_video(long_ones[1][:100]).matched
        assert not check.check_video(long_ones[0][:100]).matched


def test_the_store_keeps_a_videos_frames_and_refuses_a_video_without_them(
    store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Both stores: frames round-trip through entries and the change log; the schema
    refuses a vpdq entry without frames and frames on any other entry; a build leaves out
    a video whose frames were damaged behind the store's back, saying why."""
    video = synthetic_video(5, seed=90, quality=40) + synthetic_video(3, seed=91)
    other = synthetic_video(4, seed=92)
    store = open_store(store_url)
    try:
        store.add_entries("a", [video_entry(video, "ref-1"), video_entry(other)])
        first, _ = store.list_entries("a")
        assert first.frames == pack_frames(video) and first.source_ref == "ref-1"
        assert [c.frames for c in store.changes(0, 10)] == [pack_frames(video), pack_frames(other)]
        refused = (sqlite3.IntegrityError, psycopg.IntegrityError)
        with pytest.raises(refused):
            store.add_entries("a", [replace(video_entry(synthetic_video(2, seed=93)), frames=b"")])
        with pytest.raises(refused):
            store.add_entries("a", [NewEntry("pdq", bytes(range(32)), frames=pack_frames(other))])
        assert len(list(store.list_entries("a"))) == 2  # each refused batch went whole
        with raw(store_url) as db:
            db("UPDATE entries SET frames = ? WHERE source_ref = 'ref-1'", b"damaged")
        with caplog.at_level(logging.WARNING, "indexer.build"):
            build_snapshot(store, tmp_path / "index")
    finally:
        store.close()
    table = read_snapshot(tmp_path / "index").tables[VPDQ]
    assert table.count == 4  # the other video's four frames
    (message,) = [r.getMessage() for r in caplog.records]
    assert "vpdq video unreadable: packed frames are 7 bytes" in message


def test_a_tenants_negative_list_takes_its_frames_out_of_its_video_checks(
    tmp_path: Path,
) -> None:
    """A platform's negative list holding its own benign video (half of whose frames lie
    near a listed video's) leaves the listed video under 80% for that platform only."""
    from tests.test_negative_lists import eventually
    from tests.test_negative_lists import key as tenant_key

    listed = synthetic_video(20, seed=110)
    benign = edited(listed[:10], 4, seed=111) + synthetic_video(10, seed=112)
    with secured(tmp_path) as (proc, url):
        store = open_store(url)
        store.add_entries("b", [video_entry(listed)])
        store.close()
        mine = tenant_key(url, "t1", "check", "list-manage")
        theirs = tenant_key(url, "t2", "check")

        def matched(creds: object) -> bool:
            with MatchClient(proc.address, credentials=creds) as client:  # type: ignore[arg-type]
                return client.check_video(listed).matched

        eventually(lambda: matched(mine) and matched(theirs))
        with SubmissionClient(proc.address, credentials=mine) as sub:
            sub.create_list("t1-benign", kind="negative")
            assert sub.upload("t1-benign", [video_entry(benign)]).added == 1
        eventually(lambda: not matched(mine))
        assert matched(theirs)


def test_compaction_folds_video_adds_and_removals_into_the_frame_table(tmp_path: Path) -> None:
    """A compacted snapshot holds the frames of the videos added since, and none of those
    removed: the same answers as the delta it replaces, and a fresh build's."""
    from hashmatch.wire import video_check_request
    from indexer.build import compact_snapshot
    from service.matcher import Matcher
    from service.video_checking import parse_video, videos

    kept, removed, added = (synthetic_video(8, seed=s) for s in (120, 121, 122))
    shared = synthetic_video(1, seed=123)  # a frame all three share: one run of rows
    kept, removed, added = kept + shared, removed + shared, added + shared
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.add_entries("v", [video_entry(kept), video_entry(removed)])
        build_snapshot(store, tmp_path / "index")
        base = read_snapshot(tmp_path / "index")
        store.remove_entries("v", [(VPDQ, video_digest(pack_frames(removed)))])
        store.add_entries("v", [video_entry(added)])
        compact_snapshot(base, store.changes(base.last_seq, 100), tmp_path / "index")
        build_snapshot(store, tmp_path / "fresh")
    finally:
        store.close()
    for root in ("index", "fresh"):
        snapshot = read_snapshot(tmp_path / root)
        assert snapshot.tables[VPDQ].count == 9 + 9
        matcher = Matcher.of(snapshot)

        def shares(
            frames: list[VideoFrame], matcher: Matcher = matcher
        ) -> list[tuple[float, float]]:
            query = parse_video(video_check_request(frames), match_only=False)
            found = videos(matcher.check(query.frames), query)
            return [(v.query_match, v.compared_match) for v in found]

        assert shares(kept)[0] == (100, 100) and shares(added)[0] == (100, 100)
        assert (100, 100) not in shares(removed)  # only the shared frame: 1 of 9


def test_a_list_narrows_its_videos_frame_distance_and_no_further_than_pdq(
    fed: tuple[ServerProcess, str],
) -> None:
    """A list's own `vpdq` maximum distance applies to its videos' frames, in effect on
    return; wider than the frames' threshold (PDQ's 31) is refused by name, from the API
    and from the CLI."""
    proc, _ = fed
    listed = synthetic_video(20, seed=120)
    reencoded = edited(listed, 12, seed=121)
    with SubmissionClient(proc.address) as sub, MatchClient(proc.address) as check:
        sub.create_list("narrow")
        assert sub.upload("narrow", [video_entry(listed)]).added == 1
        time.sleep(0.5)
        assert check.check_video(reencoded).matched
        info = sub.set_policy("narrow", max_distance={VPDQ: 8})
        assert dict(info.max_distance) == {VPDQ: 8}
        assert not check.check_video(reencoded).matched, "12 bits a frame is beyond 8"
        assert check.check_video(edited(listed, 6, seed=122)).matched
        with pytest.raises(grpc.RpcError) as wide:
            sub.set_policy("narrow", max_distance={VPDQ: 32})
        assert wide.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "vpdq exceeds its threshold 31" in str(wide.value.details())
        sub.set_policy("narrow", default_distance=[VPDQ])
        assert check.check_video(reencoded).matched
    server = ("--server", proc.address)
    done = run_cli("list", "policy", *server, "narrow", "--max-distance", "vpdq=10")
    assert done.returncode == 0, done.stderr
    with MatchClient(proc.address) as check:
        assert not check.check_video(reencoded).matched
    refused = run_cli("list", "policy", *server, "narrow", "--max-distance", "vpdq=40")
    assert refused.returncode != 0 and "vpdq threshold 31" in refused.stderr
