"""Cost accounting: spend from reported usage at per-tier prices, estimated from text when a backend
reports none, exported as metrics and as the /stats snapshot. Backends are loopback fakes (no Ray)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from routeray.config import BackendConfig
from routeray.gateway.spend import SpendMeter, estimate_tokens, usage_tokens
from routeray.metrics import GatewayMetrics
from routeray.sdk import Router
from tests.integration.fake_openai import FakeOpenAI

FAST = {"timeout_s": 3, "read_timeout_s": 1, "connect_timeout_s": 1, "max_retries": 0}


def _value(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    v = metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def test_meter_prices_tokens_per_tier_and_counts_savings() -> None:
    m = GatewayMetrics()
    meter = SpendMeter({"weak": BackendConfig(name="w", price_input_per_mtok=0.5, price_output_per_mtok=1.5),
                        "strong": BackendConfig(name="s", price_input_per_mtok=10, price_output_per_mtok=30)}, m)
    assert meter.record("strong", {"prompt": 1000, "completion": 2000}) == pytest.approx(0.07)
    assert meter.record("weak", {"prompt": 1000, "completion": 2000}) == pytest.approx(0.0035)
    assert _value(m, "routeray_spend_dollars_total", tier="strong") == pytest.approx(0.07)
    assert _value(m, "routeray_spend_dollars_total", tier="weak") == pytest.approx(0.0035)
    assert _value(m, "routeray_spend_all_strong_dollars_total") == pytest.approx(0.14)
    assert _value(m, "routeray_tokens_total", tier="weak", kind="completion") == 2000
    snap = meter.snapshot()
    assert snap["savings_usd"] == pytest.approx(0.14 - 0.0735)
    assert snap["prices_per_mtok_usd"]["strong"] == {"prompt": 10, "completion": 30}


def test_missing_usage_is_estimated_and_counted_apart() -> None:
    m = GatewayMetrics()
    meter = SpendMeter({"weak": BackendConfig(name="w"),
                        "strong": BackendConfig(name="s", price_input_per_mtok=1e6, price_output_per_mtok=1e6)}, m)
    assert usage_tokens({"prompt_tokens": 3}) is None and usage_tokens(None) is None
    assert meter.record_answer("strong", None, prompt_chars=40, completion_chars=8) == pytest.approx(12)
    assert _value(m, "routeray_tokens_estimated_total", tier="strong", kind="prompt") == 10
    assert _value(m, "routeray_tokens_total", tier="strong", kind="prompt") == 0
    assert estimate_tokens(0) == 0 and estimate_tokens(1) == 1


@pytest.fixture(scope="module")
def router() -> Iterator[Router]:
    strong, weak = FakeOpenAI("big").start(), FakeOpenAI("small").start()
    with Router(strong={"name": "big", "base_url": strong.base_url, "price_input_per_mtok": 2e6,
                        "price_output_per_mtok": 4e6, **FAST},
                weak={"name": "small", "base_url": weak.base_url, **FAST}, routers=["random"]) as r:
        yield r
    strong.stop()
    weak.stop()


def test_gateway_service_counts_spend_from_usage_and_streams(router: Router) -> None:
    router.chat.completions.create(model="router-random-0", messages=[{"role": "user", "content": "hi"}])
    m = router.metrics
    # The fake reports usage 5 prompt + 7 completion tokens: 5 * $2 + 7 * $4 at these prices.
    assert _value(m, "routeray_spend_dollars_total", tier="strong") == pytest.approx(38)
    # Its stream carries no usage: tokens are estimated from the text.
    list(router.chat.completions.create(model="weak", messages=[{"role": "user", "content": "x" * 400}],
                                        stream=True))
    assert _value(m, "routeray_tokens_estimated_total", tier="weak", kind="prompt") == 100
    assert _value(m, "routeray_tokens_estimated_total", tier="weak", kind="completion") > 0
    assert _value(m, "routeray_spend_dollars_total", tier="weak") == 0
    assert _value(m, "routeray_spend_all_strong_dollars_total") > 38 + 100 * 2
    assert {"input": 2e6, "output": 4e6} in [c.get("price_per_mtok_usd") for c in _cards(router)]


def _cards(router: Router) -> list[dict]:
    service = next(iter(router._async._services.values()))  # the service the calls above went through
    return [c.routeray for c in service.models().data if c.routeray]
