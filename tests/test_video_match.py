"""vPDQ's matching rule against a plain transcription of python-threatexchange's: frames
of quality >= 50, distinct hashes (its index's order: filter, then dedupe), each counted
when any frame of the other video is within the distance, in both directions."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threatexchange.extensions.vpdq.vpdq import VPDQSignal

from hashmatch.video import VideoFrame
from hashmatch.video_match import is_match, match_percentages, query_units, slot_problem
from hashmatch.vpdq_formats import to_pytx

BASE = random.Random(7).getrandbits(256)


def frame(bits: int, quality: int = 100, t: float = 0.0) -> VideoFrame:
    return VideoFrame(f"{bits:064x}", quality, t)


def near(flips: int, seed: int) -> int:
    """BASE with `flips` of its bits flipped."""
    rng = random.Random(seed)
    out = BASE
    for bit in rng.sample(range(256), flips):
        out ^= 1 << bit
    return out


def pytx_brute(
    query: list[VideoFrame], listed: list[VideoFrame], threshold: int
) -> tuple[float, float]:
    def usable(frames: list[VideoFrame]) -> list[int]:
        seen: dict[str, None] = {}
        for f in frames:
            seen.setdefault(f.pdq)
        return [int(h, 16) for h in seen if any(f.pdq == h and f.quality >= 50 for f in frames)]

    q, c = usable(query), usable(listed)
    if not q or not c:
        return 0.0, 0.0

    def found(a: list[int], b: list[int]) -> int:
        return sum(any((x ^ y).bit_count() <= threshold for y in b) for x in a)

    return found(q, c) * 100 / len(q), found(c, q) * 100 / len(c)


frames_st = st.lists(
    st.builds(
        frame,
        st.one_of(st.integers(0, 2**256 - 1), st.builds(near, st.integers(0, 60), st.integers())),
        st.sampled_from([0, 49, 50, 100]),
    ),
    max_size=25,
)


@settings(deadline=None)
@given(frames_st, frames_st, st.integers(0, 64))
def test_percentages_are_pytx_brute_matchers(
    query: list[VideoFrame], listed: list[VideoFrame], threshold: int
) -> None:
    assert match_percentages(query, listed, threshold) == pytest.approx(
        pytx_brute(query, listed, threshold)
    )


def test_threshold_is_inclusive_at_31() -> None:
    listed = [frame(BASE)]
    assert match_percentages([frame(near(31, 1))], listed) == (100.0, 100.0)
    assert match_percentages([frame(near(32, 1))], listed) == (0.0, 0.0)


def test_low_quality_frames_are_kept_but_never_matched() -> None:
    query = [frame(BASE, 49), frame(near(40, 2), 100)]
    assert match_percentages(query, [frame(BASE, 100)]) == (0.0, 0.0)
    assert match_percentages([frame(BASE, 100)], [frame(BASE, 49)]) == (0.0, 0.0)


def test_repeated_frames_count_once() -> None:
    query = [frame(BASE, 100, t) for t in range(9)] + [frame(near(100, 3))]
    assert match_percentages(query, [frame(BASE)]) == (50.0, 100.0)


def test_default_decision_is_80_percent_of_the_query() -> None:
    assert is_match((80.0, 0.0)) and not is_match((79.9, 100.0))
    assert not is_match((100.0, 10.0), compared_percent=20.0)


def test_long_videos_are_compared_in_bounded_blocks() -> None:
    rng = random.Random(5)
    listed = [frame(rng.getrandbits(256), 100, float(i)) for i in range(3000)]
    query = listed[::3] + [frame(rng.getrandbits(256)) for _ in range(250)]
    q, c = match_percentages(query, listed)
    assert q == pytest.approx(100 * 1000 / 1250) and c == pytest.approx(100 / 3)


@settings(deadline=None)
@given(frames_st, frames_st)
def test_agrees_with_pytx_compare_hash_where_its_two_orders_agree(
    query: list[VideoFrame], listed: list[VideoFrame]
) -> None:
    """pytx's own VPDQSignal.compare_hash (dedupe, then filter); the same when a hash has
    one quality, which a frame's hash always has; pytx divides by zero on no usable frame."""
    quality = {f.pdq: f.quality for f in query + listed}
    query = [VideoFrame(f.pdq, quality[f.pdq], f.timestamp) for f in query]
    listed = [VideoFrame(f.pdq, quality[f.pdq], f.timestamp) for f in listed]
    ours = match_percentages(query, listed)
    if ours == (0.0, 0.0) and not (
        any(f.quality >= 50 for f in query) and any(f.quality >= 50 for f in listed)
    ):
        return
    result = VPDQSignal.compare_hash(to_pytx(query), to_pytx(listed))
    assert (
        result.distance.query_match_percent,
        result.distance.compared_match_percent,
    ) == pytest.approx(ours)
    assert result.match == is_match(ours)


