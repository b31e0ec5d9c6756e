"""Fuzzing every request handler over real gRPC, with keys required as in production:
whatever arrives, the answer is a clear status (never UNKNOWN or INTERNAL, never a
crash) and the server keeps serving."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hashmatch.channel import Credentials, open_channel
from hashmatch.demo.serve_process import ServerProcess, running_server
from hashmatch.signals import SIGNALS
from hashmatch.v1 import (
    feedback_pb2,
    feedback_pb2_grpc,
    match_pb2,
    match_pb2_grpc,
    submission_pb2,
    submission_pb2_grpc,
    sync_pb2,
    sync_pb2_grpc,
)
from service.queries import (
    InvalidRequest,
    ParsedQuery,
    parse_hex_queries,
    parse_query,
    parse_request,
)
from tests.hostile_hex import spaced_hex
from tests.test_security import key

CLEAR = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
FUZZ = settings(
    max_examples=int(os.environ.get("HASHMATCH_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

signals = st.one_of(
    st.sampled_from(["pdq", "phash", "dhash", "ahash", "whash", "md5", "sha256", "PDQ", ""]),
    st.text(max_size=12),
)
hashes = st.binary(max_size=40)
hexes = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEF", max_size=70),
    st.text(max_size=70),
    # The shape that once decoded to a short hash; generic text almost never draws it.
    st.sampled_from(sorted({s.nbytes for s in SIGNALS.values()})).flatmap(spaced_hex),
)


@st.composite
def queries(draw: st.DrawFn) -> match_pb2.Query:
    q = match_pb2.Query(signal=draw(signals))
    which = draw(st.sampled_from(["hash", "hex", None]))
    if which == "hash":
        q.hash = draw(hashes)
    elif which == "hex":
        q.hex = draw(hexes)
    if draw(st.booleans()):
        q.max_distance = draw(st.integers(0, 2**32 - 1))
    return q


@settings(max_examples=500, deadline=None)
@given(st.lists(queries(), min_size=1, max_size=20))
def test_request_fast_path_agrees_with_the_full_parser(batch: list[match_pb2.Query]) -> None:
    """parse_request's shortcut for well-formed raw hashes gives what parse_query gives,
    and anything else still gets parse_query's message."""
    request = match_pb2.CheckRequest(queries=batch)
    expected: list[ParsedQuery] | str = []
    try:
        expected = [parse_query(i, q) for i, q in enumerate(request.queries)]
    except InvalidRequest as exc:
        expected = str(exc)
    try:
        assert parse_request(request) == expected
    except InvalidRequest as exc:
        assert str(exc) == expected


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(signals, hexes), max_size=20))
def test_hex_text_queries_parse_as_query_messages_do(pairs: list[tuple[str, str]]) -> None:
    """The JSON API's (signal, hex) pairs, parsed without a message each, are the same
    queries as their Query messages, or the same refusal word for word."""
    queries = [match_pb2.Query(signal=signal, hex=text) for signal, text in pairs]
    try:
        expected: list[ParsedQuery] | str = parse_request(match_pb2.CheckRequest(queries=queries))
    except InvalidRequest as exc:
        expected = str(exc)
    try:
        assert parse_hex_queries(pairs) == expected
    except InvalidRequest as exc:
        assert str(exc) == expected


@st.composite
def hash_batches(draw: st.DrawFn) -> match_pb2.HashBatch:
    batch = match_pb2.HashBatch(signal=draw(signals), hashes=draw(st.binary(max_size=200)))
    if draw(st.booleans()):
        batch.max_distance = draw(st.integers(0, 2**32 - 1))
    return batch


@settings(max_examples=300, deadline=None)
@given(
    signal=st.sampled_from(sorted(SIGNALS)),
    count=st.integers(1, 40),
    seed=st.binary(min_size=1, max_size=8),
    max_distance=st.one_of(st.none(), st.integers(0, 300)),
)
def test_a_packed_batch_parses_as_its_queries_do(
    signal: str, count: int, seed: bytes, max_distance: int | None
) -> None:
    """The same hashes, packed or one Query each, are the same queries, or the same
    refusal (but for where it says the problem is)."""
    size = SIGNALS[signal].nbytes
    raw = (seed * (count * size))[: count * size]
    queries = [
        match_pb2.Query(signal=signal, hash=raw[i : i + size]) for i in range(0, len(raw), size)
    ]
    batch = match_pb2.HashBatch(signal=signal, hashes=raw)
    if max_distance is not None:
        batch.max_distance = max_distance
        for q in queries:
            q.max_distance = max_distance
    try:
        expected: list[ParsedQuery] | str = parse_request(match_pb2.CheckRequest(queries=queries))
    except InvalidRequest as exc:
        expected = str(exc).replace("query 0", "batch")
    try:
        assert parse_request(match_pb2.CheckRequest(batch=batch)) == expected
    except InvalidRequest as exc:
        assert str(exc) == expected


