"""Match feedback in the store, on both backends: what was served, one verdict per tenant,
quarantine at the list's threshold, decisions, and the counts an upstream pulls."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashmatch.feedback import MAX_THRESHOLD
from indexer.store import (
    CASE_LIST,
    AuditEvent,
    Change,
    FeedbackCounts,
    InvalidValue,
    NewEntry,
    NoSuchMatch,
    Store,
    open_store,
)


def entry_ids(store: Store, list_name: str) -> list[bytes]:
    return [bytes(c.match_id) for c in store.changes(0, 1000, list_name) if c.op == "add"]


def serve(store: Store, actor: str, list_name: str, match_id: bytes, at: float = 0.0) -> None:
    store.append_audit(
        [AuditEvent(actor, "match", list_name, {"match_id": match_id.hex()}, at or time.time())]
    )


def quarantined(store: Store) -> set[bytes]:
    return {f.match_id for f in store.entry_flags() if f.state == "quarantined"}


def test_quarantine_at_the_threshold_of_distinct_tenants_and_after_review(store_url: str) -> None:
    store = open_store(store_url)
    store.add_entries("a", [NewEntry("pdq", os.urandom(32)) for _ in range(2)])
    m, other = entry_ids(store, "a")
    version = store.flags_version()
    assert store.report_feedback("a", m, "t1/k1", "t1", "false_positive", "common_image") is False
    assert store.report_feedback("a", m, "t1/k2", "t1", "false_positive", "") is False
    assert store.report_feedback("a", m, "t2/k", "t2", "confirmed", "") is False
    assert store.flags_version() == version and not quarantined(store)
    assert store.report_feedback("a", m, "t2/k", "t2", "false_positive", "") is True
    assert quarantined(store) == {m} and store.flags_version() > version
    # A flag for anomalous matching, on a list that doesn't quarantine them, keeps it so.
    store.flag_entry(m, 500)
    assert quarantined(store) == {m}
    [item] = [i for i in store.review_queue(["a"]) if i.match_id == m]
    assert (item.state, item.cause, item.tenants("false_positive")) == (
        "quarantined",
        "feedback",
        2,
    )
    assert store.decide_entry("a", m, "confirm") == "confirmed" and not quarantined(store)
    time.sleep(0.01)
    assert store.report_feedback("a", m, "t1/k1", "t1", "false_positive", "") is False
    assert store.report_feedback("a", m, "t3/k", "t3", "false_positive", "") is True
    assert store.decide_entry("a", m, "remove") == "removed"
    assert entry_ids(store, "a") == [m, other]
    assert [c.op for c in store.changes(0, 100, "a")][-1] == "remove"
    assert m not in {i.match_id for i in store.review_queue(None)}
    with pytest.raises(NoSuchMatch):
        store.report_feedback("a", m, "t4/k", "t4", "false_positive", "")
    with pytest.raises(NoSuchMatch):
        store.decide_entry("a", os.urandom(12), "keep")
    store.close()


def test_victims_cases_take_three_and_bad_values_are_refused(store_url: str) -> None:
    store = open_store(store_url)
    store.create_case([NewEntry("pdq", os.urandom(32))])
    [m] = entry_ids(store, CASE_LIST)
    assert store.list_info(CASE_LIST).feedback_threshold == 3
    results = [
        store.report_feedback(CASE_LIST, m, f"t{i}/k", f"t{i}", "false_positive", "")
        for i in range(3)
    ]
    assert results == [False, False, True]
    for verdict, reason in [("blocked", ""), ("confirmed", "my cat"), ("", "")]:
        with pytest.raises(InvalidValue):
            store.report_feedback(CASE_LIST, m, "t/k", "t", verdict, reason)
    with pytest.raises(InvalidValue):
        store.decide_entry(CASE_LIST, m, "undo")
    with pytest.raises(InvalidValue):
        store.set_feedback_threshold(CASE_LIST, 0)
    store.close()


def test_served_is_read_from_the_audit_within_the_window(store_url: str) -> None:
    store = open_store(store_url)
    store.add_entries("a", [NewEntry("pdq", os.urandom(32))])
    [m] = entry_ids(store, "a")
    serve(store, "t/k", "a", m, at=time.time() - 100)
    serve(store, "t/k", "a", m)  # served again: one row, the latest time
    serve(store, "u/k", "b", m)
    store.append_audit([AuditEvent("t/k", "match", "a", {"match_id": "not hex"}, time.time())])
    assert store.served_lists("t/k", m, time.time() - 10) == ["a"]
    assert store.served_lists("t/k", m, time.time() + 10) == []
    assert store.served_lists("u/k", m, 0) == ["b"]
    assert store.served_lists("v/k", m, 0) == []
    store.close()


def test_counts_for_upstream_cover_copied_entries_and_come_back_in_review(store_url: str) -> None:
    store = open_store(store_url)
    remote = [os.urandom(12) for _ in range(2)]
    store.apply_sync(
        "up:1/a",
        "copy",
        [
            Change(i + 1, "add", 0, "copy", "pdq", os.urandom(32), r, None, None, 0.0)
            for i, r in enumerate(remote)
        ],
    )
    store.add_entries("copy", [NewEntry("pdq", os.urandom(32))])
    own = [m for m in entry_ids(store, "copy") if m not in remote]
    for i in range(2):
        store.report_feedback("copy", remote[0], f"t{i}/k", f"t{i}", "pending_review", "")
    store.report_feedback("copy", own[0], "t/k", "t", "false_positive", "")
    counts = store.feedback_counts("copy", 0, 100)
    assert [(c.match_id, c.pending_review) for c in counts] == [(remote[0], 2)]
    assert store.feedback_counts("copy", counts[-1].seq, 100) == []
    store.report_feedback("copy", remote[1], "t0/k", "t0", "confirmed", "")
    [later] = store.feedback_counts("copy", counts[-1].seq, 100)
    assert later.match_id == remote[1] and later.confirmed == 1
    # Upstream: its own entry, and the counts pulled for it.
    store.apply_remote_feedback(
        "down:2/copy", "copy", [FeedbackCounts(own[0], 7, 1, 2, 3)], through=7
    )
    assert store.sync_cursor("feedback:down:2/copy") == 7
    [item] = [i for i in store.review_queue(["copy"]) if i.match_id == own[0]]
    assert [(r.source, r.false_positive) for r in item.remote] == [("down:2/copy", 2)]
    store.close()


def test_the_schema_refuses_free_text_in_feedback(tmp_path: Path) -> None:
    url = tmp_path / "store.db"
    open_store(f"sqlite:///{url}").close()
    db = sqlite3.connect(url)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO feedback VALUES (1, x'00', 't', 't/k', 'false_positive', 'lol', 0, 1)"
        )
    db.close()


@settings(max_examples=40, deadline=None)
@given(
    reports=st.lists(
        st.tuples(
            st.integers(0, 4), st.sampled_from(["confirmed", "false_positive", "pending_review"])
        ),
        max_size=12,
    ),
    threshold=st.integers(1, 4),
)
def test_quarantined_exactly_when_enough_tenants_last_said_false_positive(
    tmp_path_factory: pytest.TempPathFactory,
    reports: list[tuple[int, str]],
    threshold: int,
) -> None:
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('p') / 'store.db'}")
    store.add_entries("a", [NewEntry("pdq", os.urandom(32))])
    store.set_feedback_threshold("a", threshold)
    [m] = entry_ids(store, "a")
    latest: dict[int, str] = {}
    ever = False
    for tenant, verdict in reports:
        store.report_feedback("a", m, f"t{tenant}/k", f"t{tenant}", verdict, "")
        latest[tenant] = verdict
        # Quarantine holds until reviewed, even if a tenant later changes its mind.
        ever = ever or sum(v == "false_positive" for v in latest.values()) >= threshold
    assert (m in quarantined(store)) == ever
    store.close()


@settings(max_examples=60, deadline=None)
@given(tenants=st.integers(-(2**40), 2**40) | st.integers(-3, 104), case_list=st.booleans())
def test_a_feedback_threshold_is_kept_exactly_when_in_bounds(
    tmp_path_factory: pytest.TempPathFactory, tenants: int, case_list: bool
) -> None:
    """1 to 100 distinct tenants (victims' cases: 3 to 100), set at creation or later;
    a refused value changes nothing and creates nothing."""
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('k') / 'store.db'}")
    name = CASE_LIST if case_list else "hotline"
    least = 3 if case_list else 1
    fits = least <= tenants <= MAX_THRESHOLD
    try:
        if fits:
            assert store.create_list(name, feedback_threshold=tenants).feedback_threshold == tenants
        else:
            with pytest.raises(InvalidValue, match="feedback threshold"):
                store.create_list(name, feedback_threshold=tenants)
            with pytest.raises(KeyError):
                store.list_info(name)
            store.create_list(name)
        before = store.list_info(name).feedback_threshold
        assert before == (tenants if fits else least if case_list else 2)
        if fits:
            store.set_feedback_threshold(name, tenants)
        else:
            with pytest.raises(InvalidValue, match="feedback threshold"):
                store.set_feedback_threshold(name, tenants)
        assert store.list_info(name).feedback_threshold == before
    finally:
        store.close()
