"""Attacks on issue 26's video matching rules (phased checks in slots), over real gRPC with
keys on: a checker with a check key sending hostile slots, and what a match-only key
learns. Each test states a promise and fails while it is broken."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import numpy as np
import pytest

from hashmatch.channel import Credentials
from hashmatch.client import MatchClient
from hashmatch.demo.video_clips import scene, stills, write_video
from hashmatch.list_formats import video_entry
from hashmatch.submission import SubmissionClient
from hashmatch.v1 import match_pb2, match_pb2_grpc
from hashmatch.video import VideoFrame, hash_video
from hashmatch.video_entries import VPDQ, listing_problem, pack_frames, video_digest
from hashmatch.video_match import is_match, match_percentages, query_units
from indexer.store import open_store
from tests.serving import Running, key, serving_store
from tests.test_security import walk_around
from tests.test_video_checks import edited, synthetic_video

LISTED = synthetic_video(10, seed=2601)
OTHERS = synthetic_video(200, seed=2602)


@dataclass
class Served:
    running: Running

    def client(self, name: str) -> MatchClient:
        return MatchClient(
            self.running.proc.address, credentials=Credentials(api_key=self.running.tokens[name])
        )

    def stub(self, name: str) -> tuple[grpc.Channel, match_pb2_grpc.MatchServiceStub]:
        channel = grpc.insecure_channel(self.running.proc.address)
        return channel, match_pb2_grpc.MatchServiceStub(channel)

    def metadata(self, name: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.running.tokens[name]}"),)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("attack26")
    url = f"sqlite:///{work / 'store.db'}"
    store = open_store(url)
    store.add_entries("videos", [video_entry(LISTED, "listed")])
    store.close()
    keys = {
        "checker": key("check"),
        "walker": key("check"),
        "blind": key("check", match_only=True),
        "rated": key("check", rate=50.0),  # a bucket of 100 hashes
    }
    with serving_store(work, url, keys=keys) as running:
        yield Served(running)


def frame_message(f: VideoFrame) -> match_pb2.VideoFrame:
    return match_pb2.VideoFrame(hex=f.pdq, quality=f.quality, timestamp=f.timestamp)


def _refusal(served: Served, request: match_pb2.VideoCheckRequest) -> grpc.RpcError:
    channel, stub = served.stub("checker")
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.CheckVideo(request, metadata=served.metadata("checker"), timeout=30)
    return info.value


@pytest.mark.parametrize("slot", [1e-300, 1e-305, 5e-324])
def test_a_tiny_slot_is_refused_by_name_not_a_server_error(served: Served, slot: float) -> None:
    """A slot so short that a frame's time over it overflows is a bad request, refused by
    name before any work, never a server error (a traceback logged per call, uncharged)."""
    late = match_pb2.VideoFrame(hash=bytes(range(32)), quality=90, timestamp=9_999_999.0)
    error = _refusal(served, match_pb2.VideoCheckRequest(frames=[late], slot_seconds=slot))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "slot_seconds" in str(error.details())
    with served.client("checker") as client:
        assert client.check_video(LISTED, slot_seconds=1.0).matched


def strobe(common: VideoFrame, n: int) -> list[VideoFrame]:
    """An upload whose every second shows one frame `common` (an intro card, a logo
    flashed each second) among frames unrelated to any listed video."""
    out = []
    for s in range(n):
        out.append(replace(common, timestamp=s + 0.1))
        out.append(replace(OTHERS[s], timestamp=s + 0.5))
    return out


def test_one_frame_repeated_in_every_slot_counts_once(served: Served) -> None:
    """A frame sent in every slot is one frame of the query (duplicates count once), as
    pytx's rule has it: a single frame shared with a listed video must not make every
    slot match, or an unrelated upload flashing a listed intro card matches it."""
    upload = strobe(LISTED[0], 20)
    with served.client("checker") as client:
        plain = client.check_video(upload)
        assert not plain.matched
        phased = client.check_video(upload, slot_seconds=1.0)
        assert not phased.matched, phased
    assert not is_match(match_percentages(upload, LISTED, slot_seconds=1.0))


def test_the_units_do_not_depend_on_the_frames_order_or_repeated_times() -> None:
    near = edited(LISTED, 12, seed=2603)
    upload = []
    for s, f in enumerate(near):
        upload += [replace(f, timestamp=s + 0.3), replace(OTHERS[s], timestamp=s + 0.6)]
        upload.append(replace(OTHERS[s], timestamp=s + 0.6))  # the same frame twice
    shuffled = upload[:]
    random.Random(26).shuffle(shuffled)
    want = match_percentages(upload, LISTED, slot_seconds=1.0)
    assert want == (100.0, 100.0)
    assert match_percentages(shuffled, LISTED, slot_seconds=1.0) == want
    assert len(query_units(shuffled, slot_seconds=1.0)[1]) == 10


def test_one_slot_of_thousands_of_unrelated_frames_matches_nothing(served: Served) -> None:
    """Many tries in one slot: 30,000 unrelated frames at one time are one unit that
    matches only if one of them is within the distance of a listed frame."""
    many = synthetic_video(30_000, seed=2604)
    one_slot = [replace(f, timestamp=0.0) for f in many]
    with served.client("checker") as client:
        verdict = client.check_video(one_slot, slot_seconds=60.0)
        assert not verdict.matched and verdict.frames_matched_on == 1
        # ... and one frame of a listed video among them is a match: that is the rule.
        hit = client.check_video([*one_slot, replace(LISTED[3], timestamp=0.0)], slot_seconds=60)
        assert hit.matched


def test_a_walk_hidden_in_one_slot_is_throttled_as_probing(served: Served) -> None:
    """A key hiding a walk around a hash in one-slot checks (each check asking 'is any of
    these within reach?') is seen by the probing watch, as a walk in plain checks is."""
    centre = bytes.fromhex(synthetic_video(1, seed=2605)[0].pdq)
    with served.client("walker") as client, pytest.raises(grpc.RpcError) as info:
        for n in range(250):
            walk = walk_around(centre, 30, seed=2700 + n)
            client.check_video([VideoFrame(h.hex(), 90, 0.5) for h in walk], slot_seconds=1.0)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_match_only_key_learns_no_shares_from_a_phased_check(served: Served) -> None:
    near = edited(LISTED, 12, seed=2606)
    upload = [replace(f, timestamp=s + 0.4) for s, f in enumerate(near)]
    channel, stub = served.stub("blind")
    with channel:
        answer = stub.CheckVideo(
            match_pb2.VideoCheckRequest(
                frames=[frame_message(f) for f in upload], slot_seconds=1.0
            ),
            metadata=served.metadata("blind"),
            timeout=30,
        )
    assert answer.matched
    for m in answer.matches:
        assert not m.HasField("query_match_percent")
        assert not m.HasField("compared_match_percent")


def test_a_phased_check_is_charged_each_frame_as_a_plain_check_is(served: Served) -> None:
    """One slot of 60 frames is one unit of the query but 60 searches: charged 60, so two
    such checks overdraw a bucket of 100 as two plain checks of 60 frames do."""
    frames = synthetic_video(60, seed=2607)
    one_slot = [replace(f, timestamp=0.5) for f in frames]
    with served.client("rated") as client:
        for slot in (None, 1.0):
            assert not client.check_video(one_slot, slot_seconds=slot).matched
            with pytest.raises(grpc.RpcError) as info:
                client.check_video(one_slot, slot_seconds=slot)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            time.sleep(2.5)  # the bucket refills


# Scaled frames: a hostile uploader with a list-manage key.

UNRELATED = synthetic_video(10, seed=2610)  # an upload no list should match


def interleaved(plain: list[VideoFrame], scaled: list[VideoFrame]) -> list[VideoFrame]:
    """A listing as hash_video(scaled=True) makes it: each frame, then its scaled frame."""
    return [
        g
        for p, s in zip(plain, scaled, strict=True)
        for g in (p, replace(s, timestamp=p.timestamp, scaled=True))
    ]


@pytest.fixture(scope="module")
def lister(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("attack26-scaled")
    url = f"sqlite:///{work / 'store.db'}"
    store = open_store(url)
    store.create_list("up")
    store.close()
    keys = {"checker": key("check"), "lister": key("list-manage", "submit")}
    with serving_store(work, url, keys=keys) as running:
        yield Served(running)


def _submission(served: Served) -> SubmissionClient:
    creds = Credentials(api_key=served.running.tokens["lister"])
    return SubmissionClient(served.running.proc.address, credentials=creds)


@pytest.mark.parametrize(
    "hidden",
    [
        # One plain frame with nothing to match on, and an unrelated video's frames
        # flagged scaled at times of no frame of the listing.
        [VideoFrame(LISTED[0].pdq, 0, 0.0)] + [replace(u, scaled=True) for u in UNRELATED],
        # Each scaled frame beside a plain one, but no plain frame is matched on.
        interleaved([replace(f, quality=10) for f in LISTED], UNRELATED),
        # One plain frame matched on, and the rest of the matching hidden behind frames
        # of quality 0.
        [LISTED[0], *interleaved([replace(f, quality=0) for f in LISTED[1:]], UNRELATED[1:])],
    ],
    ids=["unpaired", "nothing-plain-to-match", "hidden-behind-quality-0"],
)
def test_a_listing_cannot_match_by_frames_its_export_hides(
    lister: Served, hidden: list[VideoFrame]
) -> None:
    """Scaled frames are never exported: a listing whose matched frames are all scaled (or
    scaled frames of no frame of the video) would match uploads its vPDQ export says
    nothing of. Each scaled frame must follow a frame of the video matched on, at its
    time, so a listing hides no more frames than its export shows."""
    with _submission(lister) as sub:
        report = sub.upload("up", [video_entry(hidden)])
        assert (report.added, report.refused) == (0, 1)
    time.sleep(0.3)
    with lister.client("checker") as client:
        assert not client.check_video(UNRELATED).matched


def test_a_removed_or_withdrawn_listing_stops_matching_by_its_scaled_frames_too(
    lister: Served,
) -> None:
    plain = synthetic_video(10, seed=2611)
    small = edited(plain, 70, seed=2612)  # its scaled frames: far from the plain ones
    halved = edited(small, 8, seed=2613)  # a downscaled copy: near the scaled frames only
    listing = interleaved(plain, small)
    with _submission(lister) as sub, lister.client("checker") as client:
        assert not client.check_video(halved).matched
        assert sub.upload("up", [video_entry(listing)]).added == 1
        time.sleep(0.5)
        assert client.check_video(halved).matched
        # Removed by its vPDQ frames (what an export gives a list manager): all of it goes.
        assert sub.remove("up", [(VPDQ, video_digest(pack_frames(plain)))]) == 1
        assert not client.check_video(halved).matched
        assert not client.check_video(plain).matched
        # A victim's case of it, withdrawn: the same.
        receipt = sub.submit_case([video_entry(listing)])
        assert client.check_video(halved).matched
        assert sub.withdraw(receipt.case_id, receipt.withdrawal_secret) == 1
        assert not client.check_video(halved).matched


def test_an_exact_copy_meets_all_of_a_scaled_listing_as_of_its_plain_one(lister: Served) -> None:
    """The compared share of a video listed with scaled frames is its plain vPDQ's (what
    pytx measures on its export) or its scaled frames', the more met: an exact copy meets
    all of it, and so does a downscaled one; half the video meets half."""
    plain = synthetic_video(10, seed=2614)
    small = edited(plain, 70, seed=2615)
    listing = interleaved(plain, small)
    halved = edited(small, 8, seed=2616)
    assert match_percentages(plain, plain) == (100.0, 100.0)
    assert match_percentages(plain, listing) == (100.0, 100.0)
    assert match_percentages(halved, listing) == (100.0, 100.0)
    assert match_percentages(plain[:5], listing) == (100.0, 50.0)
    with _submission(lister) as sub, lister.client("checker") as client:
        assert sub.upload("up", [video_entry(listing)]).added == 1
        time.sleep(0.5)
        for copy in (plain, halved):
            verdict = client.check_video(copy, compared_match_percent=100)
            assert verdict.matched, verdict
            assert verdict.matches[0].compared_match_percent == 100
        (m,) = client.check_video(plain[:5]).matches
        assert m.compared_match_percent == 50


def test_a_video_fading_to_black_hashed_for_listing_is_listable(tmp_path: Path) -> None:
    """The listing rule refuses no honest listing: hash_video(scaled=True) pairs scaled
    frames only with plain frames matched on, dark frames of a fade included."""
    frames = list(scene(stills(3, seed=0), "pan", size=(320, 240), seconds=6))
    n = len(frames)
    dim = [
        (f * (0.02 + 0.98 * abs(1 - 2 * i / n)) ** 3).astype(np.uint8) for i, f in enumerate(frames)
    ]
    write_video(tmp_path / "fade.mp4", dim)
    listed = hash_video(tmp_path / "fade.mp4", scaled=True)
    assert min(f.quality for f in listed) < 50 and any(f.scaled for f in listed)
    plain = {f.timestamp: f.quality for f in listed if not f.scaled}
    assert all(plain[f.timestamp] >= 50 for f in listed if f.scaled)
    assert listing_problem(listed) is None


def test_a_snapshot_built_or_compacted_keeps_the_scaled_listings_compared_share(
    tmp_path: Path,
) -> None:
    """The plain and scaled frames' counts survive a fresh build and a compaction (the
    index keeps which rows are scaled), so a restarted server answers as the live one."""
    from hashmatch.wire import video_check_request
    from indexer.build import build_snapshot, compact_snapshot
    from indexer.snapshot import read_snapshot
    from service.matcher import Matcher
    from service.video_checking import parse_video, videos

    plain, added = synthetic_video(10, seed=2617), synthetic_video(10, seed=2618)
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.add_entries("v", [video_entry(interleaved(plain, edited(plain, 70, seed=2619)))])
        build_snapshot(store, tmp_path / "index")
        base = read_snapshot(tmp_path / "index")
        store.add_entries("v", [video_entry(interleaved(added, edited(added, 70, seed=2620)))])
        compact_snapshot(base, store.changes(base.last_seq, 100), tmp_path / "index")
        build_snapshot(store, tmp_path / "fresh")
    finally:
        store.close()
    for root in ("index", "fresh"):
        matcher = Matcher.of(read_snapshot(tmp_path / root))
        for video in (plain, added, plain[:5]):
            query = parse_video(video_check_request(video), match_only=False)
            (v,) = videos(matcher.check(query.frames), query)
            assert v.compared_match == (50 if video == plain[:5] else 100), root
