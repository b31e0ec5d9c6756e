"""The audit log's writer: a batch the store refuses is not lost."""

from __future__ import annotations

from typing import cast

import pytest

from indexer.store import AuditEvent, Store
from service.audit import AuditLog


class FlakyStore:
    def __init__(self) -> None:
        self.fail = True
        self.written: list[AuditEvent] = []

    def append_audit(self, events: list[AuditEvent]) -> None:
        if self.fail:
            self.fail = False
            raise OSError("disk full")
        self.written += events


def test_a_refused_batch_is_written_on_the_next_flush() -> None:
    store = FlakyStore()
    audit = AuditLog(cast(Store, store))
    for k in range(3):
        audit.record("t/key", "upload", "a", n=k)
    with pytest.raises(OSError):
        audit.flush()
    audit.record("t/key", "upload", "a", n=3)
    audit.flush()
    assert [e.detail["n"] for e in store.written] == [0, 1, 2, 3]
    audit.flush()
    assert len(store.written) == 4
