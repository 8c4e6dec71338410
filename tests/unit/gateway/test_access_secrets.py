"""Without Ray: the strong API key never reaches answers, errors, metrics, /v1/models, spend or logs (it does
reach the upstream), and prompt text reaches the logs only when ``ingress.log_prompts`` is on. The routing
service is the gateway's own; backends are loopback OpenAI-protocol servers."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest

from routeray.config import BackendConfig, Config, ScorerConfig
from routeray.gateway.backends import OpenAIBackend
from routeray.gateway.protocol import APIError, ChatCompletionRequest
from routeray.gateway.service import RoutingService, Score
from tests.integration.fake_openai import FakeOpenAI

SECRET = "sk-LEAKCANARY-7f3a9c2e1d"
PROMPT = "PROMPTCANARY: please summarise my medical record"
FAST = {"timeout_s": 1, "read_timeout_s": 0.3, "connect_timeout_s": 1, "max_retries": 1, "backoff_s": 0.01}


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    strong, weak = FakeOpenAI("big"), FakeOpenAI("small")
    seen: list[str] = []

    @strong.app.middleware("http")
    async def record_auth(request, call_next):  # type: ignore[no-untyped-def]
        seen.append(request.headers.get("authorization", ""))
        return await call_next(request)

    strong.seen_auth = seen  # type: ignore[attr-defined]
    strong.start(), weak.start()
    yield strong, weak
    strong._server.force_exit = True  # stalled handlers would hold a graceful shutdown for its 10 s join
    strong.stop()
    weak.stop()


def _service(strong: FakeOpenAI, weak: FakeOpenAI, log_prompts: bool = False,
             score: float | None = 0.9) -> RoutingService:
    cfg = Config(routers=[ScorerConfig(router="random")],
                 strong=BackendConfig(name="big", base_url=strong.base_url, api_key_env="TEST_STRONG_KEY", **FAST),
                 weak=BackendConfig(name="small", base_url=weak.base_url, **FAST),
                 ingress={"log_prompts": log_prompts})
    env = {"TEST_STRONG_KEY": SECRET}
    backends = {"strong": OpenAIBackend(cfg.strong, "strong", env), "weak": OpenAIBackend(cfg.weak, "weak", env)}

    async def score_fn(router: str, prompt: str) -> Score:
        if score is None:
            raise RuntimeError("scorer down")
        return Score(score)

    return RoutingService(cfg, score_fn, backends)


async def _drive(service: RoutingService, strong: FakeOpenAI) -> list[str]:
    """Requests through every path: strong ok, each strong failure mode (fallback), streams, total failure."""
    out: list[str] = []
    req = ChatCompletionRequest.model_validate({"model": "router-random-0.5",
                                                "messages": [{"role": "user", "content": PROMPT}]})
    sreq = req.model_copy(update={"stream": True})
    for mode in ("ok", "fail", "stall", "garbage", "reject", "stall_midstream", "garbage_stream"):
        strong.mode = mode
        for r in (req, sreq):
            try:
                decision = await service.decide(r, 0.0)
                if r.stream:
                    out += [line async for line in await service.open_stream(r, decision)]
                else:
                    out.append(json.dumps(await service.complete(r, decision)))
                out.append(json.dumps(decision.headers()))
            except APIError as err:
                out.append(json.dumps(err.to_dict()))
    strong.mode = "ok"
    out.append(service.models().model_dump_json())
    out.append(json.dumps(service.spend.snapshot()))
    out.append(service.metrics.render()[0].decode())
    return out


def test_strong_key_is_used_but_never_leaks(servers, caplog: pytest.LogCaptureFixture) -> None:
    strong, weak = servers
    service = _service(strong, weak)
    with caplog.at_level(logging.DEBUG):  # every logger, httpx and httpcore included
        outputs = asyncio.run(_drive(service, strong))
        asyncio.run(service.aclose())
    assert f"Bearer {SECRET}" in strong.seen_auth  # the key really was sent upstream...
    assert any("strong_error" in o for o in outputs)  # ...and the failure paths really ran
    assert any('"error"' in o for o in outputs)
    for text in outputs + [r.getMessage() for r in caplog.records] + [caplog.text]:
        assert SECRET not in text and SECRET[3:15] not in text


@pytest.mark.parametrize("log_prompts", [False, True])
def test_prompt_text_logged_only_when_asked(servers, caplog: pytest.LogCaptureFixture, log_prompts: bool) -> None:
    strong, weak = servers
    with caplog.at_level(logging.DEBUG):
        for score in (0.9, None):  # a routed request, and a scorer failure (warning path)
            service = _service(strong, weak, log_prompts=log_prompts, score=score)
            asyncio.run(_drive(service, strong))
            asyncio.run(service.aclose())
    logged = "PROMPTCANARY" in caplog.text
    assert logged == log_prompts
