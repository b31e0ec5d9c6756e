"""SubmissionService: victims' cases and hotlines' lists, written to the store.

Every accepted hash is checked like an import line: a featureless or
low-quality hash would match huge numbers of innocent uploads, so it is
refused with the reason, and so is any text over its bound (hashmatch.bounds).
Every call that carries hashes is charged to its caller's rate limit by the hash.
Changes that must take effect at once (a withdrawal, a removal, a new case) return
OK only once the matcher reflects them; if it does not in time, the answer is
DEADLINE_EXCEEDED saying the change was stored but is not yet in effect (and a new
case's receipt comes with it, in trailing metadata, so that the victim can still
withdraw it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

import grpc

from hashmatch.bounds import (
    CASE_ID,
    DESCRIPTION,
    LIST_NAME,
    OWNER,
    SOURCE_REF,
    SUBMITTER,
    VARIANT,
    WITHDRAWAL_SECRET,
    OutOfBounds,
    anonymous_case_problem,
)
from hashmatch.feedback import threshold_problem
from hashmatch.submission import CASE_ID_METADATA, MAX_CASE_HASHES, SECRET_METADATA
from hashmatch.v1 import submission_pb2, submission_pb2_grpc
from hashmatch.video_entries import (
    DIGEST_BYTES,
    VPDQ,
    VideoEntryError,
    listing_problem,
    pack_frames,
    unpack_frames,
    video_digest,
)
from indexer.store import (
    CASE_LIST,
    LIST_KINDS,
    MAX_TENANT_NEGATIVE_ENTRIES,
    EntryFlag,
    ListInfo,
    NewEntry,
    Store,
    StoreUnavailable,
    distance_problem,
)
from service.audit import AuditLog
from service.auth import STREAM_PATIENCE, Caller, Gate, PermissionDenied, reach
from service.follower import ChangeFollower, NotInEffect
from service.list_policy import PolicyWatch
from service.packing import image_numbers, packed
from service.queries import InvalidRequest, parse_hash, parse_match_id
from service.rpc import deadline_of, unary
from service.video_checking import video_query_frames

MAX_REFUSALS_LISTED = 1_000
IN_EFFECT_TIMEOUT = 5.0
# Answer this long before the caller's deadline, so that it hears which change was stored.
DEADLINE_MARGIN = 0.2


def video_frames(label: str, m: submission_pb2.HashEntry) -> bytes:
    """A vpdq entry's frames, checked and packed (hashmatch.video_entries)."""
    if m.signal != VPDQ:
        raise InvalidRequest(f"{label}: video frames given for signal {m.signal[:40]!r}; use vpdq")
    if m.WhichOneof("value") is not None:
        raise InvalidRequest(f"{label}: a vpdq entry is given by its frames (video), not a hash")
    try:
        return pack_frames(video_query_frames(m.video.frames))
    except (InvalidRequest, VideoEntryError) as exc:
        raise InvalidRequest(f"{label}: {exc}") from None


def parse_video_entry(label: str, m: submission_pb2.HashEntry) -> NewEntry:
    """A listed video: one entry, refused unless some frame is matched on and every frame
    matched on is a hash a list may hold."""
    frames = video_frames(label, m)
    if reason := listing_problem(unpack_frames(frames)):
        raise InvalidRequest(f"{label}: refused: {reason}")
    if m.variant:
        raise InvalidRequest(f"{label}: a video has no variants")
    checked(label, SOURCE_REF.check, m.source_ref)
    return NewEntry(VPDQ, video_digest(frames), None, m.source_ref or None, "", frames)


def parse_entry(label: str, m: submission_pb2.HashEntry, anonymous: bool = False) -> NewEntry:
    """An entry to store; `anonymous` (a case sent without a key) allows no free text."""
    if m.signal == VPDQ or m.HasField("video"):
        if anonymous and (problem := anonymous_case_problem(m.source_ref, m.variant)):
            raise InvalidRequest(f"{label}: {problem}")
        return parse_video_entry(label, m)
    signal, hash_bytes = parse_hash(label, m)
    quality = m.quality if m.HasField("quality") else None
    if reason := signal.degenerate(hash_bytes, quality):
        raise InvalidRequest(f"{label}: refused: {reason}")
    if anonymous and (problem := anonymous_case_problem(m.source_ref, m.variant)):
        raise InvalidRequest(f"{label}: {problem}")
    checked(label, SOURCE_REF.check, m.source_ref)
    checked(label, VARIANT.check, m.variant)
    return NewEntry(signal.name, hash_bytes, quality, m.source_ref or None, m.variant)


