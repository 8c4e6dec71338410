"""The gateway on real Ray Serve, with both tiers played by loopback OpenAI-protocol servers of the tests'
own that can be told to fail, stall or send garbage. Driven with the official ``openai`` client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from routeray.config import RoutingConfig, ScorerConfig
from tests.integration.conftest import FakeGateway, fake_gateway

pytestmark = pytest.mark.integration

MSG = [{"role": "user", "content": "What is the capital of France?"}]


# Shared with test_gateway_fast_path, which runs these tests again on the fast path.
BACKEND = {"timeout_s": 4, "read_timeout_s": 1.5, "max_retries": 1, "backoff_s": 0.05}
ROUTING = RoutingConfig(percent_min_samples=20, percent_window=500, scorer_timeout_s=20)  # shared CPUs


class Env:
    def __init__(self, gw: FakeGateway):
        self.url = gw.url
        self.cfg = gw.cfg
        self.strong = gw.strong
        self.weak = gw.weak
        self.client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, timeout=30)

    def reset(self) -> None:
        self.strong.mode = self.weak.mode = "ok"


@pytest.fixture(scope="module")
def env(clean_ray: None) -> Iterator[Env]:
    scorer = ScorerConfig(router="random", max_batch_size=32, batch_wait_timeout_s=0.01)
    with fake_gateway(backend=BACKEND, routing=ROUTING, ingress={"max_body_bytes": 64_000}, routers=[scorer]) as gw:
        yield Env(gw)


@pytest.fixture(autouse=True)
def _ok_modes(env: Env) -> Iterator[None]:
    env.reset()
    yield
    env.reset()


def test_models_and_health(env: Env) -> None:
    ids = [m.id for m in env.client.models.list().data]
    assert "router-random-0.5" in ids and "fake-strong" in ids and "fake-weak" in ids
    health = httpx.get(f"{env.url}/health").json()
    assert health["status"] == "ok" and health["routers"] == ["random"]


@pytest.mark.parametrize(("model", "tier"), [("router-random-0", "fake-strong"), ("router-random-1", "fake-weak"),
                                             ("strong", "fake-strong"), ("weak", "fake-weak"),
                                             ("fake-weak", "fake-weak")])
def test_routes_to_the_right_tier(env: Env, model: str, tier: str) -> None:
    raw = env.client.chat.completions.with_raw_response.create(model=model, messages=MSG)
    resp = raw.parse()
    assert resp.model == tier
    assert resp.choices[0].message.content.startswith(f"[{tier}]")
    assert raw.headers["x-routeray-tier"] == tier.removeprefix("fake-")


def test_streaming_matches_openai(env: Env) -> None:
    stream = env.client.chat.completions.create(model="router-random-0", messages=MSG, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "[fake-strong] What is the capital of France?"
    assert {c.model for c in chunks} == {"fake-strong"}


def test_fields_pass_through(env: Env) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    env.client.chat.completions.create(model="weak", messages=MSG, temperature=0.3, max_tokens=7, stop=["x"],
                                       tools=tools, response_format={"type": "text"}, seed=4)
    body = env.weak.last_body
    assert body is not None
    assert body["temperature"] == 0.3 and body["max_tokens"] == 7 and body["stop"] == ["x"]
    assert body["tools"] == tools and body["response_format"] == {"type": "text"} and body["seed"] == 4


def test_async_client_spreads_over_both_tiers(env: Env) -> None:
    async def go() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{env.url}/v1", api_key="unused", max_retries=0)
        outs = await asyncio.gather(*[
            client.chat.completions.create(model="router-random-0.5",
                                           messages=[{"role": "user", "content": f"question {i}"}])
            for i in range(40)])
        await client.close()
        return [o.model for o in outs]

    models = asyncio.run(go())
    assert set(models) == {"fake-strong", "fake-weak"}


def test_percentage_routing_holds_the_share(env: Env) -> None:
    async def go() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{env.url}/v1", api_key="unused", max_retries=0)
        out = []
        for start in range(0, 300, 50):  # waves, so the window fills as traffic arrives
            resp = await asyncio.gather(*[
                client.chat.completions.with_raw_response.create(
                    model="router-random-25%", messages=[{"role": "user", "content": f"prompt {i}"}])
                for i in range(start, start + 50)])
            out += [r.headers["x-routeray-tier"] for r in resp]
        await client.close()
        return out

    tiers = asyncio.run(go())
    share = tiers.count("strong") / len(tiers)
    assert 0.15 <= share <= 0.35, share


BAD = [
    ("not json", b"{nope", 400),
    ("array body", b"[1, 2]", 400),
    ("missing messages", b'{"model": "weak"}', 400),
    ("empty messages", b'{"model": "weak", "messages": []}', 400),
    ("messages not a list", b'{"model": "weak", "messages": "hi"}', 400),
    ("bad role", b'{"model": "weak", "messages": [{"role": "wizard", "content": "x"}]}', 400),
    ("model not a string", b'{"model": 3, "messages": [{"role": "user", "content": "x"}]}', 400),
    ("unknown router", b'{"model": "router-nope-0.5", "messages": [{"role": "user", "content": "x"}]}', 400),
    ("threshold above 1", b'{"model": "router-random-1.5", "messages": [{"role": "user", "content": "x"}]}', 400),
    ("negative threshold", b'{"model": "router-random--0.1", "messages": [{"role": "user", "content": "x"}]}', 400),
    ("nan threshold", b'{"model": "router-random-nan", "messages": [{"role": "user", "content": "x"}]}', 400),
    ("percent above 100", b'{"model": "router-random-150%", "messages": [{"role": "user", "content": "x"}]}', 400),
    ("unknown model", b'{"model": "gpt-17", "messages": [{"role": "user", "content": "x"}]}', 400),
    ("temperature out of range", b'{"model": "weak", "temperature": 9, "messages": [{"role": "user", "content": "x"}]}', 400),
    ("stream not bool", b'{"model": "weak", "stream": "yes please", "messages": [{"role": "user", "content": "x"}]}', 400),
    ("invalid utf-8", b'{"model": "weak", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400),
    ("huge body", b'{"model": "weak", "messages": [{"role": "user", "content": "' + b"a" * 100_000 + b'"}]}', 413),
]


@pytest.mark.parametrize(("what", "body", "status"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_openai_errors(env: Env, what: str, body: bytes, status: int) -> None:
    r = httpx.post(f"{env.url}/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    # and the gateway keeps serving
    assert env.client.chat.completions.create(model="weak", messages=MSG).model == "fake-weak"


def test_openai_client_raises_typed_errors(env: Env) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        env.client.chat.completions.create(model="router-random-7", messages=MSG)
    assert "within [0, 1]" in info.value.message
    r = httpx.get(f"{env.url}/v1/nothing-here")
    assert r.status_code == 404 and "error" in r.json()


@pytest.mark.parametrize("mode", ["fail", "stall", "garbage"])
def test_strong_failure_falls_back_to_weak(env: Env, mode: str) -> None:
    env.strong.mode = mode
    t0 = time.monotonic()
    raw = env.client.chat.completions.with_raw_response.create(model="router-random-0", messages=MSG)
    assert time.monotonic() - t0 < 15
    assert raw.parse().model == "fake-weak"
    assert raw.headers["x-routeray-fallback"] == "strong_error"


def test_strong_failure_falls_back_when_streaming(env: Env) -> None:
    env.strong.mode = "fail"
    chunks = list(env.client.chat.completions.create(model="strong", messages=MSG, stream=True))
    assert {c.model for c in chunks} == {"fake-weak"}


def test_weak_failure_is_a_clear_error_not_a_hang(env: Env) -> None:
    env.weak.mode = "stall"  # weak has no fallback by default
    t0 = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        env.client.chat.completions.create(model="weak", messages=MSG)
    assert time.monotonic() - t0 < 15
    assert info.value.status_code == 504 and "weak backend" in info.value.message
    env.weak.mode = "fail"
    with pytest.raises(openai.APIStatusError) as info:
        env.client.chat.completions.create(model="weak", messages=MSG)
    assert info.value.status_code == 502


def test_upstream_rejection_is_passed_back_not_retried_elsewhere(env: Env) -> None:
    env.strong.mode = "reject"
    with pytest.raises(openai.BadRequestError) as info:
        env.client.chat.completions.create(model="strong", messages=MSG, max_tokens=10**6)
    assert "max_tokens is too large" in info.value.message


@pytest.mark.parametrize("mode", ["stall_before_content", "garbage_before_content"])
def test_stream_broken_before_its_first_token_falls_back(env: Env, mode: str) -> None:
    """The response starts with the first token, not with the opening chunk: a strong stream that breaks
    between the two is not yet the client's, so the weak tier answers the whole stream."""
    env.strong.mode = mode
    t0 = time.monotonic()
    chunks = list(env.client.chat.completions.create(model="strong", messages=MSG, stream=True))
    assert time.monotonic() - t0 < 15
    assert {c.model for c in chunks} == {"fake-weak"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()


@pytest.mark.parametrize("mode", ["stall_midstream", "garbage_stream"])
def test_broken_stream_ends_with_an_error(env: Env, mode: str) -> None:
    env.strong.mode = mode
    t0 = time.monotonic()
    with pytest.raises(openai.APIError):
        for _ in env.client.chat.completions.create(model="strong", messages=MSG, stream=True):
            pass
    assert time.monotonic() - t0 < 15


def test_metrics_after_traffic(env: Env) -> None:
    for model in ("router-random-0", "router-random-1"):
        env.client.chat.completions.create(model=model, messages=MSG)
    text = httpx.get(f"{env.url}/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    def get(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert get("routeray_routing_decisions_total", router="random", tier="strong") >= 1
    assert get("routeray_routing_decisions_total", router="random", tier="weak") >= 1
    assert get("routeray_scoring_latency_seconds_count", router="random") >= 2
    assert get("routeray_scorer_batch_size_count", router="random") >= 2
    assert get("routeray_routing_overhead_seconds_count", router="random") >= 2
    assert get("routeray_upstream_latency_seconds_count", tier="weak") >= 1
    assert 0.0 < get("routeray_strong_call_share", router="random") < 1.0
    assert get("routeray_tokens_total", tier="weak", kind="completion") >= 7
    # the fault tests above ran first in this module: their failures were counted
    assert get("routeray_fallbacks_total", reason="strong_error", to_tier="weak") >= 1
    assert get("routeray_upstream_errors_total", tier="strong", reason="status_5xx") >= 1


def test_scorer_batching_arrives_through_user_config(env: Env) -> None:
    """The scorer's batching knobs reach the running replica through Serve's user_config (reconfigure), the
    path a `deployments:` user_config override of `serve deploy`/KubeRay takes to change them in place
    (reconfigure itself: tests/unit/deployments/test_app.py)."""
    from ray import serve

    handle = serve.get_deployment_handle("Scorer_random", app_name="routeray")
    knobs = handle.batching.remote().result()
    assert (knobs["max_batch_size"], knobs["batch_wait_timeout_s"]) == (32, 0.01)
    assert env.client.chat.completions.create(model="router-random-1", messages=MSG).model == "fake-weak"


def test_every_answer_carries_a_request_id_that_the_gateway_logs(env: Env) -> None:
    """The client's x-request-id comes back on the answer (one header), a made one when it sent none, and
    the gateway's log line about that request (a fallback, here) names it."""
    import glob
    import uuid

    env.strong.mode = "fail"
    rid = f"it-{uuid.uuid4().hex[:12]}"
    r = httpx.post(f"{env.url}/v1/chat/completions", headers={"x-request-id": rid},
                   json={"model": "router-random-0", "messages": MSG})
    assert r.status_code == 200 and r.headers.get_list("x-request-id") == [rid]
    made = httpx.post(f"{env.url}/v1/chat/completions", json={"model": "nope", "messages": MSG})
    assert made.status_code == 400 and len(made.headers.get_list("x-request-id")) == 1
    deadline = time.monotonic() + 30  # replicas' log files are flushed asynchronously
    while time.monotonic() < deadline:
        lines = [line for f in glob.glob("/tmp/ray/session_latest/logs/**/*", recursive=True)
                 if f.endswith((".log", ".err", ".out")) for line in _lines(f) if rid in line]
        if any("strong backend" in line for line in lines):
            return
        time.sleep(1)
    raise AssertionError(f"no gateway log line names request {rid}: {lines[:3]}")


def _lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.readlines()
    except OSError:
        return []
