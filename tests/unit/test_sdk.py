"""The SDK: a drop-in for the openai client that routes locally and calls both backends directly, through
the gateway's own RoutingService. Backends are loopback OpenAI-protocol servers (no Ray)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from routeray.gateway.protocol import ChatCompletionRequest
from routeray.sdk import AsyncRouter, Router
from tests.integration.fake_openai import FakeOpenAI

MSG = [{"role": "user", "content": "hello there"}]
FAST = {"timeout_s": 3, "read_timeout_s": 1, "connect_timeout_s": 1, "max_retries": 0}


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    strong, weak = FakeOpenAI("big").start(), FakeOpenAI("small").start()
    yield strong, weak
    strong.stop()
    weak.stop()


@pytest.fixture
def client(servers: tuple[FakeOpenAI, FakeOpenAI]) -> Iterator[Router]:
    strong, weak = servers
    strong.mode = weak.mode = "ok"
    with Router(strong={"name": "big", "base_url": strong.base_url, **FAST},
                weak={"name": "small", "base_url": weak.base_url, **FAST}, routers=["random"]) as c:
        yield c
    strong.mode = weak.mode = "ok"


def test_sync_create_routes_by_threshold(client: Router) -> None:
    hi = client.chat.completions.create(model="router-random-0", messages=MSG)
    lo = client.chat.completions.create(model="router-random-1", messages=MSG)
    assert isinstance(hi, ChatCompletion) and hi.model == "big" and hi.choices[0].message.content.startswith("[big]")
    assert lo.model == "small"
    assert "router-random-0.5" in client.models() and "big" in client.models()


def test_sync_stream(client: Router) -> None:
    chunks = list(client.chat.completions.create(model="weak", messages=MSG, stream=True))
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip() == "[small] hello there"


def test_async_client_and_extra_body(servers: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    strong, weak = servers

    async def go() -> list[str]:
        c = AsyncRouter(strong={"name": "big", "base_url": strong.base_url},
                        weak={"name": "small", "base_url": weak.base_url}, routers=["random"])
        outs = await asyncio.gather(*[c.chat.completions.create(
            model="router-random-0.5", messages=[{"role": "user", "content": f"q{i}"}],
            extra_body={"top_k": 5}) for i in range(30)])
        await c.close()
        return [o.model for o in outs]

    assert set(asyncio.run(go())) == {"big", "small"}
    assert weak.last_body is not None and weak.last_body["top_k"] == 5


def test_same_decisions_as_the_gateway_code(client: Router) -> None:
    from routeray import load_router

    scores = load_router("random").score([f"prompt {i}" for i in range(20)])
    for i, s in enumerate(scores):
        out = client.chat.completions.create(model="router-random-0.5",
                                             messages=[{"role": "user", "content": f"prompt {i}"}])
        assert out.model == ("big" if s >= 0.5 else "small")


def test_strong_failure_falls_back_and_is_counted(client: Router, servers: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    servers[0].mode = "fail"
    assert client.chat.completions.create(model="strong", messages=MSG).model == "small"
    value = client.metrics.registry.get_sample_value(
        "routeray_fallbacks_total", {"reason": "strong_error", "to_tier": "weak"})
    assert value == 1.0


def test_errors_are_openai_exceptions(client: Router, servers: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    with pytest.raises(openai.BadRequestError, match="within \\[0, 1\\]"):
        client.chat.completions.create(model="router-random-2", messages=MSG)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="weak", messages=[])
    servers[1].mode = "fail"
    with pytest.raises(openai.InternalServerError, match="weak backend"):
        client.chat.completions.create(model="weak", messages=MSG)


def test_scorer_failure_takes_the_configured_tier(servers: tuple[FakeOpenAI, FakeOpenAI], tmp_path) -> None:
    strong, weak = servers
    with Router(strong={"name": "big", "base_url": strong.base_url}, weak={"name": "small", "base_url": weak.base_url},
                routers=[{"router": "mf", "artifact": str(tmp_path / "missing")}],
                routing={"scorer_failure_tier": "strong"}) as c:
        out = c.chat.completions.create(model="router-mf-0.9", messages=MSG)
        assert out.model == "big"
        assert c.metrics.registry.get_sample_value(
            "routeray_fallbacks_total", {"reason": "scorer_error", "to_tier": "strong"}) == 1.0


def test_weak_failure_falls_back_to_strong_when_configured(servers: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    strong, weak = servers
    weak.mode = "fail"
    try:
        with Router(strong={"name": "big", "base_url": strong.base_url, **FAST},
                    weak={"name": "small", "base_url": weak.base_url, **FAST}, routers=["random"],
                    routing={"weak_fallback_to_strong": True}) as c:
            assert c.chat.completions.create(model="router-random-1", messages=MSG).model == "big"
            assert c.metrics.registry.get_sample_value(
                "routeray_fallbacks_total", {"reason": "weak_error", "to_tier": "strong"}) == 1.0
    finally:
        weak.mode = "ok"


def test_slow_scorer_times_out_to_the_default_tier(servers: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    import time as _time
    from typing import ClassVar

    import numpy as np

    from routeray.routers.base import Router as RouterBase
    from routeray.routers.registry import register_router

    class SlowRouter(RouterBase):
        name: ClassVar[str] = "slow_test_router"
        needs_artifact: ClassVar[bool] = False

        @classmethod
        def load(cls, artifact_dir, **overrides):  # type: ignore[no-untyped-def]
            return cls()

        def score(self, prompts):  # type: ignore[no-untyped-def]
            _time.sleep(4.0)
            return np.ones(len(prompts))

    from routeray.routers import registry

    if SlowRouter.name not in registry._REGISTERED:
        register_router(SlowRouter)
    strong, weak = servers
    with Router(strong={"name": "big", "base_url": strong.base_url}, weak={"name": "small", "base_url": weak.base_url},
                routers=[SlowRouter.name], routing={"scorer_timeout_s": 0.2, "scorer_failure_tier": "weak"}) as c:
        t0 = _time.monotonic()
        out = c.chat.completions.create(model=f"router-{SlowRouter.name}-0", messages=MSG)
        assert out.model == "small" and _time.monotonic() - t0 < 3.0  # the 0.2 s timeout, not the 4 s score


def test_the_rerouting_guard_keeps_a_found_gadget_on_the_weak_model(servers: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    """The real default mf through the SDK's routing service: the gadget bench/rerouting.py found against the
    unguarded mf sends a weak-routed GSM8K question strong, unless the router's config turns the guard on."""
    from routeray.routers.registry import load_router
    from tests.unit.routers.test_guard import FOUND_GADGET

    strong, weak = servers
    question = ("A bakery sells muffins for $3 each and cookies for $1 each. On Monday it sold 40 muffins and "
                "twice as many cookies. How much money did the bakery make on Monday from muffins and cookies?")
    tiers = {"strong": {"name": "big", "base_url": strong.base_url, "score_as": "gpt-4-1106-preview", **FAST},
             "weak": {"name": "small", "base_url": weak.base_url, "score_as": "mistralai/Mixtral-8x7B-Instruct-v0.1",
                      **FAST}}
    guard = {"mode": "spans", "margin": 0.01}
    with Router(**tiers, routers=["mf"]) as plain, \
            Router(**tiers, routers=[{"router": "mf", "overrides": {"guard": guard}}]) as guarded:
        own, lifted = load_router("mf").score([question, f"{FOUND_GADGET} {question}"])
        assert lifted > own + 0.02  # the gadget lifts the unguarded score
        model = f"router-mf-{(own + lifted) / 2:.4f}"  # between the two: the question alone goes weak
        attacked = [{"role": "user", "content": f"{FOUND_GADGET} {question}"}]
        assert plain.chat.completions.create(model=model, messages=[{"role": "user", "content": question}]).model == "small"
        assert plain.chat.completions.create(model=model, messages=attacked).model == "big"
        assert guarded.chat.completions.create(model=model, messages=attacked).model == "small"


