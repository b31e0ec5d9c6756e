"""Liveness and readiness, told apart through the standard gRPC health service.

`liveness` is SERVING for as long as the process answers at all: restart it only
if that stops. The overall status `""` (what Kubernetes' gRPC probe asks when no
service is named) is readiness: NOT_SERVING while the store is unreachable, while
the change follower has not applied the change log for longer than its bound,
or while API keys are staler than theirs; SERVING again once all have recovered.

MatchService's own status stays SERVING while checks are answered, which they
are from memory through a store outage unless stale keys are being refused; an
operator who prefers checks answered over fresh ones may route check traffic by
it. SubmissionService and SyncService need the store and follow readiness.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from grpc_health.v1 import health, health_pb2

from service import metrics
from service.auth import Gate
from service.follower import ChangeFollower

log = logging.getLogger(__name__)

LIVENESS = "liveness"
READINESS = ""
EVALUATE_EVERY = 0.25
DEFAULT_MAX_FOLLOWER_STALL = 10.0

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Readiness:
    def __init__(
        self,
        gate: Gate,
        follower: ChangeFollower | None = None,
        max_follower_stall: float = DEFAULT_MAX_FOLLOWER_STALL,
    ) -> None:
        self.health = health.HealthServicer()
        self._gate = gate
        self._follower = follower
        self._max_stall = max_follower_stall
        self._match_service: str | None = None
        self._store_services: tuple[str, ...] = ()
        self._reasons: frozenset[str] | None = None  # last logged, by kind
        self.health.set(LIVENESS, SERVING)

    def serve(self, match_service: str, store_services: Sequence[str]) -> None:
        """Report on these services from now on."""
        self._match_service = match_service
        self._store_services = tuple(store_services)
        self.evaluate()

    def problems(self) -> dict[str, str]:
        """Why the server is not ready, by kind; empty when it is."""
        found = {}
        follower = self._follower
        if follower is not None and not follower.store_up:
            found["store"] = "the store is unreachable"
        if follower is not None and follower.read_age() > self._max_stall:
            found["follower"] = (
                f"the change log was last applied {follower.read_age():.0f}s ago "
                f"(the limit is {self._max_stall:g}s)"
            )
        if self._gate.keys_stale():
            found["keys"] = (
                f"API keys were last reloaded {self._gate.keys_age():.0f}s ago "
                f"(the limit is {self._gate.max_key_staleness:g}s)"
            )
        return found

    def evaluate(self) -> bool:
        """Set every status from the server's state now; whether it is ready."""
        problems = self.problems()
        ready = not problems
        status = SERVING if ready else NOT_SERVING
        self.health.set(READINESS, status)
        for name in self._store_services:
            self.health.set(name, status)
        if self._match_service is not None:
            self.health.set(self._match_service, NOT_SERVING if self._gate.refusing else SERVING)
        metrics.READY.set(1 if ready else 0)
        reasons = frozenset(problems)
        if reasons != self._reasons:
            if problems:
                log.warning("not ready: %s", "; ".join(problems.values()))
            elif self._reasons is not None:
                log.warning("ready again")
            self._reasons = reasons
        return ready

    def watch(self, stop: threading.Event) -> threading.Thread:
        def loop() -> None:
            while not stop.wait(EVALUATE_EVERY):
                try:
                    self.evaluate()
                except Exception:
                    log.exception("evaluating readiness failed")

        thread = threading.Thread(target=loop, name="readiness", daemon=True)
        thread.start()
        return thread