def checked(label: str, check: Callable[[str], None], value: str) -> None:
    """`check(value)`, its refusal labelled with where the value was."""
    try:
        check(value)
    except OutOfBounds as exc:
        raise InvalidRequest(f"{label}: {exc}") from None


def _list_info(info: ListInfo, flags: list[EntryFlag]) -> submission_pb2.ListInfo:
    return submission_pb2.ListInfo(
        kind=info.kind,
        all_tenants=info.kind == "negative" and info.tenant is None,
        max_distance=info.max_distances,
        quarantine_anomalies=info.quarantine,
        feedback_threshold=info.feedback_threshold,
        flagged=[
            submission_pb2.FlaggedEntry(match_id=f.match_id.hex(), state=f.state, matches=f.matches)
            for f in flags
        ],
        name=info.name,
        owner=info.owner,
        trust=info.trust,
        description=info.description,
        created_at=info.created_at,
        entries_by_signal=info.entries_by_signal,
        entries=info.entries,
        last_seq=info.last_seq,
    )


def _case(request: submission_pb2.CaseRequest) -> tuple[str, str]:
    if not request.case_id or not request.withdrawal_secret:
        raise InvalidRequest("case_id and withdrawal_secret are both required")
    CASE_ID.check(request.case_id)
    WITHDRAWAL_SECRET.check(request.withdrawal_secret)
    return request.case_id, request.withdrawal_secret


