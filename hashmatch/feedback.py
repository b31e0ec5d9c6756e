"""Match feedback: the verdicts and reason codes a platform may report on a match it was
served, the decisions of a review, and the SDK for FeedbackService.

Every value is from a fixed set, never free text: a report is evidence about an entry,
and text would be a channel to store anything at all on the server."""

from __future__ import annotations

from hashmatch.channel import Credentials, ServiceClient
from hashmatch.v1 import feedback_pb2, feedback_pb2_grpc

VERDICTS = ("confirmed", "false_positive", "pending_review")
REASONS = {
    "benign_content": "the upload is harmless, not the kind of content listed",
    "different_image": "a different image that hashes alike",
    "common_image": "a widely shared image (a meme, a logo, stock or news imagery)",
    "low_detail": "a flat, dark, blank or text-only image",
    "listed_content": "the upload is the listed content",
    "other": "none of the above",
}
DECISIONS = ("confirm", "remove", "keep")
# How long after a match was served it may be reported (seconds).
FEEDBACK_WINDOW = 30 * 86_400.0
# Distinct tenants reporting false_positive that quarantine an entry, unless its list
# says otherwise: two for a hotline's list, three for victims' cases, so that two
# platforms alone can't switch off a victim's protection before an operator reviews it.
DEFAULT_THRESHOLD = 2
CASE_LIST_THRESHOLD = 3
# A list manager may set any threshold up to this; beyond it, quarantine on evidence would
# be switched off in all but name.
MAX_THRESHOLD = 100


def threshold_problem(tenants: int, case_list: bool) -> str | None:
    """Why a list may not quarantine an entry on `tenants` distinct false_positive reports,
    or None. Victims' cases never go below CASE_LIST_THRESHOLD."""
    least = CASE_LIST_THRESHOLD if case_list else 1
    if not least <= tenants <= MAX_THRESHOLD:
        where = " for victims' cases" if case_list else ""
        return f"feedback threshold {tenants} is not from {least} to {MAX_THRESHOLD} tenants{where}"
    return None


def verdict_problem(verdict: str, reason: str) -> str | None:
    """Why a report can't be taken as sent, or None."""
    if verdict not in VERDICTS:
        return f"verdict {verdict[:40]!r} is not one of {', '.join(VERDICTS)}"
    if reason and reason not in REASONS:
        return f"reason {reason[:40]!r} is not one of {', '.join(REASONS)}"
    return None


class FeedbackClient(ServiceClient):
    def __init__(
        self, target: str, *, timeout: float = 60.0, credentials: Credentials | None = None
    ) -> None:
        super().__init__(target, timeout=timeout, credentials=credentials)
        self._stub = feedback_pb2_grpc.FeedbackServiceStub(self._channel)

    def report(
        self, match_id: str, verdict: str, reason: str = "", list_name: str = ""
    ) -> list[str]:
        """Report a served match; returns the lists the report was recorded for."""
        request = feedback_pb2.ReportRequest(
            match_id=match_id, verdict=verdict, reason=reason, list=list_name
        )
        return list(self._stub.Report(request, timeout=self._timeout).lists)

    def review(self, list_name: str = "") -> list[feedback_pb2.ReviewEntry]:
        """The review queue of one list, or of every list the key may manage."""
        request = feedback_pb2.ReviewRequest(list=list_name)
        return list(self._stub.Review(request, timeout=self._timeout).entries)

    def decide(self, list_name: str, match_id: str, decision: str) -> str:
        """Confirm, remove or keep an entry of the queue; returns its state after."""
        request = feedback_pb2.DecideRequest(list=list_name, match_id=match_id, decision=decision)
        return self._stub.Decide(request, timeout=self._timeout).state
