"""vPDQ's two text forms: golden files written from the published formats (pytx's
`f"{t:.3}"` timestamps in a JSON array; the C++ tool's `frame,quality,hash,%.3f` lines),
round trips, and every malformed shape refused with the item or line it is on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threatexchange.extensions.vpdq.vpdq import VPDQSignal
from threatexchange.extensions.vpdq.vpdq_util import VpdqCompactFeature, json_to_vpdq, vpdq_to_json

from hashmatch import bounds
from hashmatch.video import VideoFrame
from hashmatch.vpdq_formats import (
    MAX_CPP_CHARS,
    MAX_PYTX_CHARS,
    VpdqFormatError,
    from_cpp_lines,
    from_pytx,
    to_cpp_lines,
    to_pytx,
)
from tests.hostile_hex import spaced_hex

GOLDEN = Path(__file__).parent / "golden"
A = "2d6b1af3a956c529e79ca3d2526fa834d4196c81cedd04de0a26b855fc99b724"
B = "bed7058ba2005a4b071bb8a4cc6278789fbc02cfcd30d1d73fa71673c67945d2"
C = "dc9c9d3b746978f888f40ce6e5c3f70f7266623e8d989cb99f21f2010841e1c7"
D = "32966e6bad6952d352e92d56add6526993292c96d36955692a96aa965569512b"

frames_st = st.lists(
    st.builds(
        VideoFrame,
        pdq=st.binary(min_size=32, max_size=32).map(bytes.hex),
        quality=st.integers(0, 100),
        timestamp=st.floats(0, bounds.MAX_VIDEO_SECONDS / 10, allow_nan=False),
    ),
    max_size=30,
)


def test_pytx_golden_file_reads_with_three_significant_digit_timestamps() -> None:
    text = (GOLDEN / "vpdq_pytx.json").read_text()
    frames = from_pytx(text)
    assert frames == [
        VideoFrame(A, 100, 0.0),
        VideoFrame(B, 87, 0.0333),
        VideoFrame(C, 45, 12.5),
        VideoFrame(D, 100, 100.0),
        VideoFrame(A, 99, 123.0),
        VideoFrame(B, 0, 1230.0),
    ]
    assert to_pytx(frames) == text  # pytx's own separators and number forms


def test_pytx_writes_what_pytx_writes_for_long_times() -> None:
    frames = [VideoFrame(A, 100, 1234.5), VideoFrame(B, 50, 1 / 30), VideoFrame(C, 7, 2)]
    assert json.loads(to_pytx(frames)) == [f"{A},100,1.23e+03", f"{B},50,0.0333", f"{C},7,2.0"]


def test_cpp_golden_file_reads_and_writes_its_line_shape() -> None:
    text = (GOLDEN / "vpdq_cpp.txt").read_text()
    frames = from_cpp_lines(text)
    assert frames == [
        VideoFrame(A, 100, 0.0),
        VideoFrame(B, 87, 1.0),
        VideoFrame(C, 45, 2.0),
        VideoFrame(D, 100, 3.0),
        VideoFrame(A, 0, 1234.5),
    ]
    written = to_cpp_lines(frames).splitlines()
    assert written[1] == f"1,87,{B},1.000"
    assert [line.split(",", 1)[1] for line in written] == [
        line.split(",", 1)[1] for line in text.splitlines()
    ]


def test_uppercase_hex_and_crlf_lines_are_read_and_written_lowercase() -> None:
    assert from_cpp_lines(f"0,90,{A.upper()},0.000\r\n\r\n")[0].pdq == A
    assert from_pytx(json.dumps([f"{A.upper()},90,0.0"]))[0].pdq == A


def test_empty_text_is_no_frames_as_in_pytx() -> None:
    assert from_pytx("") == from_pytx("[]") == from_cpp_lines("") == []


@settings(deadline=None)
@given(frames_st)
def test_pytx_round_trip_keeps_three_significant_digits(frames: list[VideoFrame]) -> None:
    text = to_pytx(frames)
    back = from_pytx(text)
    assert [(f.pdq, f.quality) for f in back] == [(f.pdq, f.quality) for f in frames]
    assert [f.timestamp for f in back] == [float(f"{f.timestamp:.3}") for f in frames]
    assert to_pytx(back) == text


@settings(deadline=None)
@given(frames_st)
def test_cpp_round_trip_keeps_milliseconds(frames: list[VideoFrame]) -> None:
    back = from_cpp_lines(to_cpp_lines(frames))
    assert [(f.pdq, f.quality) for f in back] == [(f.pdq, f.quality) for f in frames]
    assert [f.timestamp for f in back] == [float(f"{f.timestamp:.3f}") for f in frames]


def _pytx(*items: object) -> str:
    return json.dumps(list(items))


GOOD = f"{A},90,1.0"

PYTX_ATTACKS = [
    ("garbage", "malformed: Expecting value"),
    ('{"0": {"hash": "x"}}', "must be an array"),
    ('"a string"', "must be an array"),
    ("[" * 100_000 + "]" * 100_000, "malformed"),
    (_pytx(GOOD, 7), 'item 2: not a "hash,quality,timestamp" string'),
    (_pytx(GOOD, GOOD, f"{A},90"), "item 3: expected hash,quality,timestamp, got 2 fields"),
    (_pytx(f"{A},90,1.0,4"), "item 1: expected hash,quality,timestamp, got 4 fields"),
    (_pytx(f"{A[:-1]},90,1.0"), "item 1: pdq hash: expected 64 hex characters, got 63"),
    (_pytx(f"{A[:-1]}g,90,1.0"), "item 1: pdq hash: not hex: contains 'g' at position 63"),
    (_pytx(f"00 11 {'a5' * 29},90,1.0"), "item 1: pdq hash: not hex: contains ' ' at position 2"),
    (_pytx(f" {A},90,1.0"), "item 1: pdq hash: expected 64 hex characters, got 65"),
    (_pytx(f"{A},101,1.0"), "item 1: quality 101 is not an integer from 0 to 100"),
    (_pytx(f"{A},-1,1.0"), "item 1: quality '-1' is not an integer"),
    (_pytx(f"{A},+5,1.0"), "item 1: quality '+5' is not an integer"),
    (_pytx(f"{A}, 5,1.0"), "item 1: quality ' 5' is not an integer"),
    (_pytx(f"{A},5.0,1.0"), "item 1: quality '5.0' is not an integer"),
    (_pytx(f"{A},1000,1.0"), "item 1: quality '1000' is not an integer"),
    (_pytx(f"{A},\u0663,1.0"), "is not an integer"),  # an Arabic-Indic digit int() takes
    (_pytx(f"{A},90,nan"), "item 1: timestamp 'nan' is not a non-negative number"),
    (_pytx(f"{A},90,inf"), "item 1: timestamp 'inf' is not a non-negative number"),
    (_pytx(f"{A},90,-1.0"), "item 1: timestamp '-1.0' is not a non-negative number"),
    (_pytx(f"{A},90,1_0"), "item 1: timestamp '1_0' is not a non-negative number"),
    (_pytx(f"{A},90,1e999"), "item 1: timestamp inf is past"),
    (_pytx(f"{A},90,1e+08"), "item 1: timestamp 100000000.0 is past"),
    (_pytx(f"{A},90,"), "item 1: timestamp '' is not"),
    (_pytx(f"{A},90,{'1' * 200}"), "item 1: 268 characters, more than the 120"),
]


@pytest.mark.parametrize(("text", "message"), PYTX_ATTACKS)
def test_malformed_pytx_is_refused_naming_the_item(text: str, message: str) -> None:
    with pytest.raises(VpdqFormatError) as info:
        from_pytx(text)
    assert message in str(info.value)


CPP_ATTACKS = [
    ("garbage", "line 1: expected frameNumber,quality,hash,timestamp, got 1 fields"),
    (f"0,90,{A},1.000\n\n1,90,{A}\n", "line 3: expected frameNumber,quality,hash,timestamp, got 3"),
    (f"0,90,{A},1.000,extra", "line 1: expected frameNumber,quality,hash,timestamp, got 5"),
    (f"-1,90,{A},1.000", "line 1: frame number '-1' is not a count"),
    (f"x,90,{A},1.000", "line 1: frame number 'x' is not a count"),
    (f"0,90,{A[:40]} {A[41:]},1.000", "line 1: pdq hash: not hex: contains ' '"),
    (f"0,999,{A},1.000", "line 1: quality 999 is not an integer from 0 to 100"),
    (f"0,90,{A},-0.5", "line 1: timestamp '-0.5' is not a non-negative number"),
    (f"0,90,{A},NaN", "line 1: timestamp 'NaN' is not"),
    (f"0,90,{A},1.000\x00", "line 1: timestamp '1.000\\x00' is not"),
]


@pytest.mark.parametrize(("text", "message"), CPP_ATTACKS)
def test_malformed_cpp_lines_are_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(VpdqFormatError) as info:
        from_cpp_lines(text)
    assert message in str(info.value)


@settings(deadline=None)
@given(spaced_hex(32))
def test_spaced_hex_is_refused_in_both_forms(hex_text: str) -> None:
    with pytest.raises(VpdqFormatError, match="item 1: pdq hash"):
        from_pytx(_pytx(f"{hex_text},90,1.0"))
    # a line break inside the hex splits the line: then the field count is what's wrong
    with pytest.raises(VpdqFormatError, match="line 1: "):
        from_cpp_lines(f"0,90,{hex_text},1.000")


def test_huge_texts_are_refused_before_parsing() -> None:
    with pytest.raises(VpdqFormatError, match="more than the"):
        from_pytx(" " * (MAX_PYTX_CHARS + 1))
    with pytest.raises(VpdqFormatError, match="more than the"):
        from_cpp_lines("\n" * (MAX_CPP_CHARS + 1))


def test_more_frames_than_a_video_may_have_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import hashmatch.vpdq_formats as formats

    monkeypatch.setattr(formats, "MAX_VIDEO_FRAMES", 3)
    frames = [VideoFrame(A, 90, float(i)) for i in range(4)]
    assert len(from_pytx(to_pytx(frames[:3]))) == 3
    with pytest.raises(VpdqFormatError, match="more than 3 items"):
        from_pytx(to_pytx(frames))
    with pytest.raises(VpdqFormatError, match="more than 3 frames"):
        from_cpp_lines(to_cpp_lines(frames))


@settings(deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_frames_or_a_format_error(text: str) -> None:
    for parse in (from_pytx, from_cpp_lines):
        try:
            frames = parse(text)
        except VpdqFormatError:
            continue
        assert all(isinstance(f, VideoFrame) for f in frames)


@pytest.mark.parametrize(
    ("pdq", "quality", "timestamp", "message"),
    [
        (A.upper(), 90, 0.0, "64 lowercase hex"),
        (A[:-2], 90, 0.0, "64 lowercase hex"),
        (A, 101, 0.0, "quality 101"),
        (A, True, 0.0, "quality True"),
        (A, 90, float("nan"), "not a number"),
        (A, 90, -0.001, "negative"),
        (A, 90, float("inf"), "past"),
        (A, 90, "1.0", "not a number"),
    ],
)
def test_a_video_frame_is_valid_or_not_made(
    pdq: str, quality: int, timestamp: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        VideoFrame(pdq, quality, timestamp)


# python-threatexchange's own vPDQ extension (it loads with Meta's vpdq binding).


@settings(deadline=None)
@given(frames_st)
def test_real_pytx_reads_what_we_write_and_we_read_what_it_writes(
    frames: list[VideoFrame],
) -> None:
    ours = to_pytx(frames)
    assert VPDQSignal.validate_signal_str(ours) == ours
    features = json_to_vpdq(ours)
    assert [(f.pdq_hex, f.quality) for f in features] == [(f.pdq, f.quality) for f in frames]
    assert vpdq_to_json(features) == ours
    assert from_pytx(vpdq_to_json(features)) == from_pytx(ours)


def test_pytx_examples_read_and_write_back_unchanged() -> None:
    for example in VPDQSignal.get_examples():
        assert to_pytx(from_pytx(example)) == example


def test_we_refuse_no_frame_pytx_accepts_as_it_writes_it() -> None:
    """pytx is laxer (int() and float() take ' 5', 'nan', '1_0'); what it writes, we read."""
    features = [VpdqCompactFeature(A, q, t) for q, t in [(0, 0.0), (100, 1234.5), (50, 1e-4)]]
    assert [f.quality for f in from_pytx(vpdq_to_json(features))] == [0, 100, 50]
