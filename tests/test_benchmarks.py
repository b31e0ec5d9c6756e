"""The load benchmarks run end to end on a small list, so that one that breaks is
found by the suite rather than by the next person to measure with it (the
freshness benchmark failed at start for five hours on 12-01 unnoticed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LOAD_TESTS = Path(__file__).resolve().parents[1] / "load_tests"


def run(script: str, *args: str) -> str:
    """What the script printed; it must exit 0."""
    done = subprocess.run(
        [sys.executable, str(LOAD_TESTS / script), *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def table_rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith(("| scenario", "| path"))
    ]


def test_grpc_load_measures_each_mode_closed_and_open_loop(tmp_path: Path) -> None:
    run(
        "grpc_load.py",
        *("--n", "20000", "--modes", "unary,batch100,packed1000,stream1000"),
        *("--seconds", "1", "--open-seconds", "1", "--results", str(tmp_path)),
    )
    stem = tmp_path / "grpc_load_20000_unary-batch100-packed1000-stream1000"
    rows = table_rows(stem.with_suffix(".md").read_text())
    loops = [(r[0], "open" if "open loop" in r[1] else "closed") for r in rows]
    modes = ("unary", "batch100", "packed1000", "stream1000")
    assert loops == [(mode, loop) for mode in modes for loop in ("closed", "open")]
    for mode, offered, checks, rpcs, *_, within, within_slo, late, errors, _, _ in rows:
        assert float(checks.replace(",", "")) > 0 and float(rpcs.replace(",", "")) > 0, mode
        assert errors == "0", (mode, errors)
        assert 0 <= float(within.rstrip("%")) <= 100, (mode, within)
        # Whether the open loop's clients kept to their schedule; a closed loop has none.
        if "open loop" in offered:
            assert 0 <= float(late.rstrip("%")) <= 100, (mode, late)
        else:
            assert late == "—", (mode, late)
        # The server's own share of Check calls within 20 ms; a stream is one long call.
        if mode == "stream1000":
            assert within_slo == "—"
        else:
            assert 0 <= float(within_slo.rstrip("%")) <= 100, (mode, within_slo)
    assert stem.with_suffix(".png").stat().st_size > 0


@pytest.mark.skipif(
    shutil.which("wrk") is None or shutil.which("h2load") is None,
    reason="the HTTP load test drives wrk and h2load: apt-get install wrk nghttp2-client",
)
def test_http_load_measures_http_beside_grpc_and_the_peer(tmp_path: Path) -> None:
    run(
        "http_load.py",
        *("--n", "20000", "--seconds", "1", "--lookups", "200", "--rounds", "2"),
        *("--results", str(tmp_path), "--store-dir", str(tmp_path / "kept"), "--processes", "2"),
    )
    assert (tmp_path / "kept" / "store.db").is_file() and (tmp_path / "kept" / "index").is_dir()
    every = markdown_rows((tmp_path / "http_load_20000.md").read_text())
    rows = {r[0]: r[1:] for r in every}
    measured = [
        *(f"PDQIndex.query() {kind}" for kind in ("miss", "hit")),
        *(f"GET /m/raw_lookup {kind}" for kind in ("miss", "hit")),
        *(f"{route} {size}" for size in (100, 1000) for route in ("POST /v1/check", "gRPC Check")),
    ]
    for mode in measured:
        _, checks, requests, *_, errors, _ = rows[mode]
        assert number(checks) > 0 and number(requests) > 0, (mode, rows[mode])
        assert errors == "0", (mode, errors)
    idle = [r for r in every if r[1].startswith("gRPC ")]
    assert [(r[0], r[1]) for r in idle] == [
        (mode, f"gRPC {server}")
        for mode in ("unary", "batch100")
        for server in ("alone", "with HTTP")
    ]
    assert all(number(r[3]) > 0 and len(r[2].split(", ")) == 2 for r in idle), idle
    assert all(number(r[5]) > 0 and len(r[4].split(", ")) == 2 for r in idle), idle
    ratios = [r for r in every if r[-1] in ("yes", "no")]
    assert len(ratios) == 8 and all(number(r[1]) > 0 for r in ratios), ratios


def test_freshness_benchmark_times_every_path_under_load(tmp_path: Path) -> None:
    run("freshness_benchmark.py", "--n", "5000", "--trials", "1", "--results", str(tmp_path))
    text = (tmp_path / "freshness_5000_sqlite.md").read_text()
    assert [r[0] for r in table_rows(text)] == [
        "add (store, another process)",
        "remove (store, another process)",
        "SubmitCase (gRPC)",
        "Withdraw (gRPC)",
        "RemoveEntries (gRPC)",
    ]
    assert all(r[-1] == "yes" for r in table_rows(text))
    assert "errors none" in text


def markdown_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row but the header rows."""
    lines = text.splitlines()
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for i, line in enumerate(lines)
        if line.startswith("| ") and not (i + 1 < len(lines) and lines[i + 1].startswith("|---"))
    ]


