"""CLI verbs that feed the list over SubmissionService: `submit`, `withdraw`, `status`
(a victim's case) and `list create|info|policy|upload|remove` (a hotline's lists).

Images are hashed here, on the submitter's machine; only hashes are sent.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import click
import grpc
from click.core import ParameterSource
from tqdm import tqdm

from hashmatch.channel import Credentials, connection_options, rpc_failure
from hashmatch.cli import SIGNALS_OPTION, warn
from hashmatch.codec import HashFormatError
from hashmatch.feedback import CASE_LIST_THRESHOLD, MAX_THRESHOLD
from hashmatch.images import ImageError, ImageSource
from hashmatch.list_formats import NewEntry, Refusal, read_lines, video_entry
from hashmatch.signals import SIGNALS, Signal, UnknownSignalError, get_signal
from hashmatch.submission import (
    MAX_CASE_HASHES,
    UPLOAD_BATCH,
    CaseNotYetInEffect,
    SubmissionClient,
)
from hashmatch.v1 import submission_pb2
from hashmatch.variants import listing_variants
from hashmatch.video import VideoError, hash_video, is_video
from hashmatch.video_entries import VPDQ, indexed_signal, listing_problem

SERVER_OPTION = click.option(
    "--server", required=True, metavar="HOST:PORT", help="SubmissionService address."
)
REMOVE_BATCH = 10_000


def _client(server: str, credentials: Credentials) -> SubmissionClient:
    return SubmissionClient(server, credentials=credentials)


def _fail(server: str, exc: grpc.RpcError) -> click.ClickException:
    return click.ClickException(rpc_failure(server, exc))


def video_file_entry(path: str) -> NewEntry | None:
    """A video file hashed here (vPDQ, with scaled frames for its downscaled copies) as the
    one entry it is listed as; None, with the reason said, if it can't be."""
    try:
        frames = hash_video(path, scaled=True)
    except OSError as exc:
        warn(f"{path}: cannot read file: {exc.strerror or exc}")
        return None
    except VideoError as exc:
        warn(f"{path}: {exc}")
        return None
    if reason := listing_problem(frames):
        warn(f"{path}: vpdq not submitted: {reason}")
        return None
    return video_entry(frames)


def case_entries(
    images: tuple[str, ...], signals: tuple[Signal, ...], variants: bool = True
) -> list[NewEntry]:
    """Hashes of the images that are safe to list (with `variants`, also of their crops,
    borderless and band-cut versions: hashmatch.variants); the rest are named."""
    entries = []
    for path in images:
        if is_video(path):
            if (video := video_file_entry(path)) is not None:
                entries.append(video)
            continue
        try:
            source = ImageSource(Path(path).read_bytes())
            found = (
                [(v.name, v.hash) for v in listing_variants(source, signals)]
                if variants
                else [("original", signal.compute(source)) for signal in signals]
            )
        except OSError as exc:
            warn(f"{path}: cannot read file: {exc.strerror or exc}")
            continue
        except ImageError as exc:
            warn(f"{path}: {exc}")
            continue
        for name, h in found:
            reason = SIGNALS[h.signal].degenerate(h.hash, h.quality)
            if reason and name == "original":
                warn(f"{path}: {h.signal} not submitted: {reason}")
            elif not reason:
                variant = "" if name == "original" else name
                entries.append(NewEntry(h.signal, h.hash, h.quality, None, variant))
    return entries


@click.command("submit")
@SERVER_OPTION
@connection_options
@SIGNALS_OPTION
@click.option(
    "--variants/--no-variants",
    default=True,
    show_default=True,
    help="Also list crops and borderless versions, so cropped or framed re-uploads match.",
)
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
def submit_command(
    server: str,
    credentials: Credentials,
    signals: tuple[Signal, ...],
    variants: bool,
    images: tuple[str, ...],
) -> None:
    """Hash your IMAGES (photos or videos) on this machine and ask for them to be blocked,
    as one case.

    Only the hashes leave this machine; a video is hashed with vPDQ and listed as one
    entry. You get a case id and a withdrawal secret; keep both to withdraw the case
    later.
    """
    entries = case_entries(images, signals, variants)
    if not entries:
        raise click.ClickException("no usable hashes to submit")
    if len(entries) > MAX_CASE_HASHES:
        raise click.ClickException(
            f"{len(entries)} hashes are more than one case holds ({MAX_CASE_HASHES}): "
            "submit fewer images at a time"
        )
    stored: CaseNotYetInEffect | None = None
    try:
        with _client(server, credentials) as client:
            receipt = client.submit_case(entries)
    except CaseNotYetInEffect as exc:
        stored, receipt = exc, exc.receipt
    except grpc.RpcError as exc:
        raise _fail(server, exc) from None
    click.echo(f"case id:           {receipt.case_id}")
    click.echo(f"withdrawal secret: {receipt.withdrawal_secret}")
    if stored is None:
        click.echo(f"hashes listed:     {receipt.added}")
    click.echo(
        "Keep the case id and the secret somewhere safe: the secret is shown only this once,\n"
        "and it is the only way to withdraw these hashes or ask about them later."
    )
    if stored is not None:
        raise click.ClickException(f"server {server}: {stored}")


