"""Replica faults under load on real Ray Serve: ``ray.kill`` the router's scorer replica, then the weak
engine's replica, while a fixed request rate runs. Serve must replace each; after the replacement is up no
request fails, and only requests in flight at the kill may fail.

The weak engine is played by a small OpenAI-protocol Serve deployment of the tests' own, reached through
Serve's proxy at ``/weak`` exactly as the real vLLM engine app is (a real vLLM start here costs ~60 s and
~7 GB); the strong tier is a loopback fake. What happened (requests, failures, recovery times) is printed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve

from routeray.config import BackendConfig, Config, EngineConfig, RoutingConfig, ScorerConfig
from tests.integration.conftest import FAST_BACKEND, RAY_INIT
from tests.integration.fake_openai import FakeOpenAI, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RATE = 12  # requests per second offered
ENGINE_LATENCY_S = 0.3
engine_api = FastAPI()


@serve.deployment(name="FakeEngine", ray_actor_options={"num_cpus": 0}, health_check_period_s=1,
                  health_check_timeout_s=5, max_ongoing_requests=200)
@serve.ingress(engine_api)
class FakeEngine:
    """A tiny OpenAI chat endpoint standing in for the vLLM engine replica (answers in ENGINE_LATENCY_S, so
    a few requests are always in flight, as with a real model)."""

    def __init__(self) -> None:
        self.pid = os.getpid()

    @engine_api.get("/v1/models")
    async def models(self) -> Any:
        return {"object": "list", "data": [{"id": "fake-weak", "object": "model"}]}

    @engine_api.post("/v1/chat/completions")
    async def chat(self, request: Request) -> Any:
        import json  # the class is shipped to the replica by value: no module globals there

        body = await request.json()
        await asyncio.sleep(ENGINE_LATENCY_S)
        text = f"[engine {self.pid}] ok"
        if body.get("stream"):
            async def chunks() -> Any:
                for delta in ({"role": "assistant", "content": text}, {}):
                    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                             "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(chunks(), media_type="text/event-stream")
        return JSONResponse({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": text}}]})


def build_fake_engine(args: dict[str, Any]) -> Any:
    """Serve import path target for the fake engine application."""
    return FakeEngine.bind()


@dataclass
class Outcome:
    start: float
    end: float
    ok: bool
    detail: str
    fallback: str | None = None


class Env:
    def __init__(self, url: str, cfg: Config, strong: FakeOpenAI):
        self.url, self.cfg, self.strong = url, cfg, strong


@pytest.fixture(scope="module")
def env(clean_ray: None) -> Iterator[Env]:
    from routeray.deployments.cli import _start_serve, deploy, serve_applications

    port = free_port()
    fast = {**FAST_BACKEND, "max_retries": 2, "backoff_s": 0.1}
    engine = {"name": "weak-engine", "route_prefix": "/weak",
              "import_path": "tests.integration.test_replica_faults:build_fake_engine", "args": {}}
    with FakeOpenAI("fake-strong") as strong, pytest.MonkeyPatch.context() as env_vars:
        old_path = os.environ.get("PYTHONPATH")  # replicas import this file
        env_vars.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), old_path) if p))
        cfg = Config(
            http_port=port,
            routers=[ScorerConfig(router="random")],
            engine=EngineConfig(enabled=False),
            strong=BackendConfig(name="fake-strong", base_url=strong.base_url, **fast),
            weak=BackendConfig(name="fake-weak", base_url=f"http://127.0.0.1:{port}/weak/v1", **fast),
            routing=RoutingConfig(scorer_timeout_s=3),
        )
        _start_serve(cfg, RAY_INIT)
        deploy([engine, *serve_applications(cfg)])
        yield Env(f"http://127.0.0.1:{port}", cfg, strong)


def _replica_actors(app: str, deployment: str) -> list[str]:
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]


def _running_replica(app: str, deployment: str) -> bool:
    status = serve.status().applications.get(app)
    if status is None or deployment not in status.deployments:
        return False
    d = status.deployments[deployment]
    return str(d.status).endswith("HEALTHY") and not str(d.status).endswith("UNHEALTHY") \
        and d.replica_states.get("RUNNING", 0) >= 1


async def _load(url: str, seconds: float, kill: Any) -> tuple[list[Outcome], float, float]:
    """Offer RATE req/s for ``seconds``; call ``kill()`` a third of the way in. Returns outcomes, the kill
    time and the time the killed deployment had a new running replica."""
    outcomes: list[Outcome] = []
    body = {"model": "router-random-1", "messages": [{"role": "user", "content": "hello"}]}  # scorer + weak
    async with httpx.AsyncClient(timeout=30) as client:
        async def one(i: int) -> None:
            t0 = time.monotonic()
            try:
                r = await client.post(f"{url}/v1/chat/completions", json={**body, "stream": i % 4 == 0})
                ok = r.status_code == 200 and "error" not in r.text
                detail, fallback = f"{r.status_code} {r.text[:160]}", r.headers.get("x-routeray-fallback")
            except httpx.HTTPError as exc:
                ok, detail, fallback = False, f"{type(exc).__name__}: {exc}", None
            outcomes.append(Outcome(t0, time.monotonic(), ok, detail, fallback))

        tasks = []
        start = time.monotonic()
        killed_at = recovered_at = float("nan")
        i = 0
        while (now := time.monotonic()) - start < seconds:
            if killed_at != killed_at and now - start > seconds / 3:  # NaN: not killed yet
                killed_at, wait_recovered = now, await asyncio.to_thread(kill)
                recovered_task = asyncio.create_task(asyncio.to_thread(wait_recovered))
            tasks.append(asyncio.create_task(one(i)))
            i += 1
            await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))
        recovered_at = await recovered_task
        await asyncio.gather(*tasks)
    return outcomes, killed_at, recovered_at


def _killer(app: str, deployment: str) -> Any:
    def kill() -> Any:
        import ray

        names = _replica_actors(app, deployment)
        assert len(names) == 1, names
        ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)

        def wait_recovered() -> float:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                now = _replica_actors(app, deployment)
                if now and names[0] not in now and _running_replica(app, deployment):
                    return time.monotonic()
                time.sleep(0.2)
            raise AssertionError(f"{deployment} replica not replaced within 60 s: {serve.status()}")
        return wait_recovered
    return kill


@pytest.mark.parametrize(("app", "deployment"), [("routeray", "Scorer_random"), ("weak-engine", "FakeEngine")])
def test_killed_replica_is_replaced_and_only_in_flight_requests_fail(env: Env, app: str, deployment: str) -> None:
    outcomes, killed_at, recovered_at = asyncio.run(_load(env.url, 30.0, _killer(app, deployment)))
    failed = [o for o in outcomes if not o.ok]
    after = [o for o in outcomes if o.start > recovered_at]
    in_flight = [o for o in outcomes if o.start <= killed_at < o.end]
    outage = [o for o in outcomes if killed_at < o.start <= recovered_at]
    slowest = max((o.end - o.start for o in outage), default=0.0)
    print(f"\n{deployment}: {len(outcomes)} requests at {RATE}/s, {len(failed)} failed, {len(in_flight)} in flight "
          f"at the kill, replaced after {recovered_at - killed_at:.1f} s; {len(outage)} sent during the outage "
          f"({sum(o.fallback is not None for o in outage)} fell back, slowest {slowest:.1f} s); {len(after)} sent "
          f"after recovery; failures: {sorted({o.detail[:90] for o in failed})[:3]}")
    assert len(after) >= RATE * 5
    assert all(o.ok for o in after), [o.detail for o in after if not o.ok][:3]
    assert all(o in in_flight for o in failed), [(o.start - killed_at, o.detail) for o in failed][:5]
    r = httpx.post(f"{env.url}/v1/chat/completions",
                   json={"model": "router-random-1", "messages": [{"role": "user", "content": "after"}]})
    assert r.status_code == 200 and r.json()["model"] == "fake-weak"


@pytest.mark.parametrize("mode", ["fail", "stall", "garbage", "stall_midstream", "garbage_stream"])
def test_strong_faults_under_concurrent_load(env: Env, mode: str) -> None:
    """Many requests at once while the strong API misbehaves: every non-streaming request and every stream
    that had not started falls back to the weak tier; a stream broken after its first chunk ends with an
    in-stream error. Nothing hangs: all done within the backend timeouts."""
    n = 24
    env.strong.mode = mode

    async def go() -> list[tuple[int, str | None, str]]:
        async with httpx.AsyncClient(timeout=60) as client:
            async def one(i: int) -> tuple[int, str | None, str]:
                body = {"model": "router-random-0", "stream": i % 2 == 1,  # threshold 0: all to strong
                        "messages": [{"role": "user", "content": f"question {i}"}]}
                r = await client.post(f"{env.url}/v1/chat/completions", json=body)
                return r.status_code, r.headers.get("x-routeray-fallback"), r.text
            return await asyncio.gather(*[one(i) for i in range(n)])

    t0 = time.monotonic()
    try:
        results = asyncio.run(go())
    finally:
        env.strong.mode = "ok"
    took = time.monotonic() - t0
    print(f"\nstrong {mode}: {n} concurrent requests answered in {took:.1f} s; statuses "
          f"{sorted({r[0] for r in results})}, fallbacks {sum(r[1] == 'strong_error' for r in results)}")
    assert took < 20
    assert all(r[0] == 200 for r in results), [r[2][:200] for r in results if r[0] != 200][:3]
    if mode in ("stall_midstream", "garbage_stream"):  # only streams see these modes fail
        streams = [r for i, r in enumerate(results) if i % 2 == 1]
        assert all('"error"' in r[2] and "[DONE]" not in r[2] for r in streams), streams[0][2][-300:]
        assert all(r[1] is None and "fake-strong" in r[2] for r in results)
    else:
        assert all(r[1] == "strong_error" and "fake-weak" in r[2] for r in results), results[0]
