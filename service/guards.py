"""What stands between a caller and the lists, shared by both faces: keys and limits,
the audit log, the match anomaly watch, the probing watch and the lists' policies."""

from __future__ import annotations

from dataclasses import dataclass, field

from indexer.store import Store
from service.anomaly import AnomalyWatch
from service.audit import AuditLog
from service.auth import Gate
from service.list_policy import PolicyWatch
from service.probing import ProbeWatch


@dataclass(frozen=True)
class Guards:
    """What stands between a caller and the list: keys and limits, the audit log, the
    match anomaly watch and the probing watch."""

    gate: Gate
    audit: AuditLog
    anomaly: AnomalyWatch
    probe: ProbeWatch
    policies: PolicyWatch = field(default_factory=lambda: PolicyWatch(None))

    @classmethod
    def open(cls, store: Store | None = None) -> Guards:
        """Guards with default settings; no store means no authentication (loopback use)."""
        gate, audit = Gate(store), AuditLog(store)
        return cls(
            gate, audit, AnomalyWatch(store, audit), ProbeWatch(gate, audit), PolicyWatch(store)
        )
