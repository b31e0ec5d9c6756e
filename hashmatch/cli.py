"""The `hashmatch` command line.

Caller-side verbs (hash, check, demo) live here; server-side verbs (import,
index, serve) are contributed by the indexer and service packages through
the `hashmatch.commands` entry point group, so this package never imports them.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, TextIO

import click
import grpc

from hashmatch.channel import Credentials, connection_options, rpc_failure
from hashmatch.client import MatchClient, Verdict
from hashmatch.codec import HashFormatError
from hashmatch.hashing import hash_files
from hashmatch.signals import DEFAULT_SIGNALS, Signal, UnknownSignalError, get_signal
from hashmatch.video import VideoError, is_video
from hashmatch.video_entries import VPDQ
from hashmatch.video_files import video_hash_objects
from hashmatch.wire import MAX_QUERIES_PER_REQUEST


class SignalList(click.ParamType):  # type: ignore[type-arg]
    """A comma-separated list of signal names, such as `pdq,phash`."""

    name = "signals"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            return tuple(get_signal(n.strip()) for n in str(value).split(",") if n.strip())
        except UnknownSignalError as exc:
            self.fail(str(exc), param, ctx)


SIGNALS_OPTION = click.option(
    "--signal",
    "signals",
    type=SignalList(),
    default=",".join(DEFAULT_SIGNALS),
    show_default=True,
    help="Signal types to compute, comma-separated: pdq,phash,dhash,ahash,whash,md5,sha256.",
)


def emit(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj))


def warn(message: str) -> None:
    click.echo(f"hashmatch: {message}", err=True)


class CommandGroup(click.Group):
    """Adds the server-side verbs registered under the `hashmatch.commands` entry points.

    A verb's module is imported only when that verb is asked for: the server side pulls
    in numba, FAISS and the store, which a caller's `submit` or `list upload` has no use
    for. Listing the verbs reads the entry points' names and imports nothing."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        plugins = {ep.name for ep in entry_points(group="hashmatch.commands")}
        return sorted({*super().list_commands(ctx), *plugins})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        for ep in entry_points(group="hashmatch.commands", name=cmd_name):
            try:
                loaded: click.Command = ep.load()
            except ImportError as exc:
                warn(f"command {ep.name!r} unavailable: {exc}")
                continue
            self.add_command(loaded, cmd_name)
            return loaded
        return None


@click.group(cls=CommandGroup)
@click.version_option(package_name="hashmatch")
def main() -> None:
    """Match hashes of known abusive imagery. Images are hashed here, on your machine;
    only hashes ever reach a server."""


class HashSignalList(SignalList):
    """Signal names for `hash`, which also takes vpdq (videos)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        names = tuple(n.strip() for n in str(value).split(",") if n.strip())
        super().convert(",".join(n for n in names if n != VPDQ), param, ctx)
        return names


@main.command("hash")
@click.option(
    "--signal",
    "names",
    type=HashSignalList(),
    default=",".join(DEFAULT_SIGNALS),
    show_default=True,
    help="Signal types to compute, comma-separated: pdq,phash,dhash,ahash,whash,md5,sha256 "
    "for images; vpdq,md5,sha256 for videos (a video asked for none of these gets vpdq).",
)
@click.option(
    "--variants",
    "list_variants",
    is_flag=True,
    help="Also print the variants `submit` lists an image under (its crops, without borders, "
    'band cuts); each object names its "variant". For hotlines listing their own images.',
)
@click.option(
    "--seconds-per-frame",
    type=click.FloatRange(min=0, min_open=False),
    default=1.0,
    show_default=True,
    help="vpdq: hash one video frame per this many seconds (0: every frame).",
)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def hash_command(
    names: tuple[str, ...], list_variants: bool, seconds_per_frame: float, files: tuple[str, ...]
) -> None:
    """Hash image and video FILES locally (videos told apart by content); print one JSON
    object per file and signal."""
    signals = tuple(get_signal(n) for n in names if n != VPDQ)
    failed = False
    for path in files:
        if is_video(path):
            try:
                found = video_hash_objects(path, names, seconds_per_frame)
            except (VideoError, OSError) as exc:
                warn(f"{path}: {exc}")
                failed = True
                continue
            for obj in found:
                emit({"file": path, **obj})
            continue
        if not signals:
            warn(f"{path}: not a video, and vpdq hashes only videos")
            failed = True
            continue
        failed |= _emit_image_hashes(path, signals, list_variants)
    sys.exit(1 if failed else 0)


def _emit_image_hashes(path: str, signals: tuple[Signal, ...], list_variants: bool) -> bool:
    """Print an image's hashes; True if it could not be hashed."""
    failed = False
    for result in hash_files([path], signals, "list" if list_variants else None):
        if result.error:
            warn(f"{result.file}: {result.error}")
            failed = True
        for k, h in enumerate(result.hashes):
            sig = get_signal(h.signal)
            obj: dict[str, Any] = {
                "file": result.file,
                "signal": h.signal,
                "hash": sig.to_hex(h.hash),
                "quality": h.quality,
            }
            if result.variants is not None:
                obj["variant"] = result.variants[k]
            emit(obj)
    return failed