CASE_OPTION = click.option("--case", "case_id", required=True, help="The case id from `submit`.")
SECRET_ENV = "HASHMATCH_WITHDRAWAL_SECRET"


def _secret(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The secret as typed at the prompt or read from the environment; the value form
    still works but is deprecated, loudly: it lands in the shell history and, while the
    command runs, in a process list every user of the machine can read."""
    if ctx.get_parameter_source(param.name or "") is ParameterSource.COMMANDLINE:
        warn(
            "warning: --secret VALUE is deprecated and will be refused in a future release: "
            "it puts the withdrawal secret in your shell history and the process list. Leave "
            f"--secret out to be asked for it, or set ${SECRET_ENV}."
        )
    return value


SECRET_OPTION = click.option(
    "--secret",
    prompt="withdrawal secret",
    hide_input=True,
    envvar=SECRET_ENV,
    callback=_secret,
    help=f"Deprecated: leave it out to be asked for the withdrawal secret from `submit`, "
    f"or set ${SECRET_ENV}.",
)


@click.command("withdraw")
@SERVER_OPTION
@connection_options
@CASE_OPTION
@SECRET_OPTION
def withdraw_command(server: str, credentials: Credentials, case_id: str, secret: str) -> None:
    """Withdraw a case: its hashes stop matching before this command returns."""
    try:
        with _client(server, credentials) as client:
            removed = client.withdraw(case_id, secret)
    except grpc.RpcError as exc:
        raise _fail(server, exc) from None
    click.echo(f"case {case_id} withdrawn: {removed} hashes removed")


@click.command("status")
@SERVER_OPTION
@connection_options
@CASE_OPTION
@SECRET_OPTION
def status_command(server: str, credentials: Credentials, case_id: str, secret: str) -> None:
    """How many hashes of a case are active."""
    try:
        with _client(server, credentials) as client:
            status = client.case_status(case_id, secret)
    except grpc.RpcError as exc:
        raise _fail(server, exc) from None
    state = "withdrawn" if status.withdrawn else "active"
    click.echo(f"case {case_id}: {state}, {status.active_hashes} hashes active")


@click.group("list")
def list_group() -> None:
    """Create, fill and curate a hotline's lists on a server."""


def _echo_info(info: submission_pb2.ListInfo) -> None:
    click.echo(f"list {info.name}")
    click.echo(f"  owner:       {info.owner or '-'}")
    click.echo(f"  trust:       {info.trust}")
    click.echo(f"  description: {info.description or '-'}")
    click.echo(f"  created:     {info.created_at}")
    by_signal = ", ".join(f"{s} {n}" for s, n in sorted(info.entries_by_signal.items()))
    click.echo(f"  entries:     {info.entries}" + (f" ({by_signal})" if by_signal else ""))
    click.echo(f"  last change: {info.last_seq}")
    scope = " (all tenants)" if info.all_tenants else ""
    click.echo(f"  kind:        {info.kind or 'match'}{scope}")
    narrowed = ", ".join(f"{s} {d}" for s, d in sorted(info.max_distance.items()))
    click.echo(f"  distances:   {narrowed or 'at each signal threshold'}")
    click.echo(f"  quarantine:  {'yes' if info.quarantine_anomalies else 'no'}")
    if info.kind != "negative":
        k = info.feedback_threshold
        click.echo(f"  feedback:    quarantine on false_positive from {k} tenant{'s' * (k != 1)}")


def _distances(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, int]:
    """SIGNAL=N pairs, each N at most the signal's threshold."""
    found: dict[str, int] = {}
    for text in values:
        name, _, number = text.partition("=")
        name = name.strip()
        try:
            # vpdq: a listed video's frames, matched at PDQ's threshold.
            signal = indexed_signal(name) if name == VPDQ else get_signal(name)
        except UnknownSignalError as exc:
            raise click.BadParameter(str(exc)) from None
        if not number.strip().isdigit() or int(number) > signal.threshold:
            raise click.BadParameter(
                f"{text!r}: give SIGNAL=N with N from 0 to the {name} threshold "
                f"{signal.threshold} (a list can only narrow it)"
            )
        found[VPDQ if name == VPDQ else signal.name] = int(number)
    return found


MAX_DISTANCE_OPTION = click.option(
    "--max-distance",
    "max_distance",
    multiple=True,
    metavar="SIGNAL=N",
    callback=_distances,
    help="The list's own maximum distance for a signal, at most its threshold (repeatable).",
)

FEEDBACK_THRESHOLD_OPTION = click.option(
    "--feedback-threshold",
    "feedback_threshold",
    type=click.IntRange(1, MAX_THRESHOLD),
    default=None,
    metavar="K",
    help=(
        "Distinct tenants whose false_positive reports quarantine an entry until reviewed "
        f"(1-{MAX_THRESHOLD}; victim-cases: at least {CASE_LIST_THRESHOLD}, admin keys only)."
    ),
)


@list_group.command("create")
@SERVER_OPTION
@connection_options
@click.argument("name")
@click.option("--owner", default="", help="Who curates the list.")
@click.option(
    "--trust",
    type=click.Choice(["verified", "unverified"]),
    default="unverified",
    show_default=True,
)
@click.option("--description", default="")
@click.option(
    "--kind",
    type=click.Choice(["match", "negative"]),
    default="match",
    show_default=True,
    help="negative: hashes that must never produce a match for your tenant.",
)
@click.option(
    "--all-tenants", is_flag=True, help="A negative list for every tenant (admin keys only)."
)
@MAX_DISTANCE_OPTION
@click.option(
    "--quarantine-anomalies",
    is_flag=True,
    help="Entries flagged for anomalous matching stop matching until confirmed.",
)
@FEEDBACK_THRESHOLD_OPTION
def create_command(
    server: str,
    credentials: Credentials,
    name: str,
    owner: str,
    trust: str,
    description: str,
    kind: str,
    all_tenants: bool,
    max_distance: dict[str, int],
    quarantine_anomalies: bool,
    feedback_threshold: int | None,
) -> None:
    """Create an empty list NAME."""
    try:
        with _client(server, credentials) as client:
            _echo_info(
                client.create_list(
                    name,
                    owner,
                    trust,
                    description,
                    kind=kind,
                    all_tenants=all_tenants,
                    max_distance=max_distance,
                    quarantine_anomalies=quarantine_anomalies,
                    feedback_threshold=feedback_threshold,
                )
            )
    except grpc.RpcError as exc:
        raise _fail(server, exc) from None


@list_group.command("policy")
@SERVER_OPTION
@connection_options
@click.argument("name")
@MAX_DISTANCE_OPTION
@click.option(
    "--default-distance",
    "default_distance",
    multiple=True,
    metavar="SIGNAL",
    help="Match the signal at its threshold again (repeatable).",
)
@click.option(
    "--quarantine-anomalies/--no-quarantine-anomalies",
    default=None,
    help="Whether entries flagged for anomalous matching stop matching until confirmed.",
)
@FEEDBACK_THRESHOLD_OPTION
def policy_command(
    server: str,
    credentials: Credentials,
    name: str,
    max_distance: dict[str, int],
    default_distance: tuple[str, ...],
    quarantine_anomalies: bool | None,
    feedback_threshold: int | None,
) -> None:
    """Change list NAME's policy (as its manager); prints the list as it now is. A new
    feedback threshold counts the reports already taken at an entry's next report."""
    try:
        with _client(server, credentials) as client:
            _echo_info(
                client.set_policy(
                    name, max_distance, default_distance, quarantine_anomalies, feedback_threshold
                )
            )
    except grpc.RpcError as exc:
        raise _fail(server, exc) from None


@list_group.command("info")
@SERVER_OPTION
@connection_options
@click.argument("name")
def info_command(server: str, credentials: Credentials, name: str) -> None:
    """Show a list's metadata and entry counts."""
    try:
        with _client(server, credentials) as client:
            _echo_info(client.list_info(name))
    except grpc.RpcError as exc:
        raise _fail(server, exc) from None


BARE_SIGNAL_OPTION = click.option(
    "--signal",
    "bare_signal",
    type=click.Choice(sorted(SIGNALS)),
    default=None,
    help="Signal type of lines holding a bare hex hash.",
)


@list_group.command("upload")
@SERVER_OPTION
@connection_options
@click.argument("name")
@click.argument("file", type=click.File("r", encoding="utf-8", errors="replace"))
@BARE_SIGNAL_OPTION
@click.option("--submitter", default="", help="Who uploads (kept as provenance).")
@click.option(
    "--batch",
    type=click.IntRange(1, UPLOAD_BATCH),
    default=UPLOAD_BATCH,
    show_default=True,
    help="Hashes a message: at most the key's burst, which each message is charged against.",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
def upload_command(
    server: str,
    credentials: Credentials,
    name: str,
    file: TextIO,
    bare_signal: str | None,
    submitter: str,
    batch: int,
    progress: bool,
) -> None:
    """Upload the hashes in FILE ('-' for stdin) to list NAME: JSON lines from `hashmatch
    hash`, CSV signal,hexhash[,ref], python-threatexchange lines, vPDQ C++ tool lines, or
    bare hex with --signal. A video FILE (told by its content) is hashed here with vPDQ
    and uploaded as one entry.

    Ends with the counts added, duplicates and refused, and why each was refused.
    """
    refused: list[Refusal] = []
    lines = array("L")  # the file line of each entry sent, to name the server's refusals
    bar = tqdm(unit=" hashes", disable=not progress, file=sys.stderr, mininterval=0.5)
    reading = [0]

    def numbered() -> Iterator[str]:
        for number, text in enumerate(file, start=1):
            reading[0] = number
            yield text

    def entries() -> Iterator[NewEntry]:
        if file.name != "<stdin>" and is_video(file.name):
            video = video_file_entry(file.name)
            if video is None:
                raise click.ClickException(f"{file.name}: not uploaded")
            lines.append(0)
            yield video
            return
        for entry in read_lines(numbered(), bare_signal, refused.append):
            lines.append(reading[0])  # read_lines yields each entry before reading on
            yield entry

    try:
        with _client(server, credentials) as client:
            report = client.upload(name, entries(), submitter, sent=bar.update, batch=batch)
    except grpc.RpcError as exc:
        raise _fail(server, exc) from None
    finally:
        bar.close()
    for r in refused:
        click.echo(f"line {r.line}: refused: {r.reason}", err=True)
    for index, reason in report.refusals:
        click.echo(f"line {lines[index]}: refused: {reason}", err=True)
    more = report.refused - len(report.refusals)
    if more:
        click.echo(f"... and {more} more refused by the server", err=True)
    click.echo(
        f"list {name}: added {report.added}, duplicates {report.duplicates}, "
        f"refused {len(refused) + report.refused}"
    )


@list_group.command("remove")
@SERVER_OPTION
@connection_options
@click.argument("name")
@click.argument("file", type=click.File("r", encoding="utf-8", errors="replace"), required=False)
@BARE_SIGNAL_OPTION
@click.option("--hash", "hashes", multiple=True, metavar="SIGNAL:HEX", help="A hash to remove.")
def remove_command(
    server: str,
    credentials: Credentials,
    name: str,
    file: TextIO | None,
    bare_signal: str | None,
    hashes: tuple[str, ...],
) -> None:
    """Remove entries from list NAME: the hashes in FILE and/or given with --hash.
    They stop matching before this command returns."""
    keys: list[tuple[str, bytes]] = []
    refused: list[Refusal] = []
    if file is not None:
        keys += [(e.signal, e.hash) for e in read_lines(file, bare_signal, refused.append)]
    for text in hashes:
        signal_name, _, hex_text = text.partition(":")
        try:
            signal = get_signal(signal_name)
            keys.append((signal.name, signal.parse_hex(hex_text.strip())))
        except (UnknownSignalError, HashFormatError) as exc:
            raise click.BadParameter(str(exc), param_hint="--hash") from None
    for r in refused:
        click.echo(f"line {r.line}: refused: {r.reason}", err=True)
    if not keys:
        raise click.UsageError("give a FILE of hashes or --hash SIGNAL:HEX")
    removed = 0
    try:
        with _client(server, credentials) as client:
            for start in range(0, len(keys), REMOVE_BATCH):
                removed += client.remove(name, keys[start : start + REMOVE_BATCH])
    except grpc.RpcError as exc:
        raise _fail(server, exc) from None
    click.echo(f"list {name}: removed {removed} of {len(keys)}")