class SubmissionServicer(submission_pb2_grpc.SubmissionServiceServicer):
    def __init__(
        self,
        store: Store,
        follower: ChangeFollower,
        gate: Gate,
        audit: AuditLog,
        confirmed: Callable[[bytes], None],
        policies: PolicyWatch | None = None,
    ) -> None:
        self._store = store
        self._follower = follower
        self.gate = gate
        self._audit = audit
        self._confirmed = confirmed
        self._policies = policies or PolicyWatch(None)

    def _info(self, name: str, info: ListInfo | None = None) -> submission_pb2.ListInfo:
        info = info or self._store.list_info(name)
        return _list_info(info, [f for f in self._store.entry_flags() if f.list == name])

    def reach(self, caller: Caller, list_name: str) -> ListInfo:
        """The list, if the caller may manage it: PERMISSION_DENIED outside its key's scope,
        NOT_FOUND for another tenant's negative list, as for a list that does not exist."""
        _may_manage(caller, list_name)
        return reach(self._store, caller, list_name)

    def in_effect(
        self, context: grpc.ServicerContext | None, change: str, *metadata: tuple[str, str]
    ) -> None:
        """Return once the matcher reflects everything committed so far; NotInEffect
        if it does not within IN_EFFECT_TIMEOUT (or the caller's deadline)."""
        timeout = IN_EFFECT_TIMEOUT
        if (remaining := deadline_of(context)) is not None:
            timeout = min(timeout, max(0.0, remaining - DEADLINE_MARGIN))
        try:
            in_effect = self._follower.wait_for(self._store.last_seq(), timeout)
        except StoreUnavailable:
            in_effect = False
        if not in_effect:
            raise NotInEffect(
                f"{change} was stored but is not yet in effect: the matcher has not caught "
                f"up with the store within {timeout:.1f}s, and will apply it when it does",
                metadata,
            )

    @unary("SubmitCase", "submit")
    def SubmitCase(
        self,
        request: submission_pb2.SubmitCaseRequest,
        context: grpc.ServicerContext,
        caller: Caller,
    ) -> submission_pb2.SubmitCaseResponse:
        n = len(request.hashes)
        if not 1 <= n <= MAX_CASE_HASHES:
            raise InvalidRequest(f"a case holds 1 to {MAX_CASE_HASHES} hashes, got {n}")
        self.gate.charge(caller, n)
        entries = [
            parse_entry(f"hash {i}", h, caller.visitor) for i, h in enumerate(request.hashes)
        ]
        refused = packed(entries, image_numbers(request.hashes))
        if refused:
            i = min(refused)
            raise InvalidRequest(
                f"hash {i}: refused: {refused[i]} ({len(refused)} hashes refused in all)"
            )
        self.gate.admit_case(caller, n)
        receipt = self._store.create_case(entries)
        self._audit.record(
            caller.actor, "submit_case", CASE_LIST, case=receipt.case_id, added=receipt.added
        )
        self.in_effect(
            context,
            f"case {receipt.case_id} (its receipt is in this error's trailing metadata; "
            "do not submit it again)",
            (CASE_ID_METADATA, receipt.case_id),
            (SECRET_METADATA, receipt.secret),
        )
        return submission_pb2.SubmitCaseResponse(
            case_id=receipt.case_id, withdrawal_secret=receipt.secret, added=receipt.added
        )

    @unary("Withdraw", "submit")
    def Withdraw(
        self, request: submission_pb2.CaseRequest, context: grpc.ServicerContext, caller: Caller
    ) -> submission_pb2.WithdrawResponse:
        self.gate.charge(caller, 1)
        removed = self._store.withdraw_case(*_case(request))
        self._audit.record(
            caller.actor, "withdraw_case", CASE_LIST, case=request.case_id, removed=removed
        )
        self.in_effect(context, "the withdrawal (withdrawing again is safe)")
        return submission_pb2.WithdrawResponse(removed=removed)

    @unary("CaseStatus", "submit")
    def CaseStatus(
        self, request: submission_pb2.CaseRequest, context: grpc.ServicerContext, caller: Caller
    ) -> submission_pb2.CaseStatusResponse:
        self.gate.charge(caller, 1)
        status = self._store.case_status(*_case(request))
        return submission_pb2.CaseStatusResponse(
            active_hashes=status.active, withdrawn=status.withdrawn
        )

    @unary("CreateList", "list-manage")
    def CreateList(
        self,
        request: submission_pb2.CreateListRequest,
        context: grpc.ServicerContext,
        caller: Caller,
    ) -> submission_pb2.ListInfo:
        _may_manage(caller, request.name)
        LIST_NAME.check(request.name)
        OWNER.check(request.owner)
        DESCRIPTION.check(request.description)
        kind = request.kind or "match"
        if kind not in LIST_KINDS:
            raise InvalidRequest(f"kind {kind[:40]!r} is not one of {', '.join(LIST_KINDS)}")
        everyone = request.all_tenants
        if everyone and kind != "negative":
            raise InvalidRequest("only a negative list is for all tenants")
        if everyone and not caller.may_reach_negative(None, ""):
            raise PermissionDenied("only an admin key creates a negative list for every tenant")
        distances = _distances(request.max_distance)
        threshold = _threshold(request.name, request)
        info = self._store.create_list(
            request.name,
            request.owner,
            request.trust or "unverified",
            request.description,
            kind,
            caller.tenant if kind == "negative" and not everyone else None,
            quarantine=request.quarantine_anomalies,
            max_distances=distances,
            feedback_threshold=threshold,
        )
        self._policies.changed()
        self._audit.record(
            caller.actor,
            "create_list",
            request.name,
            owner=request.owner,
            trust=request.trust or "unverified",
            quarantine_anomalies=request.quarantine_anomalies,
            kind=kind,
            all_tenants=everyone,
            max_distance=dict(distances),
            feedback_threshold=info.feedback_threshold,
        )
        return self._info(request.name)

    @unary("GetList", "list-manage")
    def GetList(
        self, request: submission_pb2.GetListRequest, context: grpc.ServicerContext, caller: Caller
    ) -> submission_pb2.ListInfo:
        return self._info(request.name, self.reach(caller, request.name))

    @unary("SetListPolicy", "list-manage")
    def SetListPolicy(
        self,
        request: submission_pb2.SetListPolicyRequest,
        context: grpc.ServicerContext,
        caller: Caller,
    ) -> submission_pb2.ListInfo:
        self.reach(caller, request.list)
        changes: dict[str, int | None] = dict(_distances(request.max_distance))
        for signal in request.default_distance:
            if signal in changes:
                raise InvalidRequest(f"{signal[:40]!r} is both given a distance and reset")
            if (problem := distance_problem(signal, 0)) is not None:
                raise InvalidRequest(f"default_distance: {problem}")
            changes[signal] = None
        quarantine = (
            request.quarantine_anomalies if request.HasField("quarantine_anomalies") else None
        )
        threshold = _threshold(request.list, request)
        if changes:
            self._store.set_list_distances(request.list, changes)
        if quarantine is not None:
            self._store.set_quarantine(request.list, quarantine)
        if threshold is not None:
            self._store.set_feedback_threshold(request.list, threshold)
        self._policies.changed()
        self._audit.record(
            caller.actor,
            "set_list_policy",
            request.list,
            max_distance=changes,
            **({} if quarantine is None else {"quarantine_anomalies": quarantine}),
            **({} if threshold is None else {"feedback_threshold": threshold}),
        )
        return self._info(request.list)

    @unary("Upload", "list-manage")
    def Upload(
        self,
        requests: Iterator[submission_pb2.UploadRequest],
        context: grpc.ServicerContext,
        caller: Caller,
    ) -> submission_pb2.UploadResponse:
        response = submission_pb2.UploadResponse()
        named: list[str] = []
        complete = False
        try:
            self._receive(requests, caller, response, named)
            complete = True
        finally:
            # What was committed is audited even when a later message fails the upload.
            if named and (complete or response.added or response.duplicates):
                self._audit.record(
                    caller.actor,
                    "upload",
                    named[0],
                    added=response.added,
                    duplicates=response.duplicates,
                    refused=response.refused,
                    **({} if complete else {"failed": True}),
                )
        self._follower.poke()
        return response

    def _receive(
        self,
        requests: Iterator[submission_pb2.UploadRequest],
        caller: Caller,
        response: submission_pb2.UploadResponse,
        named: list[str],
    ) -> None:
        """Read an upload into `response`, committing each message; `named` gets the list."""
        list_name = submitter = ""
        index = 0
        for request in requests:
            if not list_name:
                if not request.list:
                    raise InvalidRequest("the first UploadRequest must name the list")
                list_name, submitter = request.list, request.submitter or caller.actor
                SUBMITTER.check(submitter)
                info = self.reach(caller, list_name)  # NOT_FOUND before any entry is read
                named.append(list_name)
            elif request.list and request.list != list_name:
                raise InvalidRequest(
                    f"one upload goes to one list: {list_name!r}, not {request.list[:40]!r}"
                )
            # Charged message by message, paced to the key's rate: what was committed
            # before a refusal stays.
            self.gate.charge(caller, len(request.entries), patience=STREAM_PATIENCE)
            parsed: list[tuple[int, NewEntry]] = []
            for m in request.entries:
                try:
                    parsed.append((index, parse_entry(f"entry {index}", m)))
                except InvalidRequest as exc:
                    response.refused += 1
                    if len(response.refusals) < MAX_REFUSALS_LISTED:
                        response.refusals.add(index=index, reason=str(exc))
                index += 1
            images = image_numbers(request.entries)
            first = index - len(request.entries)
            refused = packed([e for _, e in parsed], [images[i - first] for i, _ in parsed])
            accepted: list[tuple[int, NewEntry]] = []
            for k, (i, entry) in enumerate(parsed):
                if k not in refused:
                    accepted.append((i, entry))
                    continue
                response.refused += 1
                if len(response.refusals) < MAX_REFUSALS_LISTED:
                    response.refusals.add(index=i, reason=f"entry {i}: refused: {refused[k]}")
            if info.kind == "negative" and info.tenant is not None:
                accepted = self._within_negative_bound(info.tenant, accepted, response)
            # Committed per message: what the server has read survives a crash, and a
            # re-sent upload only counts duplicates.
            counts = self._store.add_entries(
                list_name, [e for _, e in accepted], submitter=submitter, create=False
            )
            response.added += counts.added
            response.duplicates += counts.duplicates
        if not list_name:
            raise InvalidRequest("an upload needs at least one message naming the list")

    def _within_negative_bound(
        self,
        tenant: str,
        accepted: list[tuple[int, NewEntry]],
        response: submission_pb2.UploadResponse,
    ) -> list[tuple[int, NewEntry]]:
        """The entries a tenant's negative lists still have room for; the rest refused."""
        held = sum(
            self._store.list_info(p.name).entries
            for p in self._store.list_policies()
            if p.kind == "negative" and p.tenant == tenant
        )
        room = max(0, MAX_TENANT_NEGATIVE_ENTRIES - held)
        for i, _ in accepted[room:]:
            response.refused += 1
            if len(response.refusals) < MAX_REFUSALS_LISTED:
                response.refusals.add(
                    index=i,
                    reason=f"entry {i}: refused: a tenant's negative lists hold at most "
                    f"{MAX_TENANT_NEGATIVE_ENTRIES} entries in all",
                )
        return accepted[:room]

    @unary("RemoveEntries", "list-manage")
    def RemoveEntries(
        self,
        request: submission_pb2.RemoveEntriesRequest,
        context: grpc.ServicerContext,
        caller: Caller,
    ) -> submission_pb2.RemoveEntriesResponse:
        self.reach(caller, request.list)
        self.gate.charge(caller, len(request.entries))
        keys = _keys(request.entries)
        removed = self._store.remove_entries(request.list, keys)
        self._audit.record(
            caller.actor, "remove_entries", request.list, asked=len(keys), removed=removed
        )
        self.in_effect(context, "the removal (removing again is safe)")
        return submission_pb2.RemoveEntriesResponse(removed=removed)

    def remove_content(self, caller: Caller, list_name: str, content_id: int) -> int:
        """Remove one entry by its content id (HMA's bank routes); returns once in effect."""
        self.reach(caller, list_name)
        self.gate.charge(caller, 1)  # one entry, as RemoveEntries charges
        removed = self._store.remove_content(list_name, content_id)
        self._audit.record(
            caller.actor, "remove_entries", list_name, content_id=content_id, removed=removed
        )
        self.in_effect(None, "the removal (removing again is safe)")
        return removed

    @unary("ConfirmEntry", "list-manage")
    def ConfirmEntry(
        self,
        request: submission_pb2.ConfirmEntryRequest,
        context: grpc.ServicerContext,
        caller: Caller,
    ) -> submission_pb2.ConfirmEntryResponse:
        self.reach(caller, request.list)
        match_id = parse_match_id(request.match_id)
        confirmed = self._store.confirm_entry(request.list, match_id)
        if confirmed:
            self._audit.record(
                caller.actor, "confirm_entry", request.list, match_id=request.match_id
            )
            self._confirmed(match_id)
        return submission_pb2.ConfirmEntryResponse(confirmed=confirmed)