@dataclass(frozen=True)
class CheckInput:
    """One line of `check` output: a file or a SIGNAL:HEX, its queries or why it has none.
    For an image checked robustly, `variants` names what each query hashed (an
    orientation, a trim...)."""

    key: str
    label: str
    queries: tuple[tuple[str, bytes], ...] = ()
    error: str | None = None
    variants: tuple[str, ...] | None = None


def parse_signal_hex(text: str) -> tuple[str, bytes]:
    signal_name, sep, hex_text = text.strip().partition(":")
    if not sep:
        raise HashFormatError(f"expected SIGNAL:HEX, got {text.strip()!r}")
    signal = get_signal(signal_name.strip().lower())
    return signal.name, signal.parse_hex(hex_text.strip())


def hash_inputs(texts: Iterable[str]) -> Iterator[CheckInput]:
    for text in texts:
        try:
            yield CheckInput("hash", text, (parse_signal_hex(text),))
        except (HashFormatError, UnknownSignalError) as exc:
            yield CheckInput("hash", text, error=str(exc))


def hash_file_lines(stream: TextIO) -> Iterator[str]:
    for line in stream:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield stripped


def image_inputs(
    paths: Iterable[str], signals: Sequence[Signal], robust: bool = True
) -> Iterator[CheckInput]:
    for result in hash_files(paths, signals, "check" if robust else None):
        queries = tuple((h.signal, h.hash) for h in result.hashes)
        yield CheckInput("file", result.file, queries, result.error, result.variants)


def verdict_object(item: CheckInput, verdicts: Sequence[Verdict]) -> dict[str, Any]:
    matches = []
    seen: set[tuple[str, str]] = set()
    capped = False
    for k, v in enumerate(verdicts):
        capped |= v.capped
        for m in v.matches:
            if (m.list, m.match_id) in seen:
                continue  # one entry found through several variants: report the first
            seen.add((m.list, m.match_id))
            match: dict[str, Any] = {"signal": m.signal, "list": m.list, "match_id": m.match_id}
            if m.distance is not None:  # a match-only key gets none
                match["distance"] = m.distance
            if item.variants is not None:
                match["variant"] = item.variants[k]
            if m.variant:
                match["listed_variant"] = m.variant
            matches.append(match)
    found = {item.key: item.label, "matched": bool(matches), "matches": matches}
    if capped:
        found["capped"] = True  # the server returned only the closest matches
    return found


def check_inputs(client: MatchClient, items: Iterable[CheckInput]) -> Iterator[dict[str, Any]]:
    """Verdicts in input order; queries are sent in batches of up to the request limit."""
    it = iter(items)
    pending: CheckInput | None = None
    while True:
        chunk: list[CheckInput] = [pending] if pending is not None else []
        count = len(pending.queries) if pending is not None else 0
        pending = None
        for item in it:
            if chunk and count + len(item.queries) > MAX_QUERIES_PER_REQUEST:
                pending = item
                break
            chunk.append(item)
            count += len(item.queries)
        if not chunk:
            return
        # Each input's queries (an image's robust probes) are numbered as one image.
        images = [t for t, item in enumerate(chunk) for _ in item.queries]
        queries = [q for item in chunk for q in item.queries]
        # Inputs that all failed to hash leave nothing to ask the server.
        verdicts = iter(client.check(queries, images) if queries else [])
        for item in chunk:
            if item.error is not None:
                yield {item.key: item.label, "error": item.error}
            else:
                yield verdict_object(item, list(itertools.islice(verdicts, len(item.queries))))


