"""A rate-limited upstream (HTTP 429), against a real OpenAI-protocol server on loopback: its Retry-After
puts the tier in a cool-down (no retry, no call before it expires, the other tier answers meanwhile), and
a 429 that outlasts the retries counts against the circuit breaker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from routeray.config import BackendConfig, Config, ScorerConfig
from routeray.gateway.backends import BackendError, OpenAIBackend
from routeray.gateway.overload import QueueFull
from routeray.gateway.protocol import APIError, ChatCompletionRequest
from routeray.gateway.service import RoutingService, Score
from routeray.metrics import GatewayMetrics
from tests.integration.fake_openai import FakeOpenAI

BODY = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture()
def fakes() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with FakeOpenAI("fake-strong") as strong, FakeOpenAI("fake-weak") as weak:
        yield strong, weak


def _backend(fake: FakeOpenAI, tier: str = "strong", **cfg: object) -> OpenAIBackend:
    settings = {"max_retries": 2, "backoff_s": 0.01, "timeout_s": 5, **cfg}
    return OpenAIBackend(BackendConfig(name=fake.model, base_url=fake.base_url, **settings), tier, environ={})


def test_retry_after_cools_the_tier_down_without_retrying(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    strong, _ = fakes

    async def go() -> None:
        backend = _backend(strong)
        strong.mode, strong.retry_after = "rate_limited", "1"
        with pytest.raises(BackendError) as err:
            await backend.complete(BODY)
        assert err.value.reason == "rate_limited" and strong.calls == 1  # no retry before Retry-After
        strong.mode = "ok"
        t0 = time.monotonic()
        for call in (backend.complete(BODY), anext(backend.stream(BODY))):
            with pytest.raises(BackendError, match="Retry-After") as err:
                await call
            assert err.value.reason == "cooling_down" and 0 < err.value.retry_after_s <= 1
        assert strong.calls == 1 and time.monotonic() - t0 < 0.5  # refused at once, not called
        await asyncio.sleep(1.05)
        assert (await backend.complete(BODY))["choices"] and strong.calls == 2
        await backend.aclose()

    asyncio.run(go())


def test_an_http_date_retry_after_is_understood(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    from email.utils import formatdate

    strong, _ = fakes

    async def go() -> None:
        backend = _backend(strong)
        strong.mode, strong.retry_after = "rate_limited", formatdate(time.time() + 30, usegmt=True)
        with pytest.raises(BackendError):
            await backend.complete(BODY)
        with pytest.raises(BackendError) as err:
            await backend.complete(BODY)
        assert err.value.reason == "cooling_down" and 25 <= err.value.retry_after_s <= 30
        await backend.aclose()

    asyncio.run(go())


def test_a_429_that_outlasts_the_retries_counts_against_the_breaker(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    strong, _ = fakes

    async def go() -> None:
        backend = _backend(strong, max_retries=1, breaker_failures=2, breaker_cooldown_s=5)
        strong.mode = "rate_limited"  # no Retry-After: our own backoff, then give up
        for _ in range(2):
            with pytest.raises(BackendError) as err:
                await backend.complete(BODY)
            assert err.value.reason == "rate_limited"
        assert strong.calls == 4  # each call retried once
        with pytest.raises(BackendError) as err:
            await backend.complete(BODY)
        assert err.value.reason == "circuit_open" and strong.calls == 4
        await backend.aclose()

    asyncio.run(go())


async def _zero(router: str, prompt: str) -> Score:
    return Score(0.9)


def _service(strong: FakeOpenAI, weak: FakeOpenAI, fallback: bool) -> RoutingService:
    cfg = Config(routers=[ScorerConfig(router="random")], engine={"enabled": False},
                 strong={"name": strong.model, "base_url": strong.base_url, "max_retries": 2, "backoff_s": 0.01},
                 weak={"name": weak.model, "base_url": weak.base_url},
                 routing={"strong_fallback_to_weak": fallback})
    backends = {"strong": OpenAIBackend(cfg.strong, "strong", {}), "weak": OpenAIBackend(cfg.weak, "weak", {})}
    return RoutingService(cfg, _zero, backends, GatewayMetrics())  # type: ignore[arg-type]


def _count(service: RoutingService, name: str, **labels: str) -> float:
    return service.metrics.registry.get_sample_value(name, labels) or 0.0


def test_the_other_tier_answers_while_one_cools_down(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    strong, weak = fakes

    async def go() -> None:
        service = _service(strong, weak, fallback=True)
        strong.mode, strong.retry_after = "rate_limited", "30"
        req = ChatCompletionRequest.model_validate({**BODY, "model": "router-random-0.5"})
        for _ in range(3):
            decision = await service.decide(req, time.perf_counter())
            assert (await service.complete(req, decision))["model"] == "fake-weak"
            assert decision.fallback == "strong_error"
        assert strong.calls == 1 and weak.calls == 3
        assert _count(service, "routeray_fallbacks_total", reason="strong_error", to_tier="weak") == 3
        assert _count(service, "routeray_upstream_errors_total", tier="strong", reason="rate_limited") == 1
        assert _count(service, "routeray_upstream_errors_total", tier="strong", reason="cooling_down") == 2
        await service.aclose()

    asyncio.run(go())


def test_without_a_fallback_the_client_gets_a_429_with_retry_after(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    strong, weak = fakes

    async def go() -> None:
        service = _service(strong, weak, fallback=False)
        strong.mode, strong.retry_after = "rate_limited", "20"
        req = ChatCompletionRequest.model_validate({**BODY, "model": "strong"})
        for _ in range(2):  # the upstream's 429, then our own cool-down
            with pytest.raises(APIError) as err:
                await service.complete(req, await service.decide(req, time.perf_counter()))
            assert err.value.status == 429 and 1 <= int(err.value.headers()["Retry-After"]) <= 20
        assert strong.calls == 1
        await service.aclose()

    asyncio.run(go())


def test_a_shed_prompt_is_a_503_not_a_fallback(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    strong, weak = fakes

    async def full(router: str, prompt: str) -> Score:
        raise QueueFull("router random", 0.4, 0.25)

    async def go() -> None:
        service = _service(strong, weak, fallback=True)
        service.score_fn = full
        req = ChatCompletionRequest.model_validate({**BODY, "model": "router-random-0.5"})
        with pytest.raises(QueueFull) as err:
            await service.decide(req, time.perf_counter())
        assert err.value.status == 503 and err.value.type == "overloaded_error"
        assert _count(service, "routeray_fallbacks_total", reason="scorer_error", to_tier="weak") == 0
        assert strong.calls == weak.calls == 0
        await service.aclose()

    asyncio.run(go())
