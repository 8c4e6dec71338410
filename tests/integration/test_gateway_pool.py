"""A pool of three priced models served end to end: real Ray Serve, the mf router in its own scorer
deployment (each prompt's quality row comes back over Ray), three loopback OpenAI servers as the pool's
models, driven with the official ``openai`` client. Routing follows the pool rule on the router's own
predictions; streaming; a failed model falls back to the next cheaper healthy one; metrics per model, and
the dashboard's per-model panels evaluated by a real Prometheus scraping the gateway."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from routeray.config import Config, EngineConfig, RoutingConfig, ScorerConfig
from tests.integration.conftest import FAST_BACKEND, RAY_INIT
from tests.integration.fake_openai import FakeOpenAI, free_port
from tests.integration.test_prometheus_dashboard import (  # noqa: F401 - prometheus_bin is a fixture
    SCRAPE_S,
    _dashboard,
    _prometheus,
    prometheus_bin,
    queries,
    substitute,
)
from tests.unit.gateway.test_pool import PROMPTS, TRAINED, pool_args

pytestmark = pytest.mark.integration


@dataclass
class Pool:
    url: str
    cfg: Config
    fakes: list[FakeOpenAI]
    client: openai.OpenAI


@pytest.fixture(scope="module")
def pool(clean_ray: None) -> Iterator[Pool]:
    from routeray.deployments.cli import start

    with contextlib.ExitStack() as stack:
        fakes = [stack.enter_context(FakeOpenAI(f"m{i}")) for i in range(3)]
        members = [{**m, **FAST_BACKEND, "timeout_s": 10} for m in pool_args(fakes)]
        cfg = Config(http_port=free_port(), engine=EngineConfig(enabled=False), pool=members,
                     routers=[ScorerConfig(router="mf", max_batch_size=16)],
                     routing=RoutingConfig(scorer_timeout_s=60, percent_min_samples=5))
        start(cfg, ray_init=RAY_INIT)
        url = f"http://127.0.0.1:{cfg.http_port}"
        yield Pool(url, cfg, fakes, openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                                                  timeout=120))


@pytest.fixture(autouse=True)
def _ok(pool: Pool) -> Iterator[None]:
    for f in pool.fakes:
        f.mode = "ok"
    yield
    for f in pool.fakes:
        f.mode = "ok"


@pytest.fixture(scope="module")
def expected(pool: Pool) -> dict[tuple[str, float], str]:
    """What the pool rule picks for each prompt and threshold, from the same mf artifact in this process."""
    from routeray.gateway.routing import PoolDecider
    from routeray.routers.registry import load_router

    mf = load_router("mf")
    decider = PoolDecider(list(pool.cfg.backend_table()),
                          [pool.cfg.call_price(b) for b in pool.cfg.backend_table().values()])
    out = {}
    for prompt in PROMPTS:
        row = mf.model_quality([prompt], TRAINED)[0]  # type: ignore[attr-defined]
        for t in (0.0, 0.5, 0.55, 1.0):
            out[(prompt, t)] = decider.pick(row, t)
    return out


def test_models_health_and_routing_like_the_router_predicts(pool: Pool, expected: dict) -> None:
    ids = [m.id for m in pool.client.models.list().data]
    assert {"m0", "m1", "m2", "router-mf-0.5"} <= set(ids) and "strong" not in ids
    assert httpx.get(f"{pool.url}/health").json()["pool"] == ["m0", "m1", "m2"]
    for (prompt, t), model in expected.items():
        raw = pool.client.chat.completions.with_raw_response.create(
            model=f"router-mf-{t}", messages=[{"role": "user", "content": prompt}])
        assert raw.parse().model == model, (prompt, t)
        assert raw.headers["x-routeray-tier"] == model
    assert len(set(expected.values())) >= 2  # the thresholds reach more than one model


def test_streaming_and_percentage_routing(pool: Pool) -> None:
    msg = [{"role": "user", "content": PROMPTS[1]}]
    chunks = list(pool.client.chat.completions.create(model="m1", messages=msg, stream=True))
    assert {c.model for c in chunks} == {"m1"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("[m1]")
    none_up = {pool.client.chat.completions.create(model="router-mf-0%", messages=msg).model for _ in range(3)}
    all_up = {pool.client.chat.completions.create(model="router-mf-100%", messages=msg).model for _ in range(3)}
    assert none_up == {"m0"} and "m0" not in all_up


def test_a_failed_model_falls_back_to_the_next_cheaper_healthy_one(pool: Pool) -> None:
    pool.fakes[2].mode = "fail"
    raw = pool.client.chat.completions.with_raw_response.create(model="m2", messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().model == "m1" and raw.headers["x-routeray-fallback"] == "m2_error"
    pool.fakes[1].mode = "fail"
    stream = pool.client.chat.completions.create(model="m2", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert {c.model for c in stream} == {"m0"}


def test_metrics_are_per_pool_model(pool: Pool) -> None:
    text = httpx.get(f"{pool.url}/metrics").text
    samples = [(s.name, s.labels, s.value) for fam in text_string_to_metric_families(text) for s in fam.samples]

    def total(name: str, **labels: str) -> float:
        return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))

    routed = {m: total("routeray_routing_decisions_total", router="mf", tier=m) for m in ("m0", "m1", "m2")}
    assert sum(routed.values()) >= len(PROMPTS) * 4 and sum(v > 0 for v in routed.values()) >= 2
    for m in ("m0", "m1"):
        assert total("routeray_upstream_latency_seconds_count", tier=m) > 0
        assert total("routeray_spend_dollars_total", tier=m) > 0
    assert total("routeray_fallbacks_total", reason="m2_error", to_tier="m1") >= 2
    assert total("routeray_upstream_errors_total", tier="m2") >= 1
    assert 0 < total("routeray_strong_call_share", router="mf") <= 1


def test_dashboard_panels_show_each_pool_model_in_a_real_prometheus(pool: Pool, prometheus_bin: str,  # noqa: F811
                                                                    tmp_path: Path) -> None:
    """The Grafana dashboard's per-model panels, evaluated by a real Prometheus scraping this pool gateway."""
    panels = {"Routing share, by router and model", "Upstream latency p50 / p99, by tier or pool model",
              "Estimated spend per hour, by tier or pool model"}
    exprs = [(title, substitute(expr)) for title, expr in queries(_dashboard()) if title in panels]
    assert {t for t, _ in exprs} == panels
    with _prometheus(prometheus_bin, tmp_path, pool.cfg.http_port, free_port()) as url:
        def series(expr: str) -> set[str]:
            out = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
            assert out["status"] == "success", (expr, out)
            return {r["metric"].get("tier", "") for r in out["data"]["result"]}

        seen: dict[str, set[str]] = {}
        deadline = time.time() + 60
        while time.time() < deadline:  # rates need two scrapes with traffic between them
            for i, prompt in enumerate(PROMPTS * 2):
                pool.client.chat.completions.create(model=f"router-mf-{0.0 if i % 2 else 1.0}",
                                                    messages=[{"role": "user", "content": prompt}])
            time.sleep(2 * SCRAPE_S)
            seen = {title: series(expr) for title, expr in exprs}
            if all(len(s & {"m0", "m1", "m2"}) >= 2 for s in seen.values()):
                break
        assert all(len(s & {"m0", "m1", "m2"}) >= 2 for s in seen.values()), seen
