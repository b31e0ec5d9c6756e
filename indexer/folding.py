"""Folding change log lines into what they leave: the entries added and not removed since,
and the removals (tombstones for a snapshot that may hold the entry).

Compaction (indexer.build) and the server's delta (service.delta) fold the same way
here, so a compacted snapshot and the delta it replaces agree on every entry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from hashmatch.signals import hash_problem
from hashmatch.video_entries import VPDQ, VideoEntryError, frame_records
from indexer.store import Change
from indexer.video_frames import frame_rows

log = logging.getLogger(__name__)


# A table's columns, as indexer.build.make_table takes them: entry ids, list positions,
# hashes, match ids and variants.
Columns = tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.uint32],
    npt.NDArray[np.uint8],
    npt.NDArray[np.uint8],
    list[str],
]


class Fold(NamedTuple):
    adds: dict[int, Change]  # entry id → its add, not removed since
    removed: dict[int, Change]  # entry id → its latest removal
    last_seq: int  # the last line folded, skipped or not
    lists: tuple[str, ...]  # the lists the folded lines name, first named first
    signals: frozenset[str]  # the signals they touch
    skipped: int  # unusable lines left out


def unusable(c: Change) -> str | None:
    """Why an index can't hold a change log line (an unknown signal, or a hash of the wrong
    length: the schema refuses those now, but older stores may have logged some), logged
    as a warning; None if it can."""
    problem = video_problem(c) if c.signal == VPDQ else hash_problem(c.signal, c.hash)
    if problem is not None:
        log.warning("skipping change %d (%s of entry %d): %s", c.seq, c.op, c.entry_id, problem)
    return problem


def video_problem(c: Change) -> str | None:
    """Why a video's line can't be indexed: its removal needs only the entry id."""
    if c.op != "add":
        return None
    try:
        frame_records(c.frames)
    except VideoEntryError as exc:
        return f"vpdq video: {exc}"
    return None


def fold(
    changes: Iterable[Change],
    after: int,
    adds: Mapping[int, Change] | None = None,
    removed: Mapping[int, Change] | None = None,
) -> Fold:
    """`changes` (in seq order) folded over `adds` and `removed`, a fold of the lines up to
    `after`; lines at or before it are in already and are ignored. An unusable line is
    skipped (and counted), never allowed to halt a build or the service's change follower."""
    adds, removed = dict(adds or {}), dict(removed or {})
    lists: dict[str, None] = {}
    signals: set[str] = set()
    last, skipped = after, 0
    for c in changes:
        if c.seq <= last:
            continue
        last = c.seq
        if unusable(c):
            skipped += 1
            continue
        lists[c.list] = None
        signals.add(c.signal)
        if c.op == "add":
            adds[c.entry_id] = c
        else:
            # Kept even when the add was folded too: a snapshot may hold the entry.
            adds.pop(c.entry_id, None)
            removed[c.entry_id] = c
    return Fold(adds, removed, last, tuple(lists), frozenset(signals), skipped)


def positions(lists: Sequence[str], more: Iterable[str]) -> dict[str, int]:
    """Each list's position: those of `lists` keep theirs (tables already point at them),
    and the lists of `more` new to them follow in order."""
    position = {name: i for i, name in enumerate(lists)}
    for name in more:
        position.setdefault(name, len(position))
    return position


def columns(adds: Sequence[Change], position: Mapping[str, int]) -> Columns:
    """Added entries, all of one signal and at least one, as a table's columns."""
    n = len(adds)
    if adds[0].signal == VPDQ:
        problems: list[str] = []  # unusable() has left out every unreadable video
        return frame_rows(
            [c.entry_id for c in adds],
            [position[c.list] for c in adds],
            [c.match_id for c in adds],
            [c.frames for c in adds],
            problems,
        )
    return (
        np.fromiter((c.entry_id for c in adds), np.int64, n),
        np.fromiter((position[c.list] for c in adds), np.uint32, n),
        np.frombuffer(b"".join(c.hash for c in adds), np.uint8).reshape(n, -1),
        np.frombuffer(b"".join(c.match_id for c in adds), np.uint8).reshape(n, -1),
        [c.variant for c in adds],
    )