# ---- a stream's head (routeray.gateway.service: the response starts with the first chunk carrying output) ----
def test_a_stream_s_first_write_holds_the_opening_chunk_and_the_first_token(client: Router) -> None:
    async def parts() -> list[str]:
        service = client._async._service()  # this event loop's routing service
        req = ChatCompletionRequest.model_validate(
            {"model": "weak", "stream": True, "messages": [{"role": "user", "content": "one two three"}]})
        decision = await service.decide(req, 0.0)
        return [part async for part in await service.open_stream(req, decision)]

    out = asyncio.run(parts())
    head = [json.loads(e.removeprefix("data: ")) for e in out[0].split("\n\n") if e]
    assert [c["choices"][0]["delta"] for c in head] == [{"role": "assistant", "content": ""},
                                                        {"content": head[1]["choices"][0]["delta"]["content"]}]
    assert head[1]["choices"][0]["delta"]["content"].strip() and head[1]["model"] == "small"
    assert out[-1] == "data: [DONE]\n\n" and len(out) > 3  # the rest, one part per chunk


@pytest.mark.parametrize("mode", ["garbage_before_content", "stall_before_content"])
def test_a_stream_broken_before_its_first_token_falls_back(client: Router, servers: tuple, mode: str) -> None:
    servers[0].mode = mode
    chunks = list(client.chat.completions.create(model="strong", stream=True,
                                                 messages=MSG))
    assert {c.model for c in chunks} == {"small"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()


def test_a_stream_broken_after_its_first_token_ends_with_an_error(client: Router, servers: tuple) -> None:
    servers[0].mode = "garbage_stream"
    seen = []
    with pytest.raises(openai.APIError):
        for c in client.chat.completions.create(model="strong", stream=True,
                                                messages=MSG):
            seen.append(c)
    assert {c.model for c in seen} == {"big"} and any(c.choices[0].delta.content for c in seen)
