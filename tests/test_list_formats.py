"""Exporting and importing lists: csv, bare hex, and python-threatexchange's signal files."""

from __future__ import annotations

from pathlib import Path

from threatexchange.exchanges.impl.file_api import (
    FileCollaborationConfig,
    LocalFileSignalExchangeAPI,
)
from threatexchange.signal_type.pdq.signal import PdqSignal

from indexer.store import NewEntry, open_store
from tests.conftest import run_cli

PDQ = [
    "2d6b1af3a956c529e79ca3d2526fa834d4196c81cedd04de0a26b855fc99b724",
    "8c629e779a663698b9a33866c026726c21a679f61eb6e1f8c79ba7e23c8299e0",
]
LIST = [f"pdq,{PDQ[0]},IWF-1", f"pdq,{PDQ[1]}", "phash,c2924c5532bddfc8", "md5," + "ab" * 16]


def entries(store_url: str, name: str) -> list[NewEntry]:
    store = open_store(store_url)
    try:
        return list(store.list_entries(name))
    finally:
        store.close()


def test_csv_and_hex_round_trip(store_url: str, tmp_path: Path) -> None:
    assert (
        run_cli(
            "import", "--store", store_url, "--list", "a", "-", stdin="\n".join(LIST)
        ).returncode
        == 0
    )
    csv_out = run_cli("export", "--store", store_url, "--list", "a")
    assert csv_out.returncode == 0, csv_out.stderr
    assert csv_out.stdout.splitlines() == LIST
    assert "list a: exported 4 as csv" in csv_out.stderr
    run_cli("import", "--store", store_url, "--list", "b", "-", stdin=csv_out.stdout)
    assert entries(store_url, "b") == entries(store_url, "a")

    hex_out = run_cli(
        "export", "--store", store_url, "--list", "a", "--format", "hex", "--signal", "pdq"
    )
    assert hex_out.stdout.split() == PDQ
    run_cli(
        "import", "--store", store_url, "--list", "c", "--signal", "pdq", "-", stdin=hex_out.stdout
    )
    assert [e.hash.hex() for e in entries(store_url, "c")] == PDQ


def test_hex_export_needs_a_signal_and_lists_must_exist(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_cli("import", "--store", url, "--list", "a", "-", stdin="\n".join(LIST))
    done = run_cli("export", "--store", url, "--list", "a", "--format", "hex")
    assert done.returncode == 2 and "--format hex needs --signal" in done.stderr
    done = run_cli("export", "--store", url, "--list", "nope")
    assert done.returncode == 1 and "no list named 'nope'" in done.stderr


def test_threatexchange_reads_our_export(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_cli("import", "--store", url, "--list", "a", "-", stdin="\n".join(LIST))
    out = tmp_path / "signals.txt"
    done = run_cli("export", "--store", url, "--list", "a", "--format", "threatexchange", str(out))
    assert done.returncode == 0, done.stderr
    assert "exported 2 as threatexchange" in done.stderr
    assert "skipped 1: python-threatexchange has no type for md5" in done.stderr
    api = LocalFileSignalExchangeAPI(FileCollaborationConfig(filename=str(out), name="ours"))
    fetched = {key for delta in api.fetch_iter([PdqSignal], None) for key in delta.updates}
    assert fetched == {("pdq", PDQ[0]), ("pdq", PDQ[1])}


def test_we_read_what_threatexchange_reads(tmp_path: Path) -> None:
    """A signal file as ThreatExchange users keep them, checked with the package's own reader.

    (python-threatexchange 1.2.17 cannot write one: report_opinion opens its file with
    mode "wta", which Python rejects; its reader defines the format.)
    """
    theirs = tmp_path / "theirs.txt"
    theirs.write_text(f"pdq {PDQ[0]}\nvideo_md5 {'cd' * 16}\npdq {PDQ[1]}\n")
    api = LocalFileSignalExchangeAPI(FileCollaborationConfig(filename=str(theirs), name="theirs"))
    read_by_them = {key for delta in api.fetch_iter([PdqSignal], None) for key in delta.updates}
    assert read_by_them == {("pdq", PDQ[0]), ("pdq", PDQ[1]), ("video_md5", "cd" * 16)}
    url = f"sqlite:///{tmp_path / 's.db'}"
    done = run_cli("import", "--store", url, "--list", "te", str(theirs))
    assert done.stdout.strip() == "list te: added 2, duplicates 0, refused 1"
    assert (
        "line 2: refused: python-threatexchange type 'video_md5' has no hashmatch equivalent"
        in done.stderr
    )
    ours = {(e.signal, e.hash.hex()) for e in entries(url, "te")}
    assert ours == {k for k in read_by_them if k[0] == "pdq"}
