"""Client SDK for SubmissionService: victims' cases and hotlines' lists."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import grpc

from hashmatch.channel import Credentials, ServiceClient
from hashmatch.list_formats import NewEntry
from hashmatch.v1 import submission_pb2, submission_pb2_grpc

UPLOAD_BATCH = 5_000
MAX_CASE_HASHES = 1_000  # the server's limit for one case
# A case stored but not yet in effect: its receipt, in the error's trailing metadata.
CASE_ID_METADATA = "hashmatch-case-id"
SECRET_METADATA = "hashmatch-withdrawal-secret"


@dataclass(frozen=True)
class CaseReceipt:
    case_id: str
    withdrawal_secret: str
    added: int


@dataclass(frozen=True)
class UploadReport:
    added: int
    duplicates: int
    refused: int
    refusals: tuple[tuple[int, str], ...]  # (entry position, reason), the first 1,000


def to_message(e: NewEntry) -> submission_pb2.HashEntry:
    m = submission_pb2.HashEntry(
        signal=e.signal, hash=e.hash, source_ref=e.source_ref or "", variant=e.variant
    )
    if e.quality is not None:
        m.quality = e.quality
    return m


class CaseNotYetInEffect(Exception):
    """The server stored the case, but it did not yet match when the server answered; it
    will once the server catches up. Keep the receipt, and don't submit the case again."""

    def __init__(self, receipt: CaseReceipt, detail: str) -> None:
        super().__init__(detail)
        self.receipt = receipt


def _stored_case(exc: grpc.RpcError) -> CaseReceipt | None:
    if not isinstance(exc, grpc.Call) or exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
        return None
    metadata = {k: v for k, v in exc.trailing_metadata() or () if isinstance(v, str)}
    if CASE_ID_METADATA not in metadata or SECRET_METADATA not in metadata:
        return None
    return CaseReceipt(metadata[CASE_ID_METADATA], metadata[SECRET_METADATA], 0)


class SubmissionClient(ServiceClient):
    def __init__(
        self, target: str, *, timeout: float = 60.0, credentials: Credentials | None = None
    ) -> None:
        super().__init__(target, timeout=timeout, credentials=credentials)
        self._stub = submission_pb2_grpc.SubmissionServiceStub(self._channel)

    def submit_case(self, entries: Sequence[NewEntry]) -> CaseReceipt:
        """The case's receipt; CaseNotYetInEffect, with it, if the case was stored but
        did not match yet."""
        try:
            r = self._stub.SubmitCase(
                submission_pb2.SubmitCaseRequest(hashes=[to_message(e) for e in entries]),
                timeout=self._timeout,
            )
        except grpc.RpcError as exc:
            if (stored := _stored_case(exc)) is not None:
                raise CaseNotYetInEffect(stored, str(exc.details())) from exc
            raise
        return CaseReceipt(r.case_id, r.withdrawal_secret, r.added)

    def withdraw(self, case_id: str, secret: str) -> int:
        request = submission_pb2.CaseRequest(case_id=case_id, withdrawal_secret=secret)
        return self._stub.Withdraw(request, timeout=self._timeout).removed

    def case_status(self, case_id: str, secret: str) -> submission_pb2.CaseStatusResponse:
        request = submission_pb2.CaseRequest(case_id=case_id, withdrawal_secret=secret)
        return self._stub.CaseStatus(request, timeout=self._timeout)

    def create_list(
        self,
        name: str,
        owner: str = "",
        trust: str = "",
        description: str = "",
        *,
        kind: str = "",
        all_tenants: bool = False,
        max_distance: Mapping[str, int] | None = None,
        quarantine_anomalies: bool = False,
        feedback_threshold: int | None = None,
    ) -> submission_pb2.ListInfo:
        """A new list: `kind` "negative" for hashes that must never produce a match for this
        key's tenant (`all_tenants`: for everyone, admin keys only); `max_distance` per
        signal narrows the list's matching below the signals' thresholds;
        `feedback_threshold` distinct tenants' false_positive reports quarantine an entry
        (None: the server's default)."""
        request = submission_pb2.CreateListRequest(
            name=name,
            owner=owner,
            trust=trust,
            description=description,
            kind=kind,
            all_tenants=all_tenants,
            max_distance=max_distance or {},
            quarantine_anomalies=quarantine_anomalies,
            feedback_threshold=feedback_threshold,
        )
        return self._stub.CreateList(request, timeout=self._timeout)

    def set_policy(
        self,
        name: str,
        max_distance: Mapping[str, int] | None = None,
        default_distance: Sequence[str] = (),
        quarantine_anomalies: bool | None = None,
        feedback_threshold: int | None = None,
    ) -> submission_pb2.ListInfo:
        """Change a list's maximum distances (`default_distance`: back to the signal's
        threshold), whether it quarantines anomalous entries, and how many tenants'
        false_positive reports quarantine an entry; None leaves a setting as it is.
        Returns the list as it now is."""
        request = submission_pb2.SetListPolicyRequest(
            list=name,
            max_distance=max_distance or {},
            default_distance=default_distance,
            quarantine_anomalies=quarantine_anomalies,
            feedback_threshold=feedback_threshold,
        )
        return self._stub.SetListPolicy(request, timeout=self._timeout)

    def list_info(self, name: str) -> submission_pb2.ListInfo:
        return self._stub.GetList(submission_pb2.GetListRequest(name=name), timeout=self._timeout)

    def upload(
        self,
        list_name: str,
        entries: Iterable[NewEntry],
        submitter: str = "",
        sent: Callable[[int], object] | None = None,
        batch: int = UPLOAD_BATCH,
    ) -> UploadReport:
        """Stream entries to the list in messages of `batch` entries (each is charged to
        the key's rate limit, so at most its burst); `sent(n)` is told of each."""

        def requests() -> Iterator[submission_pb2.UploadRequest]:
            it = iter(entries)
            first = True
            while (chunk := list(itertools.islice(it, batch))) or first:
                yield submission_pb2.UploadRequest(
                    list=list_name if first else "",
                    submitter=submitter if first else "",
                    entries=[to_message(e) for e in chunk],
                )
                first = False
                if sent is not None:
                    sent(len(chunk))

        # No overall deadline: an upload may carry millions of entries.
        r = self._stub.Upload(requests())
        return UploadReport(
            r.added, r.duplicates, r.refused, tuple((x.index, x.reason) for x in r.refusals)
        )

    def remove(self, list_name: str, keys: Sequence[tuple[str, bytes]]) -> int:
        request = submission_pb2.RemoveEntriesRequest(
            list=list_name,
            entries=[submission_pb2.HashEntry(signal=s, hash=h) for s, h in keys],
        )
        return self._stub.RemoveEntries(request, timeout=self._timeout).removed
