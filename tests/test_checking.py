"""The steps of a check after the search (service.checking): a caller is shown only the
hits it may see, capped, and exactly those are audited and counted."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from hashmatch.wire import MAX_MATCHES_PER_RESULT
from indexer.store import ListPolicy, open_store
from service.audit import AuditLog
from service.auth import Caller
from service.checking import Found, audit_hits, count, visible
from service.list_policy import UNKNOWN_RELOAD_SECONDS, Policies, PolicyWatch
from service.matcher import Hit
from service.queries import ParsedQuery

LISTS = ("a", "b", "c")
MATCH_IDS = tuple(f"{i:032x}" for i in range(6))

hits_of_a_query = st.lists(
    st.builds(Hit, st.sampled_from(LISTS), st.sampled_from(MATCH_IDS), st.integers(0, 31)),
    max_size=2 * MAX_MATCHES_PER_RESULT + 5,
).map(lambda hits: sorted(hits, key=lambda h: h.distance))


def caller(lists: frozenset[str] | None) -> Caller:
    return Caller("tenant/key", frozenset({"check"}), lists, "key", None, tenant="tenant")


@given(
    st.lists(hits_of_a_query, max_size=8),
    st.none() | st.frozensets(st.sampled_from(LISTS)),
    st.frozensets(st.sampled_from(MATCH_IDS)),
)
def test_a_caller_sees_its_lists_unquarantined_closest_first_and_capped(
    found: list[list[Hit]], lists: frozenset[str] | None, quarantined: frozenset[str]
) -> None:
    queries = [ParsedQuery("pdq", bytes(32), 31)] * len(found)
    shown = visible(caller(lists), queries, found, quarantined, PolicyWatch(None))
    expected = []
    for i, hits in enumerate(found):
        mine = [
            h for h in hits if (lists is None or h.list in lists) and h.match_id not in quarantined
        ]
        if mine:
            expected.append(
                Found(i, mine[:MAX_MATCHES_PER_RESULT], len(mine) > MAX_MATCHES_PER_RESULT)
            )
    assert shown == expected


policies_of_lists = st.fixed_dictionaries(
    {
        name: st.builds(
            ListPolicy,
            st.just(name),
            st.sampled_from(["match", "negative"]),
            st.sampled_from([None, "tenant", "other"]),
            st.just(False),
            st.dictionaries(st.just("pdq"), st.integers(0, 31)),
        )
        for name in LISTS
    }
)


@given(
    st.lists(st.tuples(hits_of_a_query, st.integers(0, 31)), max_size=8),
    policies_of_lists,
    st.booleans(),
)
def test_negative_lists_of_the_caller_suppress_and_distances_only_narrow(
    found_with_limits: list[tuple[list[Hit], int]],
    policies: dict[str, ListPolicy],
    known: bool,
) -> None:
    """A query within a negative list's distance of its entry shows nothing, if that list
    is the caller's tenant's or everyone's; otherwise each match list's hits within both
    the query's and the list's distance show, and negative lists' hits never do. A list
    the policies do not know is never shown."""
    found = [hits for hits, _ in found_with_limits]
    queries = [ParsedQuery("pdq", bytes(32), limit) for _, limit in found_with_limits]
    watch = PolicyWatch(None)
    watch.current = Policies(policies if known else {}, complete=True)
    shown = visible(caller(None), queries, found, frozenset(), watch)
    expected = []
    for i, hits in enumerate(found):
        if not known:
            continue
        reach = {n: p.max_distances.get("pdq", 31) for n, p in policies.items()}
        mine = {n for n, p in policies.items() if p.kind == "negative" and p.tenant != "other"}
        if any(h.list in mine and h.distance <= reach[h.list] for h in hits):
            continue
        kept = [
            h
            for h in hits
            if policies[h.list].kind == "match"
            and h.distance <= min(queries[i].max_distance, reach[h.list])
        ]
        if kept:
            expected.append(
                Found(i, kept[:MAX_MATCHES_PER_RESULT], len(kept) > MAX_MATCHES_PER_RESULT)
            )
    assert shown == expected


class Recorded(AuditLog):
    def __init__(self) -> None:
        super().__init__(None)
        self.events: list[tuple[str, str, str | None, dict[str, Any]]] = []

    def record(self, actor: str, action: str, list_name: str | None = None, **detail: Any) -> None:
        self.events.append((actor, action, list_name, detail))


def test_each_hit_shown_is_audited_with_the_hash_sent_and_counted() -> None:
    queries = [
        ParsedQuery("pdq", b"\x01" * 32, 31),
        ParsedQuery("md5", b"\x02" * 16, 0),
        ParsedQuery("pdq", b"\x03" * 32, 31),
    ]
    shown = [
        Found(0, [Hit("a", MATCH_IDS[0], 4), Hit("b", MATCH_IDS[1], 9)], False),
        Found(1, [Hit("a", MATCH_IDS[2], 0)], False),
    ]
    audit = Recorded()
    audit_hits(audit, caller(None), queries, shown)
    assert [(e[:3], e[3]["match_id"], e[3]["signal"], e[3]["query"]) for e in audit.events] == [
        (("tenant/key", "match", "a"), MATCH_IDS[0], "pdq", "01" * 32),
        (("tenant/key", "match", "b"), MATCH_IDS[1], "pdq", "01" * 32),
        (("tenant/key", "match", "a"), MATCH_IDS[2], "md5", "02" * 16),
    ]
    assert [e[3]["distance"] for e in audit.events] == [4, 9, 0]

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {
        "pdq": sample("hashmatch_queries_total", signal="pdq"),
        "md5": sample("hashmatch_queries_total", signal="md5"),
        "pdq a": sample("hashmatch_matches_total", signal="pdq", list="a"),
        "pdq b": sample("hashmatch_matches_total", signal="pdq", list="b"),
        "md5 a": sample("hashmatch_matches_total", signal="md5", list="a"),
    }
    count(queries, shown)
    assert sample("hashmatch_queries_total", signal="pdq") - before["pdq"] == 2
    assert sample("hashmatch_queries_total", signal="md5") - before["md5"] == 1
    assert sample("hashmatch_matches_total", signal="pdq", list="a") - before["pdq a"] == 1
    assert sample("hashmatch_matches_total", signal="pdq", list="b") - before["pdq b"] == 1
    assert sample("hashmatch_matches_total", signal="md5", list="a") - before["md5 a"] == 1


def test_a_list_created_after_the_policies_loaded_is_known_before_it_is_shown(
    tmp_path: Path,
) -> None:
    """Another process made a negative list and its entries already match here: the hit
    reloads the policies, so the list suppresses rather than answering as a match list;
    a list the store does not know either is never shown."""
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.create_list("a")
        watch = PolicyWatch(store)
        store.create_list("late", kind="negative", tenant="tenant")
        time.sleep(UNKNOWN_RELOAD_SECONDS)
        query = ParsedQuery("pdq", bytes(32), 31)
        hits = [Hit("a", MATCH_IDS[0], 3), Hit("late", MATCH_IDS[1], 5)]
        assert visible(caller(None), [query], [hits], frozenset(), watch) == []
        assert "late" in watch.current.lists
        ghost = [Hit("ghost", MATCH_IDS[2], 1), Hit("a", MATCH_IDS[0], 3)]
        assert visible(caller(None), [query], [ghost], frozenset(), watch) == [
            Found(0, [ghost[1]], False)
        ]
    finally:
        store.close()
