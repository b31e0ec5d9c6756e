"""Folding the change log: compaction and the server's delta fold it the same way
(indexer.folding), and the fold leaves exactly the entries that applying each line in
turn leaves, whatever the sequence of adds, removals, re-adds and unusable lines."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.build import compact_snapshot, make_table
from indexer.folding import Fold, fold
from indexer.snapshot import SignalTable, Snapshot, read_snapshot_dir, write_snapshot
from indexer.store import Change
from service.delta import Delta

SIGNAL_BYTES = {"pdq": 32, "md5": 16}
LISTS = ("a", "b", "c")
# What an index holds of an entry: its list, signal, hash, match id and variant.
Entry = tuple[str, str, bytes, bytes, str]
Entries = dict[int, Entry]


def change(seq: int, op: str, entry_id: int, entry: Entry) -> Change:
    list_name, signal, hash_, match_id, variant = entry
    return Change(seq, op, entry_id, list_name, signal, hash_, match_id, None, None, 0.0, variant)


def entry_for(entry_id: int, seq: int, list_name: str, signal: str, variant: str) -> Entry:
    digest = hashlib.sha256(f"{entry_id}:{seq}".encode()).digest()
    return (list_name, signal, digest[: SIGNAL_BYTES[signal]], digest[:16], variant)


def held(c: Change) -> Entry:
    return (c.list, c.signal, c.hash, c.match_id, c.variant)


# One step: add (or remove) an entry id; attributes of an add; and whether the line is
# one an index can't hold (an unknown signal or a hash one byte short).
step = st.tuples(
    st.booleans(),
    st.integers(0, 11),
    st.sampled_from(LISTS),
    st.sampled_from(sorted(SIGNAL_BYTES)),
    st.sampled_from(["", "crop-center-80"]),
    st.sampled_from(["", "", "", "", "", "", "unknown", "short"]),
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[Entries, int, list[Change]]:
    """Entries a snapshot holds as of its last line, and the lines the store logs after
    it: an add only of an entry not live, a removal only of a live one."""
    base: Entries = {}
    for entry_id in draw(st.sets(st.integers(0, 11), max_size=8)):
        base[entry_id] = entry_for(entry_id, 0, draw(st.sampled_from(LISTS)), "pdq", "")
    base_seq = draw(st.integers(0, 5))
    live = dict(base)  # what the store holds, unusable or not
    lines: list[Change] = []
    seq = base_seq
    for is_add, entry_id, list_name, signal, variant, flaw in draw(st.lists(step, max_size=30)):
        if is_add == (entry_id in live):
            continue
        seq += 1
        if is_add:
            entry = entry_for(entry_id, seq, list_name, signal, variant)
            if flaw == "unknown":
                entry = (list_name, "no-such-signal", *entry[2:])
            elif flaw == "short":
                entry = (list_name, signal, entry[2][:-1], *entry[3:])
            live[entry_id] = entry
            lines.append(change(seq, "add", entry_id, entry))
        else:
            # A removal line carries the entry it removes, as the store logs it.
            lines.append(change(seq, "remove", entry_id, live.pop(entry_id)))
    return base, base_seq, lines


def one_at_a_time(base: Entries, lines: list[Change]) -> Entries:
    """What an index holds after each line in turn: a line it can't hold changes nothing."""
    entries = dict(base)
    for c in lines:
        if c.signal not in SIGNAL_BYTES or len(c.hash) != SIGNAL_BYTES[c.signal]:
            continue
        if c.op == "add":
            entries[c.entry_id] = held(c)
        else:
            entries.pop(c.entry_id, None)
    return entries


def over(base: Entries, folded: Fold) -> Entries:
    """The entries of a snapshot holding `base`, less the fold's removals, plus its adds."""
    entries = {k: e for k, e in base.items() if k not in folded.removed}
    entries.update((k, held(c)) for k, c in folded.adds.items())
    return entries


def snapshot_of(root: Path, entries: Entries, last_seq: int) -> Snapshot:
    lists = tuple(sorted({e[0] for e in entries.values()}))
    tables = []
    for signal in sorted({e[1] for e in entries.values()}):
        ids = sorted(k for k, e in entries.items() if e[1] == signal)
        tables.append(
            make_table(
                signal,
                np.array(ids, np.int64),
                np.array([lists.index(entries[k][0]) for k in ids], np.uint32),
                np.frombuffer(b"".join(entries[k][2] for k in ids), np.uint8).reshape(len(ids), -1),
                np.frombuffer(b"".join(entries[k][3] for k in ids), np.uint8).reshape(len(ids), -1),
                [entries[k][4] for k in ids],
            )
        )
    return read_snapshot_dir(write_snapshot(root, lists, tables, last_seq))


