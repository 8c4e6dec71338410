"""A stream's head: the gateway starts its response with the first chunk that carries output, so a tier
that breaks after the opening chunk but before its first token still falls back, and the first write holds
the token. Backends are loopback fakes (no Ray)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from routeray.gateway.protocol import ChatCompletionRequest
from routeray.gateway.service import _opens_only
from routeray.sdk import Router
from tests.integration.fake_openai import FakeOpenAI

FAST = {"timeout_s": 3, "read_timeout_s": 1, "connect_timeout_s": 1, "max_retries": 0}


def _chunk(delta: dict | None = None, finish: str | None = None, **extra: object) -> dict:
    return {"choices": [{"index": 0, "delta": delta if delta is not None else {}, "finish_reason": finish}],
            **extra}


@pytest.mark.parametrize(("chunk", "opens_only"), [
    (_chunk({"role": "assistant", "content": ""}), True),
    (_chunk({"role": "assistant"}), True),
    (_chunk({"role": "assistant", "content": None, "tool_calls": []}), True),
    (_chunk({"content": "Hi"}), False),
    (_chunk({"role": "assistant", "content": "Hi"}), False),
    (_chunk({"tool_calls": [{"index": 0, "function": {"name": "f"}}]}), False),
    (_chunk({"reasoning_content": "think"}), False),
    (_chunk({}, "stop"), False),
    (_chunk({"role": "assistant", "content": ""}, usage={"prompt_tokens": 1}), False),
    ({"choices": [], "usage": {"prompt_tokens": 1}}, False),
    ({"choices": "garbage"}, False),
])
def test_which_chunks_only_open_the_answer(chunk: dict, opens_only: bool) -> None:
    assert _opens_only(chunk) is opens_only


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    strong, weak = FakeOpenAI("big").start(), FakeOpenAI("small").start()
    yield strong, weak
    strong.stop()
    weak.stop()


@pytest.fixture
def router(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> Iterator[Router]:
    strong, weak = fakes
    with Router(strong={"name": "big", "base_url": strong.base_url, **FAST},
                weak={"name": "small", "base_url": weak.base_url, **FAST}, routers=["random"]) as r:
        yield r
    strong.mode = "ok"


def test_the_first_write_holds_the_opening_chunk_and_the_first_token(router: Router) -> None:
    async def parts() -> list[str]:
        service = router._async._service()  # this event loop's routing service
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
def test_a_stream_broken_before_its_first_token_falls_back(router: Router, fakes: tuple, mode: str) -> None:
    fakes[0].mode = mode
    chunks = list(router.chat.completions.create(model="strong", stream=True,
                                                 messages=[{"role": "user", "content": "hello there"}]))
    assert {c.model for c in chunks} == {"small"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()


def test_a_stream_broken_after_its_first_token_ends_with_an_error(router: Router, fakes: tuple) -> None:
    import openai

    fakes[0].mode = "garbage_stream"
    seen = []
    with pytest.raises(openai.APIError):
        for c in router.chat.completions.create(model="strong", stream=True,
                                                messages=[{"role": "user", "content": "hello there"}]):
            seen.append(c)
    assert {c.model for c in seen} == {"big"} and any(c.choices[0].delta.content for c in seen)