@FUZZ
@given(batch=hash_batches(), with_queries=st.booleans())
def test_check_packed(
    channel: grpc.Channel, batch: match_pb2.HashBatch, with_queries: bool
) -> None:
    stub = match_pb2_grpc.MatchServiceStub(channel)
    request = match_pb2.CheckRequest(batch=batch)
    if with_queries:
        request.queries.add(signal="pdq", hash=bytes(32))
    clear(lambda: stub.Check(request, timeout=10))
    clear(lambda: list(stub.CheckStream(iter([request, request]), timeout=10)))


@st.composite
def entries(draw: st.DrawFn) -> submission_pb2.HashEntry:
    e = submission_pb2.HashEntry(signal=draw(signals), source_ref=draw(st.text(max_size=20)))
    if draw(st.booleans()):
        e.hash = draw(hashes)
    else:
        e.hex = draw(hexes)
    if draw(st.booleans()):
        e.quality = draw(st.integers(-(2**31), 2**31 - 1))
    return e


names = st.one_of(st.sampled_from(["", "fuzz", "victim-cases", " x "]), st.text(max_size=30))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A server requiring keys, as in production (the probing and rate guards only see
    keyed callers), and an admin key for it, so that every handler is reached."""
    tmp = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{tmp / 'store.db'}"
    with running_server(tmp / "index", "--store", url) as proc:
        token = key(url, "admin", rate=1e9)
        with open_channel(proc.address, Credentials(api_key=token)) as ch:
            submission_pb2_grpc.SubmissionServiceStub(ch).CreateList(
                submission_pb2.CreateListRequest(name="fuzz")
            )
        yield proc, token


@pytest.fixture(scope="module")
def channel(served: tuple[ServerProcess, str]) -> Iterator[grpc.Channel]:
    proc, token = served
    with open_channel(proc.address, Credentials(api_key=token)) as ch:
        yield ch


def clear(call: object) -> None:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as exc:
        assert exc.code() in CLEAR, f"{exc.code()}: {exc.details()}"
        assert exc.details(), "a refusal must say why"


@FUZZ
@given(batch=st.lists(queries(), max_size=30))
def test_check(channel: grpc.Channel, batch: list[match_pb2.Query]) -> None:
    """Whatever one request holds, the same key's next honest check is answered."""
    stub = match_pb2_grpc.MatchServiceStub(channel)
    request = match_pb2.CheckRequest(queries=batch)
    clear(lambda: stub.Check(request, timeout=10))
    clear(lambda: list(stub.CheckStream(iter([request, request]), timeout=10)))
    for signal in SIGNALS.values():
        honest = match_pb2.Query(signal=signal.name, hash=bytes(range(signal.nbytes)))
        stub.Check(match_pb2.CheckRequest(queries=[honest]), timeout=10)


@st.composite
def with_spaced_hex(
    draw: st.DrawFn, make: type[match_pb2.Query] | type[submission_pb2.HashEntry]
) -> tuple[list[Any], list[int]]:
    """(messages, positions): well-formed hashes of every signal, raw or hex, with the
    spaced shape at some positions; a random batch almost always fails earlier."""
    signal = draw(st.sampled_from(sorted(SIGNALS.values(), key=lambda s: s.name)))
    n = draw(st.integers(1, 20))
    spaced = sorted(draw(st.sets(st.integers(0, n - 1), min_size=1)))
    messages = []
    for i in range(n):
        if i in spaced:
            messages.append(make(signal=signal.name, hex=draw(spaced_hex(signal.nbytes))))
        else:
            raw = draw(st.binary(min_size=signal.nbytes, max_size=signal.nbytes))
            messages.append(
                make(signal=signal.name, hash=raw)
                if draw(st.booleans())
                else make(signal=signal.name, hex=raw.hex())
            )
    return messages, spaced


@st.composite
def video_frames(draw: st.DrawFn) -> match_pb2.VideoFrame:
    frame = match_pb2.VideoFrame(
        quality=draw(st.integers(0, 2**32 - 1)),
        timestamp=draw(st.floats(allow_nan=True, allow_infinity=True)),
    )
    which = draw(st.sampled_from(["hash", "hex", None]))
    if which == "hash":
        frame.hash = draw(hashes)
    elif which == "hex":
        frame.hex = draw(hexes)
    return frame


