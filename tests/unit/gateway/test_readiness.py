"""Readiness: a tier that has not answered yet (the weak engine still starting behind Serve's proxy, which
answers 404 until the engine's route exists) is refused with a 503 that says so, with Retry-After, or the
other tier answers; once it answers a probe it is ready for good."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from routeray.config import Config, ScorerConfig
from routeray.gateway.backends import OpenAIBackend
from routeray.gateway.protocol import APIError, ChatCompletionRequest
from routeray.gateway.readiness import TierReadiness
from routeray.gateway.service import RoutingService, Score
from routeray.metrics import GatewayMetrics
from tests.integration.fake_openai import FakeOpenAI

REQ = ChatCompletionRequest.model_validate({"model": "weak", "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture()
def fakes() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with FakeOpenAI("fake-strong") as strong, FakeOpenAI("fake-weak") as weak:
        yield strong, weak


async def _score(router: str, prompt: str) -> Score:
    return Score(0.5)


def _service(strong: FakeOpenAI, weak: FakeOpenAI, engine_tiers: tuple[str, ...] = ("weak",),
             **routing: bool) -> RoutingService:
    cfg = Config(routers=[ScorerConfig(router="random")], engine={"enabled": False}, routing=routing,
                 strong={"name": strong.model, "base_url": strong.base_url},
                 weak={"name": weak.model, "base_url": weak.base_url})
    backends = {"strong": OpenAIBackend(cfg.strong, "strong", {}), "weak": OpenAIBackend(cfg.weak, "weak", {})}
    return RoutingService(cfg, _score, backends, GatewayMetrics(),  # type: ignore[arg-type]
                          TierReadiness(backends, interval_s=0.2, engine_tiers=engine_tiers))  # type: ignore[arg-type]


def test_a_starting_tier_gets_a_503_that_says_so_then_answers(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    strong, weak = fakes

    async def go() -> None:
        service = _service(strong, weak)
        weak.mode = "starting"
        for stream in (False, True):
            decision = await service.decide(REQ, time.perf_counter())
            with pytest.raises(APIError) as err:
                await (service.open_stream(REQ, decision) if stream else service.complete(REQ, decision))
            assert err.value.status == 503 and err.value.code == "not_ready"
            assert "weak" in err.value.message and "not ready" in err.value.message
            assert err.value.headers() == {"Retry-After": "5"}
        state = await service.readiness.snapshot()  # type: ignore[union-attr]
        assert state["not_ready"] == ["weak"] and "HTTP 404" in state["tiers"]["weak"]["detail"]
        assert weak.calls == 0  # never called while not ready
        weak.mode = "ok"
        await asyncio.sleep(0.25)
        assert (await service.complete(REQ, await service.decide(REQ, time.perf_counter())))["model"] == "fake-weak"
        assert (await service.readiness.snapshot())["ready"]  # type: ignore[union-attr]
        weak.mode = "starting"  # ready once is ready for good: failures are the breaker's business now
        assert await service.readiness.check("weak")  # type: ignore[union-attr]
        await service.aclose()

    asyncio.run(go())


def test_the_other_tier_answers_when_a_fallback_is_configured(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    strong, weak = fakes

    async def go() -> None:
        service = _service(strong, weak, weak_fallback_to_strong=True)
        weak.mode = "starting"
        decision = await service.decide(REQ, time.perf_counter())
        assert (await service.complete(REQ, decision))["model"] == "fake-strong"
        assert decision.fallback == "weak_error"
        errors = service.metrics.registry.get_sample_value(
            "routeray_upstream_errors_total", {"tier": "weak", "reason": "not_ready"})
        assert errors == 1
        await service.aclose()

    asyncio.run(go())


def test_probes_are_shared_and_spaced(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    strong, weak = fakes
    probes = []

    class Counting(OpenAIBackend):
        async def probe(self, timeout_s: float = 2.0, missing_means_starting: bool = True) -> tuple[bool, str]:
            probes.append(time.monotonic())
            await asyncio.sleep(0.05)
            return False, "HTTP 404"

    async def go() -> None:
        cfg = Config(engine={"enabled": False}, strong={"name": "s", "base_url": strong.base_url},
                     weak={"name": "w", "base_url": weak.base_url})
        readiness = TierReadiness({"weak": Counting(cfg.weak, "weak", {})}, interval_s=10)
        assert not any(await asyncio.gather(*(readiness.check("weak") for _ in range(20))))
        assert not await readiness.check("weak")
        assert len(probes) == 1

    asyncio.run(go())


def test_an_upstream_without_a_models_route_is_ready(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    """Only the local engine's 404 means "still starting"; an external API may have no ``/models`` route."""
    strong, weak = fakes

    async def go() -> None:
        strong.mode = "no_models_route"
        service = _service(strong, weak)  # weak is the engine tier, strong an external API
        state = await service.readiness.snapshot()  # type: ignore[union-attr]
        assert state["ready"] and state["tiers"]["strong"]["ready"]
        req = ChatCompletionRequest.model_validate({"model": "strong", "messages": [{"role": "user", "content": "hi"}]})
        decision = await service.decide(req, time.perf_counter())
        assert (await service.complete(req, decision))["model"] == "fake-strong"
        await service.aclose()
        engine = _service(strong, weak, engine_tiers=("strong",))  # the same 404 from the engine: not ready
        assert (await engine.readiness.snapshot())["not_ready"] == ["strong"]  # type: ignore[union-attr]
        await engine.aclose()

    asyncio.run(go())
