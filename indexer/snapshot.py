"""The snapshot format: what the indexer writes and the service loads.

A snapshot root holds numbered version directories and a `CURRENT` file naming
the one in service. A version is written into a temporary directory, fsynced
and renamed into place before `CURRENT` is atomically replaced, so a reader
never sees half a snapshot. Every file's SHA-256 is in `manifest.json`; a
reader verifies the very bytes it then parses, and refuses the snapshot,
saying why, on any mismatch.

Per signal type, row-aligned .npy arrays: `<signal>.codes.npy` (the hashes),
`<signal>.lists.npy` (list position), `<signal>.match_ids.npy` (opaque match
id) and `<signal>.entry_ids.npy` (store id); for lists large enough that
multi-index hashing beats a FAISS scan, its tables (`<signal>.mih_bases.npy`,
`mih_rel`, `mih_shifts`, `mih_ids` and `mih_fingerprints`; see indexer/mih.py), with
the chunking plan in the manifest. Arrays are streamed through SHA-256 on
write and on read, so a 10M-entry snapshot never needs a second copy in memory.
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
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from indexer.mih import Plan, Tables

FORMAT = "hashmatch-snapshot"
# 5: multi-index fingerprints are 32-bit lanes (the plan says fingerprint_lanes).
FORMAT_VERSION = 5
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
    mih: Tables | None = None
    # Which variant of a listed image each entry is: an index into variant_names
    # ("" for the image as listed); None when every entry is the image as listed.
    variants: npt.NDArray[np.uint8] | None = None
    variant_names: tuple[str, ...] = ()

    def variant_of(self, rows: npt.NDArray[np.int64]) -> list[str]:
        if self.variants is None:
            return [""] * len(rows)
        return [self.variant_names[c] for c in self.variants[rows].tolist()]

    @property
    def count(self) -> int:
        return int(self.hashes.shape[0])


@dataclass(frozen=True)
class Snapshot:
    version: int
    created_at: str
    last_seq: int
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


class _HashingFile:
    """A binary file that hashes what passes through it, as numpy reads or writes it."""

    def __init__(self, f: io.BufferedIOBase) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._f.write(data)

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:
        got = int(self._f.readinto(buffer) or 0)
        self.sha256.update(buffer[:got])
        self.size += got
        return got

    def digest(self) -> dict[str, Any]:
        return {"sha256": self.sha256.hexdigest(), "size": self.size}


def _write_file(path: Path, data: bytes) -> dict[str, Any]:
    with open(path, "wb") as f:
        out = _HashingFile(f)
        out.write(data)
        f.flush()
        os.fsync(f.fileno())
    return out.digest()


def _write_npy(path: Path, array: npt.NDArray[Any]) -> dict[str, Any]:
    with open(path, "wb") as f:
        out = _HashingFile(f)
        np.save(cast(Any, out), np.ascontiguousarray(array), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    return out.digest()


def _arrays(t: SignalTable) -> dict[str, npt.NDArray[Any]]:
    arrays: dict[str, npt.NDArray[Any]] = {
        "codes": t.hashes,
        "lists": t.list_positions,
        "match_ids": t.match_ids,
        "entry_ids": t.entry_ids,
    }
    if t.variants is not None:
        arrays["variants"] = t.variants
    if t.mih is not None:
        arrays["mih_bases"] = t.mih.bases
        arrays["mih_rel"] = t.mih.rel
        arrays["mih_shifts"] = t.mih.shifts
        arrays["mih_ids"] = t.mih.ids
        arrays["mih_fingerprints"] = t.mih.fingerprints
    return arrays


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
    root: Path, lists: tuple[str, ...], tables: list[SignalTable], last_seq: int
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
            for suffix, array in _arrays(t).items():
                name = f"{t.signal}.{suffix}.npy"
                files[name] = _write_npy(tmp / name, array)
            signals[t.signal] = {
                "bits": t.bits,
                "threshold": t.threshold,
                "exact": t.exact,
                "count": t.count,
                "mih": t.mih.plan.to_json() if t.mih else None,
                "variant_names": list(t.variant_names),
            }
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "last_seq": last_seq,
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


def _read_npy(directory: Path, name: str, expected: dict[str, Any]) -> npt.NDArray[Any]:
    """Parse an .npy file while hashing it; refuse it unless its bytes match the manifest."""
    path = directory / name
    if not path.is_file():
        raise SnapshotError(f"{path}: missing")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size != expected.get("size"):
            raise SnapshotError(f"{path}: size {size} bytes, manifest says {expected.get('size')}")
        src = _HashingFile(f)
        try:
            version = np.lib.format.read_magic(cast(Any, src))
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(cast(Any, src))
        except ValueError as exc:
            raise SnapshotError(f"{path}: not a valid array: {exc}") from None
        if dtype.hasobject or fortran:
            raise SnapshotError(f"{path}: unsupported array layout")
        array = np.empty(shape, dtype=dtype)
        view = memoryview(cast(Any, array.reshape(-1).view(np.uint8))).cast("B")
        while view.nbytes:
            got = src.readinto(view)
            if not got:
                raise SnapshotError(f"{path}: truncated")
            view = view[got:]
        if src.read(1):
            raise SnapshotError(f"{path}: trailing bytes after the array")
        if src.sha256.hexdigest() != expected.get("sha256"):
            raise SnapshotError(
                f"{path}: SHA-256 does not match the manifest (corrupt or tampered)"
            )
        return array


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
            arrays = {
                name.split(".")[1]: _read_npy(directory, name, files[name])
                for name in sorted(files)
                if name.startswith(f"{signal}.")
            }
            n, bits = int(info["count"]), int(info["bits"])
            codes = arrays["codes"]
            if codes.shape != (n, bits // 8) or codes.dtype != np.uint8:
                raise SnapshotError(f"{directory}: {signal}.codes.npy has shape {codes.shape}")
            if any(len(arrays[k]) != n for k in ("lists", "match_ids", "entry_ids")):
                raise SnapshotError(f"{directory}: {signal} files disagree on the entry count")
            mih = None
            if info.get("mih"):
                mih = Tables(
                    Plan.from_json(info["mih"]),
                    arrays["mih_bases"],
                    arrays["mih_rel"],
                    arrays["mih_shifts"],
                    arrays["mih_ids"],
                    arrays["mih_fingerprints"],
                )
            tables[signal] = SignalTable(
                signal,
                bits,
                int(info["threshold"]),
                bool(info["exact"]),
                codes,
                arrays["lists"],
                arrays["match_ids"],
                arrays["entry_ids"],
                mih,
                arrays.get("variants"),
                tuple(info.get("variant_names", ())),
            )
        return Snapshot(
            int(manifest["version"]),
            str(manifest["created_at"]),
            int(manifest["last_seq"]),
            tuple(manifest["lists"]),
            tables,
            directory,
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise SnapshotError(f"{directory}: malformed snapshot: {exc!r}") from None
