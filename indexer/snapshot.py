"""The snapshot format: what the indexer writes and the service loads.

A snapshot root holds numbered version directories and a `CURRENT` file naming
the one in service. A version is written into a temporary directory, fsynced
and renamed into place before `CURRENT` is atomically replaced, so a reader
never sees half a snapshot. Every file's SHA-256 is in `manifest.json`; a
reader verifies the very bytes it then parses, and refuses the snapshot,
saying why, on any mismatch.

Per signal type: `<signal>.faiss` (a FAISS IndexBinaryFlat of the hashes),
`<signal>.lists.npy` (list position per row), `<signal>.match_ids.npy`
(opaque match id per row) and `<signal>.entry_ids.npy` (store id per row).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

FORMAT = "hashmatch-snapshot"
FORMAT_VERSION = 1
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
KEEP_VERSIONS = 3


class SnapshotError(Exception):
    """A snapshot that can't be served; the message says which file and why."""


@dataclass(frozen=True)
class SignalTable:
    """One signal type's entries, row-aligned across the arrays."""

    signal: str
    bits: int
    threshold: int
    exact: bool
    hashes: npt.NDArray[np.uint8]  # (n, bits / 8)
    list_positions: npt.NDArray[np.uint32]
    match_ids: npt.NDArray[np.uint8]  # (n, MATCH_ID_BYTES)
    entry_ids: npt.NDArray[np.int64]
    # The loaded faiss.IndexBinaryFlat (a reader's only); `hashes` is a view of its codes.
    index: Any = None

    @property
    def count(self) -> int:
        return int(self.hashes.shape[0])


@dataclass(frozen=True)
class Snapshot:
    version: int
    created_at: str
    last_entry_id: int
    lists: tuple[str, ...]
    tables: dict[str, SignalTable]
    path: Path


def version_dir_name(version: int) -> str:
    return f"v{version:010d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> dict[str, Any]:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _npy_bytes(array: npt.NDArray[Any]) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _faiss_bytes(table: SignalTable) -> bytes:
    index = faiss.IndexBinaryFlat(table.bits)
    if table.count:
        index.add(np.ascontiguousarray(table.hashes))
    data: bytes = faiss.serialize_index_binary(index).tobytes()
    return data


def list_versions(root: Path) -> list[int]:
    found = []
    for child in root.glob("v*"):
        if child.is_dir() and child.name[1:].isdigit():
            found.append(int(child.name[1:]))
    return sorted(found)


def current_version(root: Path) -> int | None:
    try:
        text = (root / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    if not text.isdigit():
        raise SnapshotError(f"{root / CURRENT}: expected a version number, got {text[:40]!r}")
    return int(text)


def write_snapshot(
    root: Path, lists: tuple[str, ...], tables: list[SignalTable], last_entry_id: int
) -> Path:
    """Write a new version under `root`, make it current, and prune old versions."""
    root.mkdir(parents=True, exist_ok=True)
    version = max([0, *list_versions(root), current_version(root) or 0]) + 1
    tmp = root / f".tmp-{version_dir_name(version)}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        files: dict[str, Any] = {}
        signals: dict[str, Any] = {}
        for t in tables:
            files[f"{t.signal}.faiss"] = _write_file(tmp / f"{t.signal}.faiss", _faiss_bytes(t))
            for suffix, array in (
                ("lists", t.list_positions),
                ("match_ids", t.match_ids),
                ("entry_ids", t.entry_ids),
            ):
                name = f"{t.signal}.{suffix}.npy"
                files[name] = _write_file(tmp / name, _npy_bytes(array))
            signals[t.signal] = {
                "bits": t.bits,
                "threshold": t.threshold,
                "exact": t.exact,
                "count": t.count,
            }
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "last_entry_id": last_entry_id,
            "lists": list(lists),
            "signals": signals,
            "files": files,
        }
        _write_file(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        _fsync_dir(tmp)
        final = root / version_dir_name(version)
        os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer = root / f".{CURRENT}.{secrets.token_hex(4)}"
    _write_file(pointer, f"{version}\n".encode())
    os.replace(pointer, root / CURRENT)
    _fsync_dir(root)
    for old in list_versions(root)[:-KEEP_VERSIONS]:
        shutil.rmtree(root / version_dir_name(old), ignore_errors=True)
    return final


def _verified(directory: Path, name: str, expected: dict[str, Any]) -> bytes:
    path = directory / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SnapshotError(f"{path}: missing") from None
    if len(data) != expected.get("size"):
        raise SnapshotError(f"{path}: size {len(data)} bytes, manifest says {expected.get('size')}")
    if hashlib.sha256(data).hexdigest() != expected.get("sha256"):
        raise SnapshotError(f"{path}: SHA-256 does not match the manifest (corrupt or tampered)")
    return data


def _load_npy(data: bytes, name: str) -> npt.NDArray[Any]:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise SnapshotError(f"{name}: not a valid array: {exc}") from None


def read_snapshot(root: Path) -> Snapshot:
    """Load and verify the current snapshot under `root`."""
    version = current_version(root)
    if version is None:
        raise SnapshotError(f"{root}: no snapshot ({CURRENT} missing); run `hashmatch index build`")
    return read_snapshot_dir(root / version_dir_name(version))


def read_snapshot_dir(directory: Path) -> Snapshot:
    try:
        manifest = json.loads((directory / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise SnapshotError(f"{directory / MANIFEST}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"{directory / MANIFEST}: not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SnapshotError(f"{directory / MANIFEST}: not a hashmatch snapshot manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise SnapshotError(
            f"{directory}: format version {manifest.get('format_version')}, "
            f"this hashmatch reads {FORMAT_VERSION}"
        )
    try:
        files: dict[str, Any] = manifest["files"]
        tables = {}
        for signal, info in manifest["signals"].items():
            index_data = _verified(directory, f"{signal}.faiss", files[f"{signal}.faiss"])
            arrays = {
                suffix: _load_npy(
                    _verified(directory, f"{signal}.{suffix}.npy", files[f"{signal}.{suffix}.npy"]),
                    f"{signal}.{suffix}.npy",
                )
                for suffix in ("lists", "match_ids", "entry_ids")
            }
            index: Any = faiss.deserialize_index_binary(np.frombuffer(index_data, dtype=np.uint8))
            n, nbytes = int(index.ntotal), int(index.code_size)
            hashes = (
                faiss.rev_swig_ptr(index.xb.data(), n * nbytes).reshape(n, nbytes)
                if n
                else np.zeros((0, nbytes), dtype=np.uint8)
            )
            if any(len(a) != n for a in arrays.values()) or n != info["count"]:
                raise SnapshotError(f"{directory}: {signal} files disagree on the entry count")
            tables[signal] = SignalTable(
                signal,
                int(info["bits"]),
                int(info["threshold"]),
                bool(info["exact"]),
                hashes,
                arrays["lists"],
                arrays["match_ids"],
                arrays["entry_ids"],
                index,
            )
        return Snapshot(
            int(manifest["version"]),
            str(manifest["created_at"]),
            int(manifest["last_entry_id"]),
            tuple(manifest["lists"]),
            tables,
            directory,
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise SnapshotError(f"{directory}: malformed snapshot: {exc!r}") from None
