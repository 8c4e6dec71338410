"""The backends' circuit breaker: its state machine on a fake clock, and a real client against a real
OpenAI-protocol server on loopback that fails on demand (the tier is skipped while open, a trial call after
the cool-down closes it again; 4xx answers do not trip it; off by default)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from routeray.config import BackendConfig
from routeray.gateway.backends import BackendError, CircuitBreaker, OpenAIBackend
from tests.integration.fake_openai import FakeOpenAI

BODY = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 4}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_then_one_trial_decides() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=3, cooldown_s=10, clock=clock)
    for _ in range(2):
        assert b.allow()
        b.failed()
    b.succeeded()  # a success in between resets the count
    for _ in range(3):
        assert b.allow()
        b.failed()
    assert not b.allow() and b.retry_in() == pytest.approx(10)
    clock.now += 10
    assert b.allow()  # the trial
    assert not b.allow()  # others still refused while it runs
    b.failed()  # trial failed: open again for a full cool-down
    assert not b.allow()
    clock.now += 10
    assert b.allow()
    b.abandoned()  # a cancelled trial frees the slot without a verdict
    assert b.allow()
    b.succeeded()
    assert all(b.allow() for _ in range(5))


def test_zero_failures_is_off() -> None:
    b = CircuitBreaker(failures=0, cooldown_s=10)
    for _ in range(50):
        b.failed()
    assert b.allow()


@pytest.fixture()
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI("fake").start()
    yield fake
    fake.stop()


def _backend(fake: FakeOpenAI, failures: int) -> OpenAIBackend:
    cfg = BackendConfig(name="fake", base_url=fake.base_url, max_retries=0, timeout_s=5,
                        breaker_failures=failures, breaker_cooldown_s=0.5)
    return OpenAIBackend(cfg, "weak", environ={})


def test_open_breaker_skips_the_tier_and_a_trial_closes_it(server: FakeOpenAI) -> None:
    async def go() -> None:
        backend = _backend(server, failures=2)
        server.mode = "fail"
        for _ in range(2):
            with pytest.raises(BackendError) as err:
                await backend.complete(BODY)
            assert err.value.reason == "status_5xx"
        calls = server.calls
        t0 = time.monotonic()
        with pytest.raises(BackendError, match="next try in") as err:
            await backend.complete(BODY)
        assert err.value.reason == "circuit_open" and time.monotonic() - t0 < 0.4  # at once, no timeout
        with pytest.raises(BackendError, match="not called"):
            await anext(backend.stream(BODY))
        assert server.calls == calls  # the tier was not called while open
        server.mode = "ok"
        await asyncio.sleep(0.6)
        assert (await backend.complete(BODY))["choices"]
        chunks = [c async for c in backend.stream(BODY)]
        assert chunks and server.calls == calls + 2
        await backend.aclose()

    asyncio.run(go())


def test_rejections_do_not_trip_it_and_it_is_off_by_default(server: FakeOpenAI) -> None:
    async def go() -> None:
        strict = _backend(server, failures=1)
        server.mode = "reject"  # HTTP 400: the upstream is up, the request was wrong
        for _ in range(3):
            with pytest.raises(BackendError) as err:
                await strict.complete(BODY)
            assert err.value.client_fault
        server.mode = "fail"
        default = OpenAIBackend(BackendConfig(name="fake", base_url=server.base_url, max_retries=0), "weak", {})
        for _ in range(10):
            with pytest.raises(BackendError) as err:
                await default.complete(BODY)
            assert err.value.reason == "status_5xx"
        await strict.aclose()
        await default.aclose()

    asyncio.run(go())


def test_a_200_that_is_not_an_answer_counts_as_a_failure(server: FakeOpenAI) -> None:
    async def go() -> None:
        backend = _backend(server, failures=2)
        server.mode = "garbage"  # HTTP 200 with HTML: up, but not answering
        for _ in range(2):
            with pytest.raises(BackendError) as err:
                await backend.complete(BODY)
            assert err.value.reason == "bad_response"
        with pytest.raises(BackendError) as err:
            await backend.complete(BODY)
        assert err.value.reason == "circuit_open"
        await backend.aclose()

    asyncio.run(go())
