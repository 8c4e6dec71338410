"""The gateway's hand-written hot-path mechanisms against the well-kept library that would replace each:
microseconds per request on the path every chat request takes (no failure, no wait).

- rate limiting: routeray.gateway.access.TokenBucket.take() vs ``limits`` (moving and fixed window, memory
  storage) — the check made per chat request per key;
- retries and backoff: OpenAIBackend._with_retries around a send that succeeds at once vs ``tenacity``'s
  AsyncRetrying with exponential jittered waits;
- circuit breaker: routeray.gateway.backends.CircuitBreaker allow() + succeeded() vs ``pybreaker``.

The libraries are not project dependencies: run with a private venv that has them (and the project's own
dependencies for the imports):

    /work/venvs/arch/m2v/bin/pip install limits==5.8.0 tenacity==9.2.1 pybreaker==1.4.1 httpx pydantic
    cd /tmp && PYTHONPATH=<repo> /work/venvs/arch/m2v/bin/python <repo>/bench/handwritten_vs_libraries.py

Prints a table and writes ``bench/results/handwritten_vs_libraries.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def per_call_us(fn: Callable[[], Any], n: int) -> float:
    """Best of three runs of ``n`` calls, microseconds per call."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def async_per_call_us(make: Callable[[], Any], n: int) -> float:
    async def run() -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(n):
                await make()
            best = min(best, (time.perf_counter() - t0) / n * 1e6)
        return best

    return asyncio.run(run())


def rate_limiting(n: int) -> dict[str, float]:
    from limits import RateLimitItemPerMinute
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

    from routeray.gateway.access import TokenBucket

    ours = TokenBucket(rate_per_s=1e9 / 60, burst=1e9)
    item = RateLimitItemPerMinute(10**9)
    moving, fixed = MovingWindowRateLimiter(MemoryStorage()), FixedWindowRateLimiter(MemoryStorage())
    return {"routeray TokenBucket.take": per_call_us(ours.take, n),
            "limits MovingWindowRateLimiter.hit": per_call_us(lambda: moving.hit(item, "key"), n // 10),
            "limits FixedWindowRateLimiter.hit": per_call_us(lambda: fixed.hit(item, "key"), n)}


def retries(n: int) -> dict[str, float]:
    import httpx
    from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

    from routeray.config import BackendConfig
    from routeray.gateway.backends import OpenAIBackend

    ok = httpx.Response(200, request=httpx.Request("POST", "http://x/v1/chat/completions"))

    async def send() -> httpx.Response:
        return ok

    async def ours() -> httpx.Response:
        backend = OURS[0]
        return await backend._with_retries(send)

    async def with_tenacity() -> httpx.Response:
        async for attempt in AsyncRetrying(stop=stop_after_attempt(3), wait=wait_exponential_jitter(multiplier=0.2),
                                           retry=retry_if_exception_type(httpx.HTTPError), reraise=True):
            with attempt:
                return await send()
        raise AssertionError("unreachable")

    async def setup() -> None:
        OURS.append(OpenAIBackend(BackendConfig(name="x", base_url="http://127.0.0.1:9/v1"), "strong", {}))

    OURS: list[OpenAIBackend] = []
    asyncio.run(setup())
    return {"routeray OpenAIBackend._with_retries": async_per_call_us(ours, n),
            "tenacity AsyncRetrying": async_per_call_us(with_tenacity, n)}


def breakers(n: int) -> dict[str, float]:
    import pybreaker

    from routeray.gateway.backends import CircuitBreaker

    ours = CircuitBreaker(5, 10.0)

    def guarded() -> None:
        if ours.allow():
            ours.succeeded()

    theirs = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=10)
    return {"routeray CircuitBreaker allow+succeeded": per_call_us(guarded, n),
            "pybreaker CircuitBreaker.call": per_call_us(lambda: theirs.call(lambda: None), n)}


def main() -> None:
    n = 100_000
    result = {"load_average": os.getloadavg(), "us_per_call": {
        "rate limiting": rate_limiting(n), "retries (success path)": retries(n // 5), "circuit breaker": breakers(n)}}
    result["load_average_after"] = os.getloadavg()
    for group, rows in result["us_per_call"].items():  # type: ignore[union-attr]
        print(group)
        for name, us in rows.items():
            print(f"  {name:<42}{us:>8.2f} us/call")
    out = REPO / "bench" / "results" / "handwritten_vs_libraries.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}; load average {result['load_average']} -> {result['load_average_after']}")


if __name__ == "__main__":
    main()