def number(cell: str) -> float:
    return float(cell.strip("*x").replace(",", ""))


def test_engine_benchmark_measures_our_engine_beside_the_peer() -> None:
    out = run(
        "engine_benchmark.py",
        *("--n", "20K", "--bits", "256", "--queries", "2000", "--peer-queries", "500"),
        *("--sample", "5"),
    )
    rows = markdown_rows(out)
    assert [r[1] for r in rows] == [
        "hashmatch (MihEngine)",
        "python-threatexchange PDQIndex.query() per hash",
        "**hashmatch / query ratio**",
        "python-threatexchange PDQIndex batch search (1,000)",
        "**hashmatch / batch ratio**",
    ]
    assert all(r[0] == "0.02M x pdq" for r in rows)
    assert rows[0][-1] == "100% of 10"
    for row in rows:
        assert number(row[2]) > 0 and number(row[3]) > 0, row


def test_crossover_times_both_engines_on_small_lists() -> None:
    out = run("engine_benchmark.py", "--crossover", "--bits", "64")
    rows = markdown_rows(out)
    assert [number(r[0]) for r in rows] == [500, 1000, 2000, 4000, 8000, 16000, 64000]
    assert all(number(cell) > 0 for r in rows for cell in r[1:])


def test_policies_mode_measures_the_check_path_with_and_without_list_policies() -> None:
    out = run("engine_benchmark.py", "--policies", "--n", "20K", "--queries", "2000")
    rows = markdown_rows(out)
    assert [r[0] for r in rows] == [
        "no policy",
        "list narrowed to 24",
        "+ 10,000 negative entries, another tenant's",
        "+ 10,000 negative entries, the caller's",
    ]
    assert all(number(cell) > 0 for r in rows for cell in r[1:5])
    # Every hit is shown but where the caller's own negative list covers it (1% of hits).
    assert [r[5] for r in rows] == ["2,000 of 2,000"] * 3 + ["1,980 of 2,000"]


@pytest.mark.parametrize(
    ("script", "args", "columns"),
    [
        ("prefetch_distance.py", ("--n", "20K", "--bits", "64", "--rounds", "1"), 8),
        ("plan_costs.py", ("--n", "20K", "--bits", "64", "--neighbours", "1"), 7),
        ("worker_pinning.py", ("--n", "20K", "--gaps-ms", "0,5", "--rounds", "3"), 7),
        ("gather_limit.py", ("--n", "20K", "--rounds", "2"), 5),
    ],
)
def test_each_experiment_prints_its_table(script: str, args: tuple[str, ...], columns: int) -> None:
    """The experiments behind the engine's constants still run, on a small list."""
    rows = markdown_rows(run(f"experiments/{script}", *args))
    assert rows and all(len(r) == columns for r in rows), rows
    assert all(number(cell.split()[0]) > 0 for r in rows for cell in r[-3:]), rows


def test_wire_benchmark_times_both_request_forms() -> None:
    out = run("wire_benchmark.py", "--n", "100", "--repeat", "3")
    rows = {r[0]: r[1:] for r in table_rows(out) if r[0] not in ("request form", "built by")}
    assert set(rows) == {
        "Query messages",
        "packed HashBatch",
        "results.add() each",
        "decoding their bytes",
    }
    size = {
        form: int(rows[form][0].replace(",", "")) for form in ("Query messages", "packed HashBatch")
    }
    assert 100 * 32 < size["packed HashBatch"] < size["Query messages"]
    assert all(float(cell.replace(",", "")) > 0 for cells in rows.values() for cell in cells)


