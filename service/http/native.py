"""The JSON mirror of the gRPC API: the same messages in proto3's JSON mapping (field
names as in the .proto, fields with default values included), grpc-gateway style, so
there is one contract. A case's withdrawal secret travels in a header, never the URL."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from functools import partial
from itertools import chain
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.requests import Request

from hashmatch.v1 import feedback_pb2, match_pb2, submission_pb2
from hashmatch.wire import MAX_QUERIES_PER_REQUEST
from service import checking
from service.feedback import FeedbackServicer
from service.http.errors import HttpError
from service.http.face import Face
from service.http.text import unicode_text
from service.queries import InvalidRequest, ParsedQuery, parse_hex_queries
from service.submission import SubmissionServicer

SECRET_HEADER = "x-withdrawal-secret"
M = TypeVar("M", bound=Message)


def parse(body: Any, message: M) -> M:
    """A request message from its JSON form; unknown fields and wrong types are refused
    with the parser's account of them."""
    if not isinstance(body, dict):
        raise InvalidRequest(f"send a JSON object (a {message.DESCRIPTOR.name})")
    try:
        return json_format.ParseDict(body, message)
    except json_format.ParseError as exc:
        raise InvalidRequest(str(exc)[:500]) from None


def as_json(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return out


def _plain_queries(body: Any) -> list[ParsedQuery] | None:
    """The common shape, queries of signal and hex alone, parsed straight from the JSON
    (ParseDict walks each field in Python); None for any other shape, which goes
    through the general parser."""
    if not (
        isinstance(body, dict) and body.keys() == {"queries"} and isinstance(body["queries"], list)
    ):
        return None
    pairs: list[tuple[str, str]] = []
    append = pairs.append
    for q in body["queries"]:
        # Two keys, both found: exactly signal and hex.
        if type(q) is not dict or len(q) != 2:
            return None
        signal, text = q.get("signal"), q.get("hex")
        if type(signal) is not str or type(text) is not str:
            return None
        append((signal, text))
    if not "".join(chain.from_iterable(pairs)).isascii():
        for i, (signal, text) in enumerate(pairs):  # protobuf's setters take no surrogate
            unicode_text(signal, f"queries[{i}].signal")
            unicode_text(text, f"queries[{i}].hex")
    return parse_hex_queries(pairs)


def _refuse_long_arrays(body: Any) -> None:
    """Refuse a queries or images array past the batch limit by its length alone, before
    either parser builds a message of its items."""
    if not isinstance(body, dict):
        return
    for field in ("queries", "images"):
        items = body.get(field)
        if isinstance(items, list) and len(items) > MAX_QUERIES_PER_REQUEST:
            raise InvalidRequest(
                f"{field}: {len(items)} items exceed the limit of {MAX_QUERIES_PER_REQUEST}; "
                "split the batch"
            )


def check(face: Face, request: Request, body: Any) -> Any:
    caller = partial(face.caller, request)
    _refuse_long_arrays(body)
    queries = _plain_queries(body)
    if queries is None:
        version, n, with_hits, match_only = checking.check(
            face.batcher,
            face.guards,
            caller,
            parse(body, match_pb2.CheckRequest()),
            None,
            "http:Check",
        )
    else:
        # The plain shape has no max_distance and no images: nothing for check()'s
        # tightening and probing-group steps to do, so it goes straight to answer().
        who = caller("check")
        version, with_hits = checking.answer(
            face.batcher, face.guards, who, queries, None, "http:Check"
        )
        n, match_only = len(queries), who.match_only
    results: list[dict[str, Any]] = [
        {"matched": False, "matches": [], "capped": False} for _ in range(n)
    ]
    for i, hits, capped in with_hits:
        matches: list[dict[str, Any]] = [
            {"list": h.list, "match_id": h.match_id, "distance": h.distance, "variant": h.variant}
            for h in hits
        ]
        if match_only:  # the distance is absent, as over gRPC
            for m in matches:
                del m["distance"]
        results[i] = {"matched": bool(hits), "matches": matches, "capped": capped}
    # uint64 is a string in proto3's JSON mapping.
    return {"results": results, "snapshot_version": str(version)}


def _servicer(face: Face) -> SubmissionServicer:
    if face.submission is None:
        raise HttpError(503, "submissions and lists need a store: start the server with --store")
    return face.submission


def _run(servicer: Any, face: Face, request: Request, method: Any, role: str, message: Any) -> Any:
    """Run a gRPC handler of `servicer` (without its gRPC wrapper) for the request's caller."""
    handler: Callable[..., Message] = inspect.unwrap(method)
    return as_json(handler(servicer, message, None, face.caller(request, role)))


def _call(face: Face, request: Request, method: Any, role: str, message: Any) -> dict[str, Any]:
    """Run a SubmissionService handler for the request's caller."""
    result: dict[str, Any] = _run(_servicer(face), face, request, method, role, message)
    return result


def _call_feedback(face: Face, request: Request, method: Any, role: str, message: Any) -> Any:
    """Run a FeedbackService handler for the request's caller (served with the store too)."""
    _servicer(face)
    return _run(face.feedback, face, request, method, role, message)


def _case(request: Request) -> submission_pb2.CaseRequest:
    secret = request.headers.get(SECRET_HEADER)
    if not secret:
        raise InvalidRequest(f"send the case's withdrawal secret in the {SECRET_HEADER} header")
    return submission_pb2.CaseRequest(
        case_id=request.path_params["case_id"], withdrawal_secret=secret
    )


def submit_case(face: Face, request: Request, body: Any) -> Any:
    message = parse(body, submission_pb2.SubmitCaseRequest())
    return _call(face, request, SubmissionServicer.SubmitCase, "submit", message)


def case_status(face: Face, request: Request, body: Any) -> Any:
    return _call(face, request, SubmissionServicer.CaseStatus, "submit", _case(request))


def withdraw(face: Face, request: Request, body: Any) -> Any:
    return _call(face, request, SubmissionServicer.Withdraw, "submit", _case(request))


def create_list(face: Face, request: Request, body: Any) -> Any:
    message = parse(body, submission_pb2.CreateListRequest())
    return _call(face, request, SubmissionServicer.CreateList, "list-manage", message)


def get_list(face: Face, request: Request, body: Any) -> Any:
    message = submission_pb2.GetListRequest(name=request.path_params["name"])
    return _call(face, request, SubmissionServicer.GetList, "list-manage", message)


def _same_list(request: Request, given: str) -> str:
    name: str = request.path_params["name"]
    if given and given != name:
        raise InvalidRequest(f"the body names list {given[:200]!r}, the URL {name[:200]!r}")
    return name


def upload(face: Face, request: Request, body: Any) -> Any:
    message = parse(body, submission_pb2.UploadRequest())
    message.list = _same_list(request, message.list)
    requests: Iterator[submission_pb2.UploadRequest] = iter([message])
    return _call(face, request, SubmissionServicer.Upload, "list-manage", requests)


def remove_entries(face: Face, request: Request, body: Any) -> Any:
    message = parse(body, submission_pb2.RemoveEntriesRequest())
    message.list = _same_list(request, message.list)
    return _call(face, request, SubmissionServicer.RemoveEntries, "list-manage", message)


def confirm_entry(face: Face, request: Request, body: Any) -> Any:
    message = parse(body, submission_pb2.ConfirmEntryRequest())
    message.list = _same_list(request, message.list)
    return _call(face, request, SubmissionServicer.ConfirmEntry, "list-manage", message)


def report(face: Face, request: Request, body: Any) -> Any:
    message = parse(body, feedback_pb2.ReportRequest())
    return _call_feedback(face, request, FeedbackServicer.Report, "check", message)


def review(face: Face, request: Request, body: Any) -> Any:
    message = feedback_pb2.ReviewRequest(list=request.query_params.get("list", ""))
    return _call_feedback(face, request, FeedbackServicer.Review, "list-manage", message)


def decide(face: Face, request: Request, body: Any) -> Any:
    message = parse(body, feedback_pb2.DecideRequest())
    message.list = _same_list(request, message.list)
    return _call_feedback(face, request, FeedbackServicer.Decide, "list-manage", message)


def set_list_policy(face: Face, request: Request, body: Any) -> Any:
    message = parse(body, submission_pb2.SetListPolicyRequest())
    message.list = _same_list(request, message.list)
    return _call(face, request, SubmissionServicer.SetListPolicy, "list-manage", message)
