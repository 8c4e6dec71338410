"""Access control on real Ray Serve: client keys (401), per-key rate limits (429 + Retry-After), the body
size limit (413), and a leak scan: a recognisable strong API key and prompt text driven through every
success, failure and fallback path must appear in no response, no /metrics, /stats or /v1/models body and
no Ray/Serve log file. Upstreams are loopback OpenAI-protocol servers of the tests' own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from routeray.config import RoutingConfig
from tests.integration.conftest import FakeGateway, fake_gateway

pytestmark = pytest.mark.integration

SECRET = "sk-LEAKCANARY-5e8d21b7c4"
PROMPT = "PROMPTCANARY-93 what is my bank password"
FAST_KEY, SLOW_KEY = "sk-client-fast-0001", "sk-client-slow-0002"
MSG = [{"role": "user", "content": PROMPT}]


class Env:
    def __init__(self, gw: FakeGateway):
        self.url, self.strong, self.weak = gw.url, gw.strong, gw.weak

    def client(self, key: str = FAST_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def env(clean_ray: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    keys = tmp_path_factory.mktemp("access") / "client_keys.txt"
    keys.write_text(f"{FAST_KEY}\n{SLOW_KEY} 6  # one request every 10 s\n")
    os.environ["ROUTERAY_TEST_STRONG_KEY"] = SECRET  # inherited by the Ray cluster this module starts
    access = {"api_keys_file": str(keys), "rate_limit_per_minute": 60_000, "rate_limit_burst": 1000}
    try:
        with fake_gateway(backend={"timeout_s": 2, "read_timeout_s": 1},
                          strong={"api_key_env": "ROUTERAY_TEST_STRONG_KEY"},
                          routing=RoutingConfig(scorer_timeout_s=20),
                          ingress={"max_body_bytes": 64_000, "access": access}) as gw:
            yield Env(gw)
    finally:
        os.environ.pop("ROUTERAY_TEST_STRONG_KEY", None)


def _post(env: Env, body: bytes | dict, key: str | None = FAST_KEY) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, dict):
        return httpx.post(f"{env.url}/v1/chat/completions", json=body, headers=headers, timeout=30)
    return httpx.post(f"{env.url}/v1/chat/completions", content=body, timeout=30,
                      headers={**headers, "content-type": "application/json"})


def test_keys_are_required_where_they_should_be(env: Env) -> None:
    body = {"model": "weak", "messages": MSG}
    for key in (None, "sk-wrong"):
        r = _post(env, body, key)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        for path in ("/v1/models", "/stats"):
            headers = {"authorization": f"Bearer {key}"} if key else {}
            assert httpx.get(f"{env.url}{path}", headers=headers).status_code == 401
    with pytest.raises(openai.AuthenticationError):
        env.client("sk-wrong").chat.completions.create(model="weak", messages=MSG)
    assert env.client().chat.completions.create(model="weak", messages=MSG).model == "fake-weak"
    assert httpx.get(f"{env.url}/health").status_code == 200  # probes and scrapers need no key
    assert httpx.get(f"{env.url}/metrics").status_code == 200


def test_rate_limit_per_key_is_a_429_with_retry_after(env: Env) -> None:
    slow = env.client(SLOW_KEY)
    assert slow.chat.completions.create(model="weak", messages=MSG).model == "fake-weak"
    with pytest.raises(openai.RateLimitError) as info:
        slow.chat.completions.create(model="weak", messages=MSG)
    resp = info.value.response
    assert 1 <= int(resp.headers["retry-after"]) <= 10
    assert resp.json()["error"]["code"] == "rate_limit_exceeded" and SLOW_KEY not in resp.text
    # the other key is not slowed down
    assert env.client().chat.completions.create(model="weak", messages=MSG).model == "fake-weak"


def test_body_size_limit_is_a_413(env: Env) -> None:
    big = {"model": "weak", "messages": [{"role": "user", "content": "a" * 100_000}]}
    r = _post(env, big)
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"
    assert _post(env, {"model": "weak", "messages": MSG}).status_code == 200


def test_strong_key_and_prompts_never_leak(env: Env) -> None:
    seen: list[str] = []
    client = env.client()
    for mode in ("ok", "fail", "stall", "garbage", "reject", "stall_midstream", "garbage_stream"):
        env.strong.mode = mode
        for model in ("strong", "router-random-0"):
            for stream in (False, True):
                body = {"model": model, "messages": MSG, "stream": stream}
                r = _post(env, body)
                seen.append(f"{r.status_code} {dict(r.headers)} {r.text}")
                assert r.status_code < 500 or r.json()["error"]["message"]  # an answer or a clear error
    env.strong.mode = "ok"
    seen.append(str(client.models.list()))
    for path in ("/metrics", "/stats", "/v1/models", "/health"):
        seen.append(httpx.get(f"{env.url}{path}", headers={"authorization": f"Bearer {FAST_KEY}"}).text)
    assert f"Bearer {SECRET}" in env.strong.authorizations  # the key did reach the upstream
    assert any("strong_error" in s for s in seen)  # and fallbacks happened
    for text in seen:
        assert SECRET not in text

    import ray

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert any("serve" in str(p) for p in files)
    for path in files:
        data = path.read_bytes()
        assert SECRET.encode() not in data, f"strong API key found in {path}"
        assert PROMPT.encode() not in data, f"prompt text found in {path} with log_prompts off"