def test_grpc_load_counts_images_in_the_robust_modes(tmp_path: Path) -> None:
    """A robust check sends a dozen hashes per image: the server's images/s is its
    hash checks/s divided by them, reported beside them (issue 23)."""
    run(
        "grpc_load.py",
        *("--n", "20000", "--modes", "robust1,robust67"),
        *("--seconds", "1", "--open-seconds", "1", "--results", str(tmp_path)),
    )
    rows = table_rows((tmp_path / "grpc_load_20000_robust1-robust67.md").read_text())
    assert [r[0] for r in rows] == ["robust1", "robust1", "robust67", "robust67"]
    for mode, _, checks, rpcs, images, *_, errors, _, _ in rows:
        per_image = float(checks.replace(",", "")) / float(images.replace(",", ""))
        assert 14.9 < per_image < 15.1, (mode, checks, images)
        assert float(rpcs.replace(",", "")) > 0 and errors == "0", (mode, errors)


def test_robustness_benchmark_sets_the_new_scheme_beside_the_old(tmp_path: Path) -> None:
    """Cost (client CPU, hashes sent) and recall per edit, old and new side by side."""
    out = run(
        "robustness_benchmark.py",
        *("--photos", "2", "--generated", "1", "--synthetic", "200", "--synthetic-robust", "10"),
        *("--cpu-rounds", "1", "--results", str(tmp_path)),
    )
    report = (tmp_path / "robustness.md").read_text()
    cost = {r[0]: r[1:] for r in table_rows(report) if r[0] in ("plain", "old", "robust")}
    assert set(cost) == {"plain", "old", "robust"} and "| robust |" in out
    ms, ratio, sent = cost["robust"]
    assert float(ms) > 0 and float(ratio) > 0
    assert max(int(n) for n in sent.split("-")) <= 16
    header = next(line for line in report.splitlines() if line.startswith("| transform"))
    assert "pdq or phash, old | pdq or phash, robust" in header
    mirror = next(r for r in table_rows(report) if r[0] == "mirror")
    assert len(mirror) == header.count("|") - 1


def test_video_benchmark_measures_speed_agreement_and_pytx(tmp_path: Path) -> None:
    out = run(
        "video_benchmark.py",
        *("--seconds", "2", "--width", "320", "--height", "180", "--rounds", "1"),
        *("--clip-seconds", "2", "--sizes", "160x120", "--work", str(tmp_path)),
    )
    speed = [r for r in table_rows(out) if r[0].startswith(("ours", "Meta", "decode"))]
    assert len(speed) == 6 and all(float(r[3]) > 0 for r in speed)
    assert sum("phased check" in r[0] for r in speed) == 2
    agreement = [r for r in table_rows(out) if "fps" in r[0]]
    assert len(agreement) == 12
    for row in agreement:
        assert row[3] == f"{row[1]}/{row[1]}"  # every frame of ours at one of vpdq's times
        assert int(row[4].split("/")[1]) <= 8 and row[6] == "100 / 100"
    assert "## pytx: 12 clips" in out


def test_video_robustness_runs_on_a_few_videos() -> None:
    out = run("video_robustness.py", "--listed", "2", "--unrelated", "3", "--seconds", "4")
    rows = [r for r in table_rows(out) if r[0] not in ("edit", "listed frames/s")]
    plain = [r[1] for r in rows if r[0] == "1"]
    assert plain[:2] == ["re-encode 150 kbit/s", "downscale 1/2"] and len(plain) == 18
    assert sum("checked phased" in name for name in plain) == 5  # after each trim and halving
    assert {r[0] for r in rows} == {"1", "8"} and len(rows) == 36  # each edit at both densities
    assert all(r[3].endswith("%") for r in rows)
    assert "false matches in 6 (unrelated, listed) pairs" in out
    assert "checked phased at 16 a second, listed at 8 frames/s: " in out