def _may_manage(caller: Caller, list_name: str) -> None:
    if not caller.may_manage(list_name):
        raise PermissionDenied(f"{caller.actor} may not manage list {list_name!r}")


def _keys(entries: Iterable[submission_pb2.HashEntry]) -> list[tuple[str, bytes]]:
    keys = []
    for i, m in enumerate(entries):
        if m.signal == VPDQ and m.WhichOneof("value") == "hash":
            # A video removed by its stored hash, the digest of its frames.
            if len(m.hash) != DIGEST_BYTES:
                raise InvalidRequest(f"entry {i}: a vpdq digest is {DIGEST_BYTES} bytes")
            keys.append((VPDQ, m.hash))
        elif m.signal == VPDQ or m.HasField("video"):
            keys.append((VPDQ, video_digest(video_frames(f"entry {i}", m))))
        else:
            signal, hash_bytes = parse_hash(f"entry {i}", m)
            keys.append((signal.name, hash_bytes))
    return keys


def _threshold(
    list_name: str,
    request: submission_pb2.CreateListRequest | submission_pb2.SetListPolicyRequest,
) -> int | None:
    """The request's feedback threshold, if it sets one, checked before anything is
    written (a policy change is all or nothing)."""
    if not request.HasField("feedback_threshold"):
        return None
    tenants = request.feedback_threshold
    if (problem := threshold_problem(tenants, list_name == CASE_LIST)) is not None:
        raise InvalidRequest(problem)
    return tenants


def _distances(requested: Mapping[str, int]) -> dict[str, int]:
    """A request's per-signal maximum distances, each checked against its signal."""
    for signal, distance in requested.items():
        if (problem := distance_problem(signal, distance)) is not None:
            raise InvalidRequest(f"max_distance: {problem}")
    return dict(requested)