@FUZZ
@given(
    frames=st.lists(video_frames(), max_size=20),
    shares=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=2, max_size=2),
    distance=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    listed=st.booleans(),
)
def test_videos(
    channel: grpc.Channel,
    frames: list[match_pb2.VideoFrame],
    shares: list[float],
    distance: int | None,
    listed: bool,
) -> None:
    """Whatever frames and thresholds a video check or a listed video holds, the answer is
    clear, nothing bad is stored, and the next honest video check is answered."""
    stub = match_pb2_grpc.MatchServiceStub(channel)
    request = match_pb2.VideoCheckRequest(
        frames=frames, query_match_percent=shares[0], compared_match_percent=shares[1]
    )
    if distance is not None:
        request.max_distance = distance
    clear(lambda: stub.CheckVideo(request, timeout=10))
    if listed:
        entry = submission_pb2.HashEntry(signal="vpdq", video=submission_pb2.Video(frames=frames))
        upload = submission_pb2.UploadRequest(list="fuzz", entries=[entry])
        feed = submission_pb2_grpc.SubmissionServiceStub(channel)
        clear(lambda: feed.Upload(iter([upload]), timeout=10))
    honest = match_pb2.VideoFrame(hash=bytes(range(32)), quality=90, timestamp=1.5)
    stub.CheckVideo(match_pb2.VideoCheckRequest(frames=[honest]), timeout=10)


