"""HMA 2.0's hash routes (OpenMediaMatch 1.1.7, blueprints matching.py and curation.py),
answered from our engine and store so an HMA client's lookups and bank calls work as
they are. Banks are our lists; content ids are each entry's random integer id.

Routes that would hash media here (a URL to fetch, a file upload, /h/hash) are refused:
this service never takes an image; the caller hashes on its side.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from hashmatch.signals import SIGNALS
from hashmatch.v1 import submission_pb2
from indexer.store import MAX_CONTENT_ID, ListExists, NoSuchList
from service.auth import Caller
from service.checking import answer
from service.http.errors import HttpError
from service.http.face import Face, visible
from service.http.jsonio import JSONAnswer
from service.http.text import unicode_text
from service.matcher import Hit
from service.queries import InvalidRequest, ParsedQuery, _max_distance, parse_hash
from service.submission import SubmissionServicer

NO_MEDIA = (
    "this service never takes images or video, nor fetches them from a URL: hash the "
    "media on your side and send the hash (signal_type and signal)"
)
# HMA's signal type names that differ from ours.
SIGNAL_ALIASES = {"video_md5": "md5"}
BANK_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")  # what HMA's store accepts
MAX_BANK_NAME = 200
MAX_NOTE = 255  # as HMA
CONTENT_ID = re.compile(r"[1-9][0-9]{0,15}")  # at most MAX_CONTENT_ID's 16 digits


def _unwrapped(method: Any) -> Callable[..., Any]:
    """A SubmissionService handler without its gRPC wrapper: (servicer, request, None,
    caller) → response."""
    handler: Callable[..., Any] = inspect.unwrap(method)
    return handler


def _submission(face: Face) -> SubmissionServicer:
    if face.submission is None:
        raise HttpError(503, "bank routes need a store: start the server with --store")
    return face.submission


def _signal_name(name: str) -> str:
    return SIGNAL_ALIASES.get(name, name)


def _query(params: dict[str, str]) -> ParsedQuery:
    """The one hash of a lookup, checked as a gRPC query is."""
    signal_type, signal = params.get("signal_type"), params.get("signal")
    if not signal_type or not signal:
        raise InvalidRequest("signal and signal_type are both required")
    entry = submission_pb2.HashEntry(signal=_signal_name(signal_type), hex=signal)
    parsed, hash_bytes = parse_hash("signal", entry)
    return ParsedQuery(parsed.name, hash_bytes, _max_distance("signal", parsed, None))


def _flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "false").lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise InvalidRequest(f"{name} must be true or false, not {value[:20]!r}")


def _banks(params: dict[str, str]) -> frozenset[str] | None:
    banks = params.get("banks")
    return None if not banks else frozenset(banks.split(","))


def _lookup(face: Face, request: Request, route: str, distance: bool) -> list[tuple[Hit, int]]:
    """The hits of the request's hash the caller may see, each with its content id;
    `distance`: the answer is to tell each hit's distance, which a match-only key may not
    learn."""
    params = dict(request.query_params)
    if "url" in params or "content_type" in params:
        raise HttpError(400, NO_MEDIA)
    caller = face.caller(request, "check")
    if distance and caller.match_only:
        raise HttpError(
            400,
            "this API key learns match / no match only: ask /m/raw_lookup without include_distance",
        )
    if face.lookups is None:
        raise HttpError(503, "HMA lookups need a store (serve --store): content ids live there")
    query = _query(params)
    banks = _banks(params)
    _, with_hits = answer(face.batcher, face.guards, caller, [query], None, route, only=banks)
    hits = [h for found in with_hits for h in found.hits]
    ids = face.content_ids([bytes.fromhex(h.match_id) for h in hits])
    return [(h, ids[k]) for h in hits if (k := bytes.fromhex(h.match_id)) in ids]


def raw_lookup(face: Face, request: Request, body: Any) -> Any:
    with_distance = _flag(dict(request.query_params), "include_distance")
    hits = _lookup(face, request, "hma:raw_lookup", with_distance)
    if with_distance:
        return {"matches": [{"bank_content_id": c, "distance": str(h.distance)} for h, c in hits]}
    return {"matches": [c for _, c in hits]}


def lookup(face: Face, request: Request, body: Any) -> Any:
    by_bank: dict[str, list[dict[str, Any]]] = {}
    for h, c in _lookup(face, request, "hma:lookup", True):
        by_bank.setdefault(h.list, []).append({"bank_content_id": c, "distance": str(h.distance)})
    return by_bank


def no_media(face: Face, request: Request, body: Any) -> Any:
    raise HttpError(400, NO_MEDIA)


def index_status(face: Face, request: Request, body: Any) -> Any:
    face.caller(request, "check")
    wanted = request.query_params.get("signal_type")
    names = list(SIGNALS)
    if wanted is not None:
        if _signal_name(wanted) not in SIGNALS:
            raise HttpError(400, f"No such signal type '{wanted[:40]}'")
        names = [_signal_name(wanted)]
    live = face.holder.matcher
    delta = face.holder.delta
    status = {}
    for name in names:
        table = live.base.tables.get(name)
        added = sum(1 for c in delta.adds.values() if c.signal == name)
        removed = sum(1 for c in delta.removed.values() if c.signal == name)
        size = (table.count if table is not None else 0) + added - removed
        present = table is not None or added > 0
        built_to = int(face.holder.built_at) if present else -1
        status[name] = {"present": present, "built_to": built_to, "size": max(0, size)}
    return status


def status(face: Face, request: Request, body: Any) -> Response:
    if not face.ready.is_set():
        return PlainTextResponse("INDEX-NOT-LOADED", status_code=503)
    return PlainTextResponse("I-AM-ALIVE")


def status_live(face: Face, request: Request, body: Any) -> Response:
    return PlainTextResponse("I-AM-ALIVE")


# Banks


def _bank(name: str) -> dict[str, Any]:
    # Every entry of every list matches: HMA's coin flip has nothing to skip here.
    return {"name": name, "matching_enabled_ratio": 1.0}


def _visible_bank(face: Face, request: Request, name: str, role: str, *others: str) -> Caller:
    _submission(face)
    caller = face.caller(request, role, *others)
    assert face.lookups is not None
    policies = face.guards.policies.reload()
    if not visible(caller, name, policies) or name not in face.lookups.lists().values():
        # A list the caller may not see is as absent as one that does not exist.
        raise HttpError(404, f"bank '{name[:MAX_BANK_NAME]}' not found")
    return caller


def banks(face: Face, request: Request, body: Any) -> Any:
    caller = face.caller(request, "list-manage", "check")
    _submission(face)
    assert face.lookups is not None
    policies = face.guards.policies.reload()
    names = sorted(n for n in face.lookups.lists().values() if visible(caller, n, policies))
    return [_bank(n) for n in names]


def bank(face: Face, request: Request, body: Any) -> Any:
    name = request.path_params["name"]
    _visible_bank(face, request, name, "list-manage", "check")
    return _bank(name)


def create_bank(face: Face, request: Request, body: Any) -> Any:
    servicer = _submission(face)
    caller = face.caller(request, "list-manage")
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise InvalidRequest('send a JSON object with the bank\'s name: {"name": "MY_BANK"}')
    name = body["name"]
    if len(name) > MAX_BANK_NAME or not BANK_NAME.fullmatch(name):
        raise InvalidRequest("Bank names must be UPPER_WITH_UNDERSCORE")
    enabled, ratio = body.get("enabled", True), body.get("enabled_ratio", 1.0)
    if type(enabled) is not bool:
        raise InvalidRequest("enabled must be a JSON boolean (true or false)")
    if type(ratio) not in (int, float):
        raise InvalidRequest("enabled_ratio must be a JSON number")
    if ratio != 1 or not enabled:
        raise InvalidRequest(
            "every bank here matches fully: enabled_ratio can only be 1.0 and enabled true"
        )
    create = _unwrapped(SubmissionServicer.CreateList)
    try:
        create(servicer, submission_pb2.CreateListRequest(name=name), None, caller)
    except ListExists:
        raise HttpError(403, "Bank already exists") from None
    return JSONAnswer(_bank(name), status_code=201)


def add_signal(face: Face, request: Request, body: Any) -> Any:
    servicer = _submission(face)
    name = request.path_params["name"]
    caller = _visible_bank(face, request, name, "list-manage")
    if not isinstance(body, dict):
        raise InvalidRequest('send a JSON object of signal type to hash: {"pdq": "<hex>"}')
    note = body.pop("note", None)
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        raise InvalidRequest(f"note must be a string of at most {MAX_NOTE} characters")
    if len(body) != 1:
        raise InvalidRequest(
            f"send exactly one signal per call (got {len(body)}): each hash is its own entry"
        )
    ((signal_type, value),) = body.items()
    unicode_text(signal_type, "the signal type")
    if not isinstance(value, str):
        raise InvalidRequest(f"Invalid {signal_type[:40]} signal: send the hash as hex text")
    unicode_text(value, f"the {signal_type[:40]} signal")
    entry = submission_pb2.HashEntry(signal=_signal_name(signal_type), hex=value)
    signal, hash_bytes = parse_hash(f"Invalid {str(signal_type)[:40]} signal", entry)
    upload = _unwrapped(SubmissionServicer.Upload)
    requests: Iterator[submission_pb2.UploadRequest] = iter(
        [submission_pb2.UploadRequest(list=name, entries=[entry])]
    )
    result: submission_pb2.UploadResponse = upload(servicer, requests, None, caller)
    if result.refused:
        raise InvalidRequest(result.refusals[0].reason)
    assert face.feed is not None
    # "Matching on return", as HMA promises: the same wait as the gRPC handlers, and
    # 504 (stored, not yet in effect) when the matcher does not catch up in time.
    servicer.in_effect(None, "the hash (adding it again is safe)")
    content_id = face.feed.writer.content_id_of(name, signal.name, hash_bytes)
    if content_id is None:  # removed again in between
        raise NoSuchList(name)
    return {"id": content_id, "signals": {str(signal_type): signal.to_hex(hash_bytes)}}


def delete_content(face: Face, request: Request, body: Any) -> Any:
    servicer = _submission(face)
    name = request.path_params["name"]
    content_id = _content_id(request.path_params["content_id"])
    caller = _visible_bank(face, request, name, "list-manage")
    deleted = servicer.remove_content(caller, name, content_id)
    return {"deleted": deleted}


def _content_id(text: str) -> int:
    """A content id from the path: 1 to MAX_CONTENT_ID in decimal, judged by its digits
    before int() or the store sees it (a run of thousands of digits is neither's to parse)."""
    if not CONTENT_ID.fullmatch(text) or int(text) > MAX_CONTENT_ID:
        raise HttpError(404, f"no such content: ids are whole numbers from 1 to {MAX_CONTENT_ID}")
    return int(text)
