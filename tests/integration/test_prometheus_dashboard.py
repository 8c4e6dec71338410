"""A real Prometheus (Debian's package) scrapes a gateway on real Ray Serve: the gateway's /metrics and
Ray's metrics export port. After real traffic, every Grafana dashboard query and every alert expression
evaluates through Prometheus' HTTP API without error, the routing and money panels return data, Ray
Serve's replica panel shows the deployments, and Prometheus itself loads and evaluates the alert rules.

Both tiers are loopback OpenAI-protocol servers of the tests' own (tests/integration/fake_openai.py,
reporting usage, so spend is counted); the routers are ``random`` and, when its artifact is there, ``mf``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from routeray.config import ScorerConfig, _has_artifact
from tests.binaries import require_binary, stop
from tests.integration.conftest import RAY_INIT, fake_gateway
from tests.integration.fake_openai import FakeOpenAI, free_port

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from k8s_dashboard import SUBSTITUTIONS, budget_panel_titles, queries, routing_panel_titles, substitute  # noqa: E402

pytestmark = pytest.mark.integration

RULES = ROOT / "k8s" / "prometheus" / "routeray-rules.yaml"
DASHBOARD = ROOT / "k8s" / "grafana" / "routeray-dashboard.json"
SCRAPE_S = 1


@dataclass
class Stack:
    gateway: str
    prometheus: str
    routers: list[str]
    strong: FakeOpenAI
    weak: FakeOpenAI

    def query(self, expr: str) -> dict[str, Any]:
        r = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        return r.json()


def _wait(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s} s")


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    return require_binary("prometheus", "prometheus")


@contextlib.contextmanager
def _prometheus(binary: str, tmp: Path, gateway_port: int, ray_port: int) -> Iterator[str]:
    """A Prometheus scraping the gateway and Ray's metrics port every SCRAPE_S with the alert rules loaded;
    yields its URL once it is ready, stops it afterwards."""
    config = {
        "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "routeray-gateway", "static_configs": [{"targets": [f"127.0.0.1:{gateway_port}"]}]},
            {"job_name": "ray", "static_configs": [{"targets": [f"127.0.0.1:{ray_port}"]}]},
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait(f"http://127.0.0.1:{port}/-/ready", 30, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc, 15)
        log.close()


@pytest.fixture(scope="module")
def stack(prometheus_bin: str, clean_ray: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    routers = ["random"] + (["mf"] if _has_artifact("mf") else [])
    ray_port = free_port()
    scorers = [ScorerConfig(router=r, max_batch_size=32, batch_wait_timeout_s=0.005) for r in routers]
    tmp = tmp_path_factory.mktemp("prometheus")
    with fake_gateway(backend={"timeout_s": 4, "read_timeout_s": 1.5}, routers=scorers,
                      strong={"price_input_per_mtok": 2.5, "price_output_per_mtok": 10},
                      weak={"price_input_per_mtok": 0.05, "price_output_per_mtok": 0.2},
                      ingress={"access": {"budgets": {"usd_per_period": 1000.0}}},  # the budget panels' data
                      ray_init={**RAY_INIT, "_metrics_export_port": ray_port}) as gw, \
            _prometheus(prometheus_bin, tmp, gw.cfg.http_port, ray_port) as prometheus:
        yield Stack(gw.url, prometheus, routers, gw.strong, gw.weak)


async def _traffic(stack: Stack, n: int) -> list[str]:
    models = [f"router-{r}-{t}" for r in stack.routers for t in ("0.5", "30%")] + ["weak", "strong"]
    client = openai.AsyncOpenAI(base_url=f"{stack.gateway}/v1", api_key="unused", max_retries=0, timeout=30)
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> str:
        async with sem:
            msgs = [{"role": "user", "content": f"Question {i}: what is {i} times {i + 3}?"}]
            model = models[i % len(models)]
            if i % 5 == 0:
                chunks = [c async for c in await client.chat.completions.create(
                    model=model, messages=msgs, stream=True)]
                return chunks[0].model
            return (await client.chat.completions.create(model=model, messages=msgs)).model

    try:
        return await asyncio.gather(*[one(i) for i in range(n)])
    finally:
        await client.close()


def _scraped(stack: Stack, expr: str, timeout_s: float = 30) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if stack.query(expr)["data"]["result"]:
            return
        time.sleep(SCRAPE_S / 2)
    raise TimeoutError(f"no data for {expr} after {timeout_s} s")


@pytest.fixture(scope="module")
def scraped(stack: Stack) -> Stack:
    """Two waves of real traffic (a scrape between them, so rates are positive), with the strong tier
    failing for part of the second wave (upstream errors and fallbacks), then a few more scrapes."""
    answered = asyncio.run(_traffic(stack, 120))
    assert {"fake-strong", "fake-weak"} <= set(answered)
    _scraped(stack, "routeray_routing_decisions_total")
    time.sleep(3 * SCRAPE_S)
    stack.strong.mode = "fail"
    try:
        answered = asyncio.run(_traffic(stack, 120))
    finally:
        stack.strong.mode = "ok"
    assert "fake-weak" in answered
    asyncio.run(_traffic(stack, 60))
    _scraped(stack, "ray_serve_deployment_replica_healthy", timeout_s=60)
    time.sleep(4 * SCRAPE_S)
    return stack


def _dashboard() -> dict[str, Any]:
    import json

    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _results(stack: Stack, expr: str) -> list[dict[str, Any]]:
    out = stack.query(expr)
    assert out["status"] == "success", f"{expr}: {out}"
    return out["data"]["result"]


def test_every_dashboard_query_evaluates(scraped: Stack) -> None:
    assert SUBSTITUTIONS["$__rate_interval"] == "1m"
    exprs = [substitute(e) for _, e in queries(_dashboard())]
    assert len(exprs) >= 20
    for expr in exprs:
        _results(scraped, expr)  # status success, or the assertion names the query


def test_routing_and_money_panels_return_data(scraped: Stack) -> None:
    must = set(routing_panel_titles()) | set(budget_panel_titles()) | {
        "Estimated spend per hour, by tier or pool model", "Savings per hour vs all-strong",
        "Healthy replicas, by deployment", "Fallbacks per second", "Upstream error rate, by tier"}
    empty = []
    for title, expr in queries(_dashboard()):
        if title in must and not _results(scraped, substitute(expr)):
            empty.append(f"{title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_budget_panels_follow_the_spend(scraped: Stack) -> None:
    spent = _results(scraped, "sum by (key) (routeray_key_spend_dollars_total)")
    left = _results(scraped, "min by (key) (routeray_key_budget_remaining_dollars)")
    assert [r["metric"]["key"] for r in spent] == ["anonymous"] == [r["metric"]["key"] for r in left]
    assert float(spent[0]["value"][1]) > 0
    assert float(left[0]["value"][1]) == pytest.approx(1000.0 - float(spent[0]["value"][1]), abs=1e-3)


def test_panel_values_reflect_the_traffic(scraped: Stack) -> None:
    rate = _results(scraped, 'sum by (router) (rate(routeray_routing_decisions_total[1m]))')
    assert {r["metric"]["router"] for r in rate} == set(scraped.routers)
    assert all(float(r["value"][1]) > 0 for r in rate)
    targets = _results(scraped, "max by (router) (routeray_strong_call_share_target)")
    assert {float(r["value"][1]) for r in targets} == {0.3}
    replicas = _results(scraped, "sum by (deployment) (ray_serve_deployment_replica_healthy)")
    deployments = {r["metric"]["deployment"]: float(r["value"][1]) for r in replicas}
    assert deployments.get("Gateway") == 1 and all(deployments.get(f"Scorer_{r}") == 1 for r in scraped.routers)
    saved = _results(scraped, "sum(routeray_spend_all_strong_dollars_total) - sum(routeray_spend_dollars_total)")
    assert float(saved[0]["value"][1]) > 0
    fallbacks = _results(scraped, 'sum by (reason) (routeray_fallbacks_total)')
    assert {r["metric"]["reason"] for r in fallbacks} == {"strong_error"}


def test_every_alert_expression_evaluates_and_prometheus_runs_the_rules(scraped: Stack) -> None:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        _results(scraped, rule["expr"])
    loaded = httpx.get(f"{scraped.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [r for g in loaded for r in g["rules"]]
    assert sorted(r["name"] for r in rules) == sorted(r["alert"] for g in groups for r in g["rules"])
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad
    # The strong tier failed every call of the second wave: its error-rate alert is pending or firing.
    alerts = httpx.get(f"{scraped.prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert any(a["labels"]["alertname"] == "RouterayUpstreamErrorRate" and a["labels"]["tier"] == "strong"
               for a in alerts)


def test_gateway_metrics_pass_promtool_lint(scraped: Stack) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    text = httpx.get(f"{scraped.gateway}/metrics", timeout=10).text
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ray_metrics_port_scrapes_with_token_auth_on(scraped: Stack) -> None:
    """k8s/rayservice.yaml turns on Ray's token auth; Prometheus must still read Ray's metrics port."""
    from ray._private.authentication.authentication_utils import is_token_auth_enabled  # no public API

    up = {r["metric"]["job"]: float(r["value"][1]) for r in _results(scraped, "up")}
    assert up == {"routeray-gateway": 1.0, "ray": 1.0}
    if not is_token_auth_enabled():
        pytest.skip("Ray token auth is off here (RAY_AUTH_MODE): nothing to learn about it")