@FUZZ
@given(drawn=with_spaced_hex(match_pb2.Query))
def test_check_spaced_hex(
    channel: grpc.Channel, drawn: tuple[list[match_pb2.Query], list[int]]
) -> None:
    """The first spaced query is named, and the same key's honest checks still work."""
    batch, spaced = drawn
    stub = match_pb2_grpc.MatchServiceStub(channel)
    request = match_pb2.CheckRequest(queries=batch)
    for call in (
        lambda: stub.Check(request, timeout=10),
        lambda: list(stub.CheckStream(iter([request]), timeout=10)),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert str(info.value.details()).startswith(f"query {spaced[0]}: ")
        assert "not hex: contains" in str(info.value.details())
    signal = SIGNALS[batch[0].signal]
    honest = match_pb2.Query(signal=signal.name, hash=bytes(range(signal.nbytes)))
    stub.Check(match_pb2.CheckRequest(queries=[honest]), timeout=10)


@FUZZ
@given(drawn=with_spaced_hex(submission_pb2.HashEntry))
def test_upload_spaced_hex(
    channel: grpc.Channel, drawn: tuple[list[submission_pb2.HashEntry], list[int]]
) -> None:
    """Each spaced entry is refused alone, saying why; none of them reaches the list."""
    batch, spaced = drawn
    stub = submission_pb2_grpc.SubmissionServiceStub(channel)
    done = stub.Upload(iter([submission_pb2.UploadRequest(list="fuzz", entries=batch)]), timeout=10)
    why = {r.index: r.reason for r in done.refusals}
    assert set(spaced) <= set(why)
    assert all("not hex: contains" in why[i] for i in spaced)
    with pytest.raises(grpc.RpcError) as info:
        stub.SubmitCase(submission_pb2.SubmitCaseRequest(hashes=batch), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@FUZZ
@given(
    batch=st.lists(entries(), max_size=20), case=st.text(max_size=30), secret=st.text(max_size=40)
)
def test_cases(
    channel: grpc.Channel, batch: list[submission_pb2.HashEntry], case: str, secret: str
) -> None:
    stub = submission_pb2_grpc.SubmissionServiceStub(channel)
    clear(lambda: stub.SubmitCase(submission_pb2.SubmitCaseRequest(hashes=batch), timeout=10))
    request = submission_pb2.CaseRequest(case_id=case, withdrawal_secret=secret)
    clear(lambda: stub.Withdraw(request, timeout=10))
    clear(lambda: stub.CaseStatus(request, timeout=10))


@FUZZ
@given(
    name=names,
    owner=st.text(max_size=20),
    trust=st.one_of(
        st.sampled_from(["verified", "unverified", "victim", ""]), st.text(max_size=10)
    ),
    batches=st.lists(st.tuples(names, st.lists(entries(), max_size=10)), max_size=4),
    match_id=st.text(max_size=30),
    after=st.integers(0, 2**64 - 1),
)
@example(name="fuzz", owner="D", trust="verified", batches=[], match_id="", after=2**63)
def test_lists_and_sync(
    channel: grpc.Channel,
    name: str,
    owner: str,
    trust: str,
    batches: list[tuple[str, list[submission_pb2.HashEntry]]],
    match_id: str,
    after: int,
) -> None:
    stub = submission_pb2_grpc.SubmissionServiceStub(channel)
    clear(
        lambda: stub.CreateList(
            submission_pb2.CreateListRequest(name=name, owner=owner, trust=trust), timeout=10
        )
    )
    clear(lambda: stub.GetList(submission_pb2.GetListRequest(name=name), timeout=10))
    uploads = [submission_pb2.UploadRequest(list=n, entries=e) for n, e in batches]
    clear(lambda: stub.Upload(iter(uploads), timeout=10))
    removal = submission_pb2.RemoveEntriesRequest(
        list=name, entries=batches[0][1] if batches else []
    )
    clear(lambda: stub.RemoveEntries(removal, timeout=10))
    confirm = submission_pb2.ConfirmEntryRequest(list=name, match_id=match_id)
    clear(lambda: stub.ConfirmEntry(confirm, timeout=10))
    pull = sync_pb2_grpc.SyncServiceStub(channel)
    clear(lambda: list(pull.Pull(sync_pb2.PullRequest(list=name, after_seq=after), timeout=10)))


METHODS = [
    ("/hashmatch.v1.MatchService/Check", "unary"),
    ("/hashmatch.v1.MatchService/CheckStream", "stream_stream"),
    ("/hashmatch.v1.MatchService/CheckVideo", "unary"),
    ("/hashmatch.v1.SubmissionService/SubmitCase", "unary"),
    ("/hashmatch.v1.SubmissionService/Withdraw", "unary"),
    ("/hashmatch.v1.SubmissionService/CaseStatus", "unary"),
    ("/hashmatch.v1.SubmissionService/CreateList", "unary"),
    ("/hashmatch.v1.SubmissionService/GetList", "unary"),
    ("/hashmatch.v1.SubmissionService/Upload", "stream_unary"),
    ("/hashmatch.v1.SubmissionService/RemoveEntries", "unary"),
    ("/hashmatch.v1.SubmissionService/ConfirmEntry", "unary"),
    ("/hashmatch.v1.SyncService/Pull", "unary_stream"),
    ("/hashmatch.v1.FeedbackService/Report", "unary"),
    ("/hashmatch.v1.FeedbackService/Review", "unary"),
    ("/hashmatch.v1.FeedbackService/Decide", "unary"),
    ("/hashmatch.v1.FeedbackService/PullFeedback", "unary_stream"),
]


@FUZZ
@given(
    list_name=names,
    match_id=st.one_of(st.text(max_size=30), st.text(alphabet="0123456789abcdef", max_size=26)),
    decision=st.one_of(st.sampled_from(["confirm", "remove", "keep"]), st.text(max_size=10)),
)
def test_review_and_decisions(
    channel: grpc.Channel, list_name: str, match_id: str, decision: str
) -> None:
    stub = feedback_pb2_grpc.FeedbackServiceStub(channel)
    clear(lambda: stub.Review(feedback_pb2.ReviewRequest(list=list_name), timeout=10))
    request = feedback_pb2.DecideRequest(list=list_name, match_id=match_id, decision=decision)
    clear(lambda: stub.Decide(request, timeout=10))


@FUZZ
@given(method=st.sampled_from(METHODS), payload=st.binary(max_size=200))
def test_raw_bytes_and_invalid_utf8(
    channel: grpc.Channel, method: tuple[str, str], payload: bytes
) -> None:
    """Messages no protobuf library would build: invalid UTF-8, bad wire format."""
    path, kind = method
    if kind == "unary":
        call = channel.unary_unary(path)
        clear(lambda: call(payload, timeout=10))
    elif kind == "unary_stream":
        stream = channel.unary_stream(path)
        clear(lambda: list(stream(payload, timeout=10)))
    elif kind == "stream_unary":
        upload = channel.stream_unary(path)
        clear(lambda: upload(iter([payload, payload]), timeout=10))
    else:
        both = channel.stream_stream(path)
        clear(lambda: list(both(iter([payload]), timeout=10)))


def test_huge_batches_and_the_server_still_serves(channel: grpc.Channel) -> None:
    stub = match_pb2_grpc.MatchServiceStub(channel)
    huge = match_pb2.CheckRequest(queries=[match_pb2.Query(signal="pdq", hash=bytes(32))] * 10_001)
    with pytest.raises(grpc.RpcError) as info:
        stub.Check(huge, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    too_big = match_pb2.CheckRequest(queries=[match_pb2.Query(signal="pdq", hex="ab" * 10**6)] * 20)
    with pytest.raises(grpc.RpcError) as info:
        stub.Check(too_big, timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # over the message limit
    ok = stub.Check(
        match_pb2.CheckRequest(queries=[match_pb2.Query(signal="pdq", hex="ab" * 32)]), timeout=10
    )
    assert len(ok.results) == 1
