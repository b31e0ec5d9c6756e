"""Choosing the hits a query answers with: the closest of each list, whatever the engine
found."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.snapshot import SignalTable
from service.engine import Hits
from service.matcher import KEPT_PER_LIST, _closest


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40)), max_size=120),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 40),
)
def test_the_matcher_keeps_the_closest_of_each_list_and_only_those(
    found: list[list[tuple[int, int]]], limit: int
) -> None:
    """Per query and list, the KEPT_PER_LIST nearest hits within the query's distance
    (ties by row), whatever the engine returned."""
    rows = [r for q in found for r in range(len(q))]
    hits = Hits(
        np.concatenate(([0], np.cumsum([len(q) for q in found]))).astype(np.int64),
        np.array(rows, np.int64),
        np.array([d for q in found for _, d in q], np.int32),
    )
    size = max((len(q) for q in found), default=1)
    lists = np.zeros(max(size, 1), np.uint32)
    # The engine's row r of every query is the table's row r; give each row one list.
    for q in found:
        for r, (listed, _) in enumerate(q):
            lists[r] = listed
    found = [[(int(lists[r]), d) for r, (_, d) in enumerate(q)] for q in found]
    table = SimpleNamespace(list_positions=lists, entry_ids=np.arange(size), count=size)
    limits = np.full(len(found), limit, np.int32)
    kept, lims = _closest(hits, limits, cast(SignalTable, table), None)
    for k, q in enumerate(found):
        got = sorted(int(hits.rows[j]) for j in kept[lims[k] : lims[k + 1]])
        expected = []
        for listed in {lst for lst, _ in q}:
            mine = sorted((d, r) for r, (lst, d) in enumerate(q) if lst == listed and d <= limit)
            expected += [r for _, r in mine[:KEPT_PER_LIST]]
        assert got == sorted(expected)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40)), min_size=1, max_size=45),
    st.integers(0, 40),
    st.sets(st.integers(0, 44)),
)
def test_a_single_query_is_chosen_as_in_a_batch(
    found: list[tuple[int, int]], limit: int, excluded: set[int]
) -> None:
    """One query (a unary lookup) takes a shorter path: it keeps exactly what the same
    query keeps in a batch, within its distance, tombstones left out."""
    lists = np.array([lst for lst, _ in found], np.uint32)
    distances = np.array([d for _, d in found], np.int32)
    table = SimpleNamespace(list_positions=lists, entry_ids=np.arange(len(found)), count=len(found))
    exclude = np.array(sorted(excluded), np.int64)
    rows = np.arange(len(found), dtype=np.int64)
    one = Hits(np.array([0, len(found)], np.int64), rows, distances)
    two = Hits(
        np.array([0, len(found), 2 * len(found)], np.int64),
        np.concatenate([rows, rows]),
        np.concatenate([distances, distances]),
    )
    kept, lims = _closest(one, np.array([limit], np.int32), cast(SignalTable, table), exclude)
    batch, bounds = _closest(two, np.full(2, limit, np.int32), cast(SignalTable, table), exclude)
    assert lims.tolist() == [0, len(kept)]
    assert sorted(one.rows[kept].tolist()) == sorted(two.rows[batch[: bounds[1]]].tolist())