def video_verdict(client: MatchClient, path: str, phased: bool) -> dict[str, Any]:
    """A video file hashed here (vPDQ; `phased`: at every phase of each second, the
    client's check_video_file) and checked as one: the listed videos enough of its frames
    match, with the share matched each way."""
    try:
        verdict = client.check_video_file(path, plain=not phased)
    except OSError as exc:
        return {"file": path, "error": f"cannot read file: {exc.strerror or exc}"}
    except VideoError as exc:
        return {"file": path, "error": str(exc)}
    matches = []
    for m in verdict.matches:
        match: dict[str, Any] = {"signal": VPDQ, "list": m.list, "match_id": m.match_id}
        if m.query_match_percent is not None:  # a match-only key gets no shares
            match["query_match_percent"] = round(m.query_match_percent, 2)
            match["compared_match_percent"] = round(m.compared_match_percent or 0.0, 2)
        matches.append(match)
    found = {
        "file": path,
        "matched": verdict.matched,
        "matches": matches,
        "frames_matched_on": verdict.frames_matched_on,
    }
    if verdict.capped:
        found["capped"] = True
    return found


def file_checks(
    client: MatchClient, paths: Iterable[str], signals: Sequence[Signal], robust: bool
) -> Iterator[dict[str, Any]]:
    """Verdicts for image and video files (told apart by content), in input order."""
    images: list[str] = []
    for path in paths:
        if not is_video(path):
            images.append(path)
            continue
        yield from check_inputs(client, image_inputs(images, signals, robust))
        images = []
        yield video_verdict(client, path, phased=robust)
    yield from check_inputs(client, image_inputs(images, signals, robust))


@main.command("check")
@click.option("--server", required=True, metavar="HOST:PORT", help="MatchService address.")
@SIGNALS_OPTION
@click.option(
    "--hash",
    "hash_mode",
    is_flag=True,
    help="Treat the arguments as SIGNAL:HEX hashes instead of image files.",
)
@click.option(
    "--hash-file",
    type=click.File("r"),
    default=None,
    help="Read SIGNAL:HEX hashes, one a line, from FILE ('-' for stdin).",
)
@click.option(
    "--robust/--plain",
    default=True,
    show_default=True,
    help="--robust also checks each image mirrored, turned, without borders and without a "
    "caption band (14-16 hashes for pdq,phash; each match says which variant found it), "
    "and checks each video phased (16 frames a second, each second counted as one frame: "
    "finds trims by a fraction of a second); "
    "--plain checks each signal's hash of the image alone, and vPDQ's frames of a video.",
)
@click.argument("inputs", nargs=-1)
@connection_options
def check_command(
    server: str,
    credentials: Credentials,
    signals: tuple[Signal, ...],
    hash_mode: bool,
    hash_file: TextIO | None,
    robust: bool,
    inputs: tuple[str, ...],
) -> None:
    """Check images and videos (hashed locally) or hashes against the list on SERVER.

    Prints one JSON object per input, in input order. A video (told from an image by its
    content) is hashed with vPDQ and checked as one (phased unless --plain).
    """
    items: Iterable[CheckInput] | None = None
    if hash_file is not None:
        if inputs:
            raise click.UsageError("--hash-file takes no further arguments")
        items = hash_inputs(hash_file_lines(hash_file))
    elif hash_mode:
        if not inputs:
            raise click.UsageError("--hash needs at least one SIGNAL:HEX argument")
        items = hash_inputs(inputs)
    else:
        if not inputs:
            raise click.UsageError(
                "give image or video files, --hash SIGNAL:HEX ..., or --hash-file FILE"
            )
    failed = False
    try:
        with MatchClient(server, credentials=credentials) as client:
            answers = (
                check_inputs(client, items)
                if items is not None
                else file_checks(client, inputs, signals, robust)
            )
            for obj in answers:
                if "error" in obj:
                    failed = True
                    warn(f"{obj.get('file') or obj.get('hash')}: {obj['error']}")
                emit(obj)
    except grpc.RpcError as exc:
        raise click.ClickException(rpc_failure(server, exc)) from None
    sys.exit(1 if failed else 0)


@main.command("demo")
@click.option(
    "--keep",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the demo's store and snapshot in this directory.",
)
def demo_command(keep: str | None) -> None:
    """Run the whole path on the bundled stand-in photos and print a verdict table."""
    from hashmatch.demo.story import run_demo

    sys.exit(run_demo(keep))
