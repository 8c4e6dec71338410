"""Every PromQL expression of the dashboard and the alert rules parses (promtool), the rule file passes
``promtool check rules``, and the queries use the gateway's metric names exactly (routeray/metrics.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from routeray.metrics import METRIC_NAMES
from tests.binaries import require_binary
from tests.k8s.schemas import K8S, ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from k8s_dashboard import queries, substitute  # noqa: E402

RULES = K8S / "prometheus" / "routeray-rules.yaml"
DASHBOARD = json.loads((K8S / "grafana" / "routeray-dashboard.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("promtool", "prometheus")


def _check_rules(promtool: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def _as_recording_rules(exprs: list[str], path: Path) -> Path:
    rules = [{"record": f"routeray:check_{i}", "expr": e} for i, e in enumerate(exprs)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}), encoding="utf-8")
    return path


def _alert_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [r["expr"] for g in groups for r in g["rules"]]


def test_promtool_check_rules_passes(promtool: str) -> None:
    out = _check_rules(promtool, RULES)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_alert_exprs())} rules found" in out.stdout


def test_every_dashboard_query_parses(promtool: str, tmp_path: Path) -> None:
    exprs = [substitute(e) for _, e in queries(DASHBOARD)]
    assert len(exprs) >= 20
    assert not [e for e in exprs if "$" in e], "a Grafana variable was left unsubstituted"
    out = _check_rules(promtool, _as_recording_rules(exprs, tmp_path / "dash.yaml"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_rejects_a_broken_query(promtool: str, tmp_path: Path) -> None:
    out = _check_rules(promtool, _as_recording_rules(["sum by (router (rate(x[5m]))"], tmp_path / "bad.yaml"))
    assert out.returncode != 0


METRIC = re.compile(r"\b(routeray_[a-z_]+|ray_serve_[a-z_]+)\b")


def _metrics_in(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in METRIC.findall(e)}


def _base(name: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", name)


def test_queries_use_the_gateway_metric_names() -> None:
    exprs = [e for _, e in queries(DASHBOARD)] + _alert_exprs()
    used = {_base(m) for m in _metrics_in(exprs) if m.startswith("routeray_")}
    unknown = used - set(METRIC_NAMES)
    assert not unknown, f"not in routeray/metrics.py: {sorted(unknown)}"
    unused = set(METRIC_NAMES) - used
    assert not unused, f"metrics the dashboard does not show: {sorted(unused)}"
    assert {"ray_serve_deployment_replica_healthy", "ray_serve_deployment_queued_queries"} <= _metrics_in(exprs)


def test_dashboard_covers_the_issue() -> None:
    titles = " | ".join(t for t, _ in queries(DASHBOARD)).lower()
    for needle in ("requests per second", "strong-call share", "overhead p50 / p99", "batch size", "queue",
                   "upstream latency", "error rate", "fallbacks", "replicas", "spend", "savings"):
        assert needle in titles, needle
    share = [e for t, e in queries(DASHBOARD) if t.startswith("Strong-call share")]
    assert any("routeray_strong_call_share_target" in e for e in share)


def test_alerts_fire_on_failures_and_stay_quiet_otherwise(promtool: str) -> None:
    """promtool's rule unit tests (tests/k8s/alerts_test.yaml): each alert on synthetic series."""
    out = subprocess.run([promtool, "test", "rules", str(Path(__file__).with_name("alerts_test.yaml"))],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    tested = {t["alertname"] for c in yaml.safe_load(Path(__file__).with_name("alerts_test.yaml").read_text())["tests"]
              for t in c["alert_rule_test"]}
    assert tested == {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}


def test_dashboard_layout_is_sound() -> None:
    panels = DASHBOARD["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine
        if p["type"] != "row":
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)) and p["datasource"]["uid"] == "${datasource}"
    names = {v["name"] for v in DASHBOARD["templating"]["list"]}
    assert {"datasource", "router"} <= names
