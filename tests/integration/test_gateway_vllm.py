"""The whole local profile on real Ray Serve: SmolLM2-135M-Instruct on vLLM-CPU (``ray.serve.llm``) as the
weak tier, the strong tier pointed at the same engine's OpenAI endpoint (a real OpenAI-compatible server
on loopback), the random router (and mf when its artifact exists). Started once for the module."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from routeray.config import Config, EngineConfig, RoutingConfig, ScorerConfig, local_profile
from tests.integration.fake_openai import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
log = logging.getLogger(__name__)

MSG = [{"role": "user", "content": "Name one colour of the rainbow."}]


class Live:
    def __init__(self, url: str, cfg: Config, startup_s: float, early: dict[str, httpx.Response]):
        self.url = url
        self.cfg = cfg
        self.startup_s = startup_s
        self.early = early  # what a new user saw who waited for /health and sent a request while it started
        self.client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def live(clean_ray: None) -> Iterator[Live]:
    from routeray.deployments.cli import _start_serve, deploy, serve_applications

    for var in ("ROUTERAY_STRONG_BASE_URL", "ROUTERAY_STRONG_API_KEY"):
        os.environ.pop(var, None)
    profile = local_profile()
    routers = [r.router for r in profile.routers]
    cfg = Config(http_port=free_port(), routers=[ScorerConfig(router=r) for r in routers],
                 engine=EngineConfig(kv_cache_gib=1.0),
                 routing=RoutingConfig(scorer_timeout_s=30))  # routing asserts must not flake on a busy CPU
    url = f"http://127.0.0.1:{cfg.http_port}"
    t0 = time.monotonic()
    _start_serve(cfg, {"address": "local", "include_dashboard": False})
    failed: list[BaseException] = []
    deploying = threading.Thread(target=lambda: _capture(failed, deploy, serve_applications(cfg)), daemon=True)
    deploying.start()
    early: dict[str, httpx.Response] = {}
    while deploying.is_alive() and not early:  # as a new user would: wait for /health, then send a request
        try:
            if httpx.get(f"{url}/health", timeout=10).status_code == 200 and deploying.is_alive():
                early = {"health": httpx.get(f"{url}/health", timeout=10), "ready": httpx.get(f"{url}/ready"),
                         "chat": httpx.post(f"{url}/v1/chat/completions", timeout=60,
                                            json={"model": "weak", "messages": MSG, "max_tokens": 4})}
        except httpx.HTTPError:
            time.sleep(0.5)
    deploying.join()
    assert not failed, failed
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    client.chat.completions.create(model="weak", messages=MSG, max_tokens=4)
    startup = time.monotonic() - t0
    log.warning("local profile: first answer %.1f s after start", startup)
    yield Live(url, cfg.resolved(), startup, early)


def _capture(failed: list[BaseException], fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - reported by the fixture
        failed.append(exc)


def test_while_the_engine_starts_the_gateway_says_so(live: Live) -> None:
    """The gateway answers before the engine does: /health is 200 but says the tiers are not ready, /ready is
    503 naming them, and a chat request gets a 503 in OpenAI's shape with Retry-After (it was a 502
    `weak backend: HTTP 404: Not Found`)."""
    assert live.early, "the gateway never answered before the engine was up"
    health, ready, chat = live.early["health"].json(), live.early["ready"], live.early["chat"]
    assert health["status"] == "ok" and health["ready"] is False and not health["tiers"]["weak"]["ready"]
    assert ready.status_code == 503 and "weak" in ready.json()["not_ready"]
    assert chat.status_code == 503 and chat.headers["retry-after"] == "5"
    error = chat.json()["error"]
    assert error["code"] == "not_ready" and "engine is still starting" in error["message"]
    after = httpx.get(f"{live.url}/ready")
    assert after.status_code == 200 and after.json()["not_ready"] == []


def test_strong_tier_is_the_local_engine_when_no_api_is_set(live: Live) -> None:
    assert live.cfg.strong.base_url == live.cfg.weak.base_url
    assert live.cfg.strong.base_url.endswith("/weak/v1")


def test_models_lists_routers_and_tiers(live: Live) -> None:
    ids = {m.id for m in live.client.models.list().data}
    assert "router-random-0.5" in ids
    assert {"strong", "SmolLM2-135M-Instruct"} <= ids


@pytest.mark.parametrize(("model", "tier"), [("router-random-0", "strong"), ("router-random-1", "SmolLM2-135M-Instruct")])
def test_real_answers_from_both_tiers(live: Live, model: str, tier: str) -> None:
    resp = live.client.chat.completions.create(model=model, messages=MSG, max_tokens=16, temperature=0)
    assert resp.model == tier
    assert resp.choices[0].message.content.strip()
    assert resp.usage is not None and 0 < resp.usage.completion_tokens <= 16


def test_mf_router_routes_real_prompts(live: Live) -> None:
    if "mf" not in [r.router for r in live.cfg.routers]:
        pytest.skip("no mf artifact")
    hard = "Prove that there are infinitely many primes, then generalise to primes of the form 4k+3."
    out = {}
    for model in ("router-mf-0", "router-mf-1", "router-mf-50%"):
        raw = live.client.chat.completions.with_raw_response.create(
            model=model, max_tokens=4, messages=[{"role": "user", "content": hard}])
        out[model] = (raw.parse().model, float(raw.headers["x-routeray-score"]))
    assert out["router-mf-0"][0] == "strong" and out["router-mf-1"][0] == "SmolLM2-135M-Instruct"
    assert out["router-mf-0"][1] == out["router-mf-1"][1]  # deterministic score for the same prompt
    assert 0.0 <= out["router-mf-0"][1] <= 1.0


def test_real_streaming(live: Live) -> None:
    chunks = list(live.client.chat.completions.create(
        model="router-random-0", messages=MSG, max_tokens=16, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert {c.model for c in chunks} == {"strong"}
    assert chunks[-1].usage is not None  # include_usage passed through to vLLM


def test_async_concurrency_and_metrics(live: Live) -> None:
    async def go() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0, timeout=120)
        outs = await asyncio.gather(*[client.chat.completions.create(
            model="router-random-0.5", max_tokens=8, messages=[{"role": "user", "content": f"Count to {i}."}])
            for i in range(12)])
        await client.close()
        return [o.model for o in outs]

    models = asyncio.run(go())
    assert set(models) == {"strong", "SmolLM2-135M-Instruct"}
    text = httpx.get(f"{live.url}/metrics").text
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in text_string_to_metric_families(text) for s in f.samples}
    strong = got[("routeray_routing_decisions_total", (("router", "random"), ("tier", "strong")))]
    weak = got[("routeray_routing_decisions_total", (("router", "random"), ("tier", "weak")))]
    assert strong >= 2 and weak >= 2
    assert got[("routeray_upstream_latency_seconds_count", (("tier", "weak"),))] >= 1


def test_bad_request_and_engine_endpoint(live: Live) -> None:
    r = httpx.post(f"{live.url}/v1/chat/completions", json={"model": "router-random-2", "messages": MSG})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    engine = openai.OpenAI(base_url=live.cfg.weak.base_url, api_key="unused")
    assert [m.id for m in engine.models.list().data] == ["SmolLM2-135M-Instruct"]
    assert httpx.get(f"{live.url}/health").json()["status"] == "ok"