def held_in(
    lists: tuple[str, ...], tables: dict[str, SignalTable], entries: Entries, hidden: set[int]
) -> Entries:
    """`entries` with those of `tables` (less the `hidden`) added; each entry once."""
    entries = dict(entries)
    for signal, t in tables.items():
        variants = t.variant_of(np.arange(t.count))
        for row, entry_id in enumerate(t.entry_ids.tolist()):
            if entry_id in hidden:
                continue
            assert entry_id not in entries, f"entry {entry_id} held twice"
            entries[entry_id] = (
                lists[t.list_positions[row]],
                signal,
                t.hashes[row].tobytes(),
                t.match_ids[row].tobytes(),
                variants[row],
            )
    return entries


def held_by(snapshot: Snapshot) -> Entries:
    return held_in(snapshot.lists, snapshot.tables, {}, set())


def held_live(snapshot: Snapshot, delta: Delta) -> Entries:
    """What a server answers with: the snapshot less the delta's tombstones, plus its adds."""
    hidden = set(delta.tombstones().tolist())
    return held_in(
        delta.lists, delta.tables, held_in(snapshot.lists, snapshot.tables, {}, hidden), set()
    )


@given(histories())
def test_a_fold_leaves_what_applying_each_line_in_turn_leaves(
    history: tuple[Entries, int, list[Change]],
) -> None:
    base, base_seq, lines = history
    folded = fold(lines, base_seq)
    assert over(base, folded) == one_at_a_time(base, lines)
    assert folded.last_seq == (lines[-1].seq if lines else base_seq)
    assert folded.skipped == sum(
        c.signal not in SIGNAL_BYTES or len(c.hash) != SIGNAL_BYTES[c.signal] for c in lines
    )


@given(histories(), st.integers(0, 30))
def test_folding_in_two_goes_equals_folding_in_one(
    history: tuple[Entries, int, list[Change]], cut: int
) -> None:
    """Line by line (the follower's polls) or all at once (compaction): the same fold."""
    _, base_seq, lines = history
    whole = fold(lines, base_seq)
    first = fold(lines[:cut], base_seq)
    then = fold(lines[cut:], first.last_seq, first.adds, first.removed)
    assert (then.adds, then.removed, then.last_seq) == (whole.adds, whole.removed, whole.last_seq)
    assert first.signals | then.signals == whole.signals
    assert first.skipped + then.skipped == whole.skipped


@given(histories(), st.integers(0, 30))
def test_lines_at_or_before_the_fold_point_are_in_already(
    history: tuple[Entries, int, list[Change]], cut: int
) -> None:
    """A page of the change log read again (or overlapping the snapshot) changes nothing."""
    _, base_seq, lines = history
    first = fold(lines[:cut], base_seq)
    again = fold(lines, first.last_seq, first.adds, first.removed)
    assert (again.adds, again.removed) == (
        fold(lines, base_seq).adds,
        fold(lines, base_seq).removed,
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_compaction_and_the_delta_hold_what_each_line_in_turn_leaves(
    history: tuple[Entries, int, list[Change]],
) -> None:
    base, base_seq, lines = history
    expected = one_at_a_time(base, lines)
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = snapshot_of(Path(tmp) / "index", base, base_seq)
        delta = Delta.empty(base_seq).apply(lines)
        assert held_live(snapshot, delta) == expected
        polled = Delta.empty(base_seq)
        for c in lines:
            polled = polled.apply([c])
        assert held_live(snapshot, polled) == expected
        compacted = read_snapshot_dir(compact_snapshot(snapshot, lines, Path(tmp) / "index"))
        assert compacted.last_seq == delta.applied_seq
        assert held_by(compacted) == expected
        # Rebased onto the compacted snapshot, the delta adds nothing and hides nothing.
        assert held_live(compacted, delta.rebase(compacted.last_seq)) == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.integers(0, 30))
def test_a_delta_rebased_mid_log_holds_what_a_compaction_to_there_leaves(
    history: tuple[Entries, int, list[Change]], cut: int
) -> None:
    base, base_seq, lines = history
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = snapshot_of(Path(tmp) / "index", base, base_seq)
        middle = read_snapshot_dir(compact_snapshot(snapshot, lines[:cut], Path(tmp) / "index"))
        delta = Delta.empty(base_seq).apply(lines).rebase(middle.last_seq)
        assert held_live(middle, delta) == one_at_a_time(base, lines)


def test_compaction_ignores_lines_its_snapshot_already_holds(tmp_path: Path) -> None:
    """Change log lines at or before the snapshot's last one (a page read twice) are in
    it already: folding them again must not hold an entry twice or bring one back."""
    one, two = entry_for(1, 1, "a", "pdq", ""), entry_for(2, 2, "a", "pdq", "")
    lines = [change(1, "add", 1, one), change(2, "add", 2, two), change(3, "remove", 1, one)]
    base = snapshot_of(tmp_path / "index", {2: two}, 3)
    compacted = read_snapshot_dir(
        compact_snapshot(
            base, [*lines, change(4, "add", 5, entry_for(5, 4, "b", "md5", ""))], tmp_path / "index"
        )
    )
    assert held_by(compacted) == {2: two, 5: entry_for(5, 4, "b", "md5", "")}
    assert compacted.last_seq == 4
