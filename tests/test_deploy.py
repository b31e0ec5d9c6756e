"""deploy/: the Grafana dashboard only names metrics the service really exports."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import grpc
import pytest

from hashmatch.v1 import match_pb2, match_pb2_grpc

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
METRIC = re.compile(r"\b((?:hashmatch|process)_[a-z_]+)")


def dashboard_metrics() -> set[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    return set(METRIC.findall(exprs))


def test_every_dashboard_metric_is_exported(
    stub: match_pb2_grpc.MatchServiceStub, metrics_port: int
) -> None:
    stub.Check(match_pb2.CheckRequest(queries=[match_pb2.Query(signal="pdq", hash=bytes(32))]))
    with pytest.raises(grpc.RpcError):
        stub.Check(match_pb2.CheckRequest())
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    exported = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    exported |= {
        re.split(r"[{ ]", line)[0] for line in text.splitlines() if line and line[0] != "#"
    }
    names = dashboard_metrics()
    assert len(names) >= 12
    missing = {
        n for n in names if not {n, n.removesuffix("_bucket"), n.removesuffix("_total")} & exported
    }
    assert not missing, f"dashboard names metrics the service does not export: {missing}"


def test_prometheus_example_scrapes_hashmatch() -> None:
    text = (DEPLOY / "prometheus.yml").read_text()
    assert "job_name: hashmatch" in text and "--metrics-port" in text
