"""A check, whatever the face that took it: the request parsed, what the caller may not
ask refused, the call charged and watched for probing, the search, then, each over the
whole request, what the caller may see of the hits, the audit of what it was shown, and
the counts of both.

Each step loops over the request once, not a call per query: for a 1,000-query request
the Python overhead of the hot path is per query, and most queries match nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import NamedTuple

from hashmatch.v1 import match_pb2
from hashmatch.wire import MAX_MATCHES_PER_RESULT
from service import metrics
from service.anomaly import AnomalyWatch
from service.audit import AuditLog
from service.auth import Caller
from service.batcher import Batcher
from service.guards import Guards
from service.list_policy import PolicyWatch, widened
from service.matcher import Hit
from service.probing import image_groups
from service.queries import InvalidRequest, ParsedQuery, parse_request


class Found(NamedTuple):
    """One query's answer for a caller: the hits it may see, closest first, at most
    MAX_MATCHES_PER_RESULT of them (`capped` when more matched)."""

    query: int
    hits: list[Hit]
    capped: bool


def visible(
    caller: Caller,
    queries: Sequence[ParsedQuery],
    found: Sequence[list[Hit]],
    quarantined: frozenset[str],
    policies: PolicyWatch,
    only: frozenset[str] | None = None,
) -> list[Found]:
    """The queries with hits the caller may see: of the match lists it may read, within
    the query's and the list's own distance, not quarantined (a quarantined entry matches
    no one), and capped. A query within a negative list's distance of one of its entries,
    where that list is the caller's tenant's or everyone's, shows nothing (counted).
    `only`: the lists the caller asked about (HMA's `banks=`); other hits are not shown,
    so they are neither served nor audited as served.

    `found` holds each query's hits nearest first, at most KEPT_PER_LIST a list, searched
    within the query's max_distance, or the signal's threshold where negative lists apply."""
    scoped = policies.current.complete or bool(quarantined) or caller.lists is not None
    with_hits: list[Found] = []
    for i, hits in enumerate(found):
        if not hits:
            continue
        if scoped:
            hits, suppressed_by = _shown(caller, queries[i], hits, quarantined, policies)
            if suppressed_by is not None:
                metrics.SUPPRESSED.labels(queries[i].signal, suppressed_by).inc()
                continue
            if not hits:
                continue
        if only is not None:
            hits = [h for h in hits if h.list in only]
            if not hits:
                continue
        capped = len(hits) > MAX_MATCHES_PER_RESULT
        if capped:
            # Closest first (the matcher's order); one query's cost stays bounded.
            hits = hits[:MAX_MATCHES_PER_RESULT]
        with_hits.append(Found(i, hits, capped))
    return with_hits


def _shown(
    caller: Caller,
    query: ParsedQuery,
    hits: list[Hit],
    quarantined: frozenset[str],
    watch: PolicyWatch,
) -> tuple[list[Hit], str | None]:
    """One query's hits the caller may see, or the negative list that suppresses them all."""
    current = watch.current
    negative, reach, signal, widest = current.negative, current.reach, query.signal, 1 << 16
    shown: list[Hit] = []
    for h in hits:
        name, distance = h.list, h.distance
        if current.complete and name not in current.lists:
            current = watch.refresh_for_unknown()
            negative, reach = current.negative, current.reach
            if name not in current.lists:
                continue  # a list too new to know its kind: never shown as a match
        if name in negative:
            owner = negative[name]
            if (owner is None or owner == caller.tenant) and distance <= reach.get(
                (name, signal), widest
            ):
                return [], name
            continue
        if (
            distance <= query.max_distance
            and distance <= reach.get((name, signal), widest)
            and h.match_id not in quarantined
            and caller.may_see(name)
        ):
            shown.append(h)
    return shown, None


def audit_hits(
    audit: AuditLog, caller: Caller, queries: Sequence[ParsedQuery], with_hits: Sequence[Found]
) -> None:
    """An audit record of each hit shown: who matched which entry, with the hash it sent."""
    for i, hits, _ in with_hits:
        q = queries[i]
        for h in hits:
            audit.record(
                caller.actor,
                "match",
                h.list,
                match_id=h.match_id,
                distance=h.distance,
                signal=q.signal,
                query=q.hash.hex(),
            )


def watch_entries(anomaly: AnomalyWatch, with_hits: Sequence[Found]) -> None:
    """Each hit shown counts towards its entry's matches (the anomaly watch)."""
    if with_hits:
        anomaly.count(h for found in with_hits for h in found.hits)


def count(queries: Sequence[ParsedQuery], with_hits: Sequence[Found]) -> None:
    """The request's queries and matches in the metrics."""
    matched: Counter[tuple[str, str]] = Counter()
    for i, hits, _ in with_hits:
        signal = queries[i].signal
        for h in hits:
            matched[signal, h.list] += 1
    # One counter update per label set, not per query: the labels() lookups and
    # their locks were a visible share of a 1,000-query request.
    for signal, n in Counter(q.signal for q in queries).items():
        metrics.QUERIES.labels(signal).inc(n)
    for (signal, list_name), n in matched.items():
        metrics.MATCHES.labels(signal, list_name).inc(n)


class Checked(NamedTuple):
    """A check's outcome: the snapshot version, how many queries, those with hits, and
    whether the caller may learn no distance."""

    version: int
    queries: int
    with_hits: list[Found]
    match_only: bool


def check(
    batcher: Batcher,
    guards: Guards,
    authenticate: Callable[[str], Caller],
    request: match_pb2.CheckRequest,
    deadline: float | None,
    method: str,
) -> Checked:
    """A CheckRequest answered, whatever the face (`authenticate(role)` is its way to
    the caller): the caller, the request parsed, what a match-only key may not ask
    refused, then `answer`."""
    caller = authenticate("check")
    queries = parse_request(request)
    groups = image_groups(queries, request.images)
    if caller.match_only:
        refuse_tightening(request)
    version, with_hits = answer(batcher, guards, caller, queries, deadline, method, groups)
    return Checked(version, len(queries), with_hits, caller.match_only)


def refuse_tightening(request: match_pb2.CheckRequest) -> None:
    """A match-only key may not set max_distance: matching at 31, then 30, ... would tell
    it the distance it is not to learn."""
    if request.HasField("batch"):
        tightened = request.batch.HasField("max_distance")
    else:
        tightened = any(q.HasField("max_distance") for q in request.queries)
    if tightened:
        raise InvalidRequest(
            "this API key learns match / no match only: max_distance may not be set"
        )


def answer(
    batcher: Batcher,
    guards: Guards,
    caller: Caller,
    queries: list[ParsedQuery],
    deadline: float | None,
    method: str,
    groups: Sequence[Sequence[int]] | None = None,
    only: frozenset[str] | None = None,
) -> tuple[int, list[Found]]:
    """Check parsed queries for a caller, whatever the transport. Returns the snapshot
    version and the queries with hits the caller may see.

    Charged before any work, so a refused call costs nothing; every hit shown is audited
    before the answer leaves (an audit log that stays full fails the call instead).
    `groups` (image_groups) has each image's queries watched for probing as one; `only`
    narrows the answer to those lists (see `visible`)."""
    guards.gate.charge(caller, len(queries))
    guards.probe.observe(caller, queries, groups)
    negative = guards.policies.current.negative_for(caller.tenant)
    version, found = batcher.check(widened(queries) if negative else queries, deadline)
    with_hits = visible(caller, queries, found, guards.anomaly.quarantined, guards.policies, only)
    audit_hits(guards.audit, caller, queries, with_hits)
    watch_entries(guards.anomaly, with_hits)
    guards.audit.key_used(caller.actor, method)
    count(queries, with_hits)
    return version, with_hits