def slotted(query: list[VideoFrame], per_slot: float = 1.0) -> list[VideoFrame]:
    """The query's frames, the k-th at k seconds: one frame a slot."""
    return [VideoFrame(f.pdq, f.quality, k * per_slot) for k, f in enumerate(query)]


@settings(deadline=None)
@given(frames_st, frames_st, st.integers(0, 64))
def test_slots_of_one_frame_each_are_pytxs_rule(
    query: list[VideoFrame], listed: list[VideoFrame], threshold: int
) -> None:
    """A plain hash checked with slots (one frame a second, slots of 1 s) is answered as
    without them: the phased rule only widens what a slot of several frames matches."""
    one_each = slotted(query)
    assert match_percentages(one_each, listed, threshold, slot_seconds=1.0) == pytest.approx(
        pytx_brute(query, listed, threshold)
    )


def test_a_slot_matches_when_any_of_its_frames_does() -> None:
    """Five seconds at four phases, one phase of each near a listed frame: each second
    matches, though a quarter of the frames do; the listed side counts its own frames."""
    rng = random.Random(11)
    listed = [frame(rng.getrandbits(256), t=float(s)) for s in range(5)]
    query = []
    for s, f in enumerate(listed):
        query.append(VideoFrame(f.pdq, 100, s + 0.5))
        query += [frame(rng.getrandbits(256), t=s + 0.5 + k / 8) for k in range(1, 4)]
    assert match_percentages(query, listed) == (25.0, 100.0)
    assert match_percentages(query, listed, slot_seconds=1.0) == (100.0, 100.0)
    # Slots of 2 s hold two seconds' frames: three slots, each matched.
    assert query_units(query, slot_seconds=2.0)[1] == [
        tuple(range(0, 8)),
        tuple(range(8, 16)),
        tuple(range(16, 20)),
    ]
    # A slot with no frame near the listed video is one unmatched frame of the query.
    other = [frame(rng.getrandbits(256), t=5.0 + k / 4) for k in range(4)]
    shares = match_percentages(query + other, listed, slot_seconds=1.0)
    assert shares == pytest.approx((100 * 5 / 6, 100.0))


def test_slots_count_a_held_still_once_and_ignore_low_quality_frames() -> None:
    still = [frame(BASE, t=float(s)) for s in range(8)]
    units = query_units([*still, frame(near(100, 4), 40, 9.0)], slot_seconds=1.0)
    assert units == ([f"{BASE:064x}"], [(0,)])
    assert match_percentages([*still, frame(near(100, 4), t=9.0)], [frame(BASE)], slot_seconds=1.0)[
        0
    ] == pytest.approx(50.0)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), 60.5, 1e300])
def test_a_slot_must_be_positive_finite_and_at_most_a_minute(bad: float) -> None:
    assert slot_problem(bad) is not None and "slot_seconds" in str(slot_problem(bad))
    with pytest.raises(ValueError, match="slot_seconds"):
        match_percentages([frame(BASE)], [frame(BASE)], slot_seconds=bad)
    assert slot_problem(60.0) is None and slot_problem(1e-3) is None
