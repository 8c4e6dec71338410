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
            # The weak tier waits out a replica's replacement (seconds; more on a slow machine) instead of
            # timing out while Serve's proxy holds the request for the new replica.
            weak=BackendConfig(name="fake-weak", base_url=f"http://127.0.0.1:{port}/weak/v1",
                               **{**fast, "timeout_s": 90, "read_timeout_s": 90}),
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


@dataclass
class Kill:
    """When the kill was issued and when the replica was seen gone (its name released), and when the
    deployment had a new running replica. A request may be hit by the kill if it started before the replica
    was seen gone and was still running when the kill was issued."""

    issued: float = float("nan")
    gone: float = float("nan")
    recovered: float = float("nan")

    def in_flight(self, o: Outcome) -> bool:
        return o.start <= self.gone and o.end > self.issued


async def _load(url: str, kill_after_s: float, after_recovery_s: float, kill: Any) -> tuple[list[Outcome], Kill]:
    """Offer RATE req/s; kill the replica after ``kill_after_s`` and keep the load on until
    ``after_recovery_s`` after its replacement runs (however long that takes on this machine)."""
    outcomes: list[Outcome] = []
    body = {"model": "router-random-1", "messages": [{"role": "user", "content": "hello"}]}  # scorer + weak
    async with httpx.AsyncClient(timeout=120) as client:
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
        killing: asyncio.Task[Kill] | None = None
        i = 0
        while True:
            now = time.monotonic()
            if killing is None and now - start > kill_after_s:
                killing = asyncio.create_task(asyncio.to_thread(kill))
            if killing is not None and killing.done() and now - killing.result().recovered > after_recovery_s:
                break
            assert now - start < kill_after_s + 180, "the killed replica was not replaced within 180 s"
            tasks.append(asyncio.create_task(one(i)))
            i += 1
            await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))
        await asyncio.gather(*tasks)
    assert killing is not None
    return outcomes, killing.result()


def _killer(app: str, deployment: str) -> Any:
    def kill() -> Kill:
        import ray

        names = _replica_actors(app, deployment)
        assert len(names) == 1, names
        handle = ray.get_actor(names[0], namespace="serve")
        k = Kill(issued=time.monotonic())
        ray.kill(handle, no_restart=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            now = _replica_actors(app, deployment)
            if names[0] not in now and k.gone != k.gone:  # NaN: not seen gone yet
                k.gone = time.monotonic()
            if k.gone == k.gone and now and _running_replica(app, deployment):
                k.recovered = time.monotonic()
                return k
            time.sleep(0.2)
        raise AssertionError(f"{deployment} replica not replaced within 180 s: {serve.status()}")
    return kill


@pytest.mark.parametrize(("app", "deployment"), [("routeray", "Scorer_random"), ("weak-engine", "FakeEngine")])
def test_killed_replica_is_replaced_and_only_in_flight_requests_fail(env: Env, app: str, deployment: str) -> None:
    """Requests sent while the replica is being replaced wait for the new one (the weak tier's timeout
    outlasts the replacement) or fall back; only those the kill caught in flight may fail."""
    outcomes, kill = asyncio.run(_load(env.url, 10.0, 6.0, _killer(app, deployment)))
    failed = [o for o in outcomes if not o.ok]
    after = [o for o in outcomes if o.start > kill.recovered]
    in_flight = [o for o in outcomes if kill.in_flight(o)]
    outage = [o for o in outcomes if kill.gone < o.start <= kill.recovered]
    slowest = max((o.end - o.start for o in outage), default=0.0)
    print(f"\n{deployment}: {len(outcomes)} requests at {RATE}/s, {len(failed)} failed, {len(in_flight)} in flight "
          f"at the kill (issued, seen gone {kill.gone - kill.issued:.2f} s later), replaced after "
          f"{kill.recovered - kill.issued:.1f} s; {len(outage)} sent during the outage "
          f"({sum(o.fallback is not None for o in outage)} fell back, slowest {slowest:.1f} s); {len(after)} sent "
          f"after recovery; failures: {sorted({o.detail[:90] for o in failed})[:3]}")
    assert len(after) >= RATE * 5
    assert all(o.ok for o in after), [o.detail for o in after if not o.ok][:3]
    unexplained = [o for o in failed if not kill.in_flight(o)]
    assert not unexplained, [(f"sent {o.start - kill.issued:+.2f} s after the kill, took {o.end - o.start:.1f} s",
                              o.detail) for o in unexplained][:5]
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
