"""A pool of priced models in the gateway core: configuration checks at start-up, decisions, percentage
routing, fallbacks to the next cheaper model, per-model metrics and /v1/models — through the SDK (the
same RoutingService as the gateway) against loopback OpenAI servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from routeray.config import Config, PoolModelConfig
from routeray.errors import RouterayError, UnknownModelError
from routeray.gateway.routing import PoolDecider, ScoreWindow
from routeray.gateway.scorers import check_models
from routeray.routers.pool import choose
from routeray.sdk import Router
from tests.integration.fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parents[3]
FAST = {"timeout_s": 3, "read_timeout_s": 1, "connect_timeout_s": 1, "max_retries": 0}
# the default mf artifact knows these (RouterBench's columns): cheap, middle, dear
TRAINED = ["mistralai/mistral-7b-chat", "zero-one-ai/Yi-34B-Chat", "gpt-4-1106-preview"]
PRICES = [(0.2, 0.2), (0.8, 0.8), (10.0, 30.0)]


def pool_args(servers: list[FakeOpenAI] | None = None, **extra: object) -> list[dict]:
    urls = [s.base_url for s in servers] if servers else ["http://127.0.0.1:9/v1"] * 3
    return [{"name": f"m{i}", "base_url": url, "score_as": trained, "price_input_per_mtok": p_in,
             "price_output_per_mtok": p_out, **FAST, **extra}
            for i, (url, trained, (p_in, p_out)) in enumerate(zip(urls, TRAINED, PRICES, strict=True))]


@pytest.mark.parametrize(("pool", "match"), [
    ([{"name": "a", "price_output_per_mtok": 1}, {"name": "b", "price_input_per_mtok": 1, "price_output_per_mtok": 1}],
     r"pool\.0\.price_input_per_mtok\n  Field required"),
    ([{"name": "a", "price_input_per_mtok": 1, "price_output_per_mtok": 1}] * 2, r"model name 'a' listed twice"),
    ([{"name": "a", "price_input_per_mtok": 1, "price_output_per_mtok": 1}], "two models or more"),
    ([{"name": "weak", "price_input_per_mtok": 1, "price_output_per_mtok": 1},
      {"name": "b", "price_input_per_mtok": 1, "price_output_per_mtok": 1}], r"pool\.0\.name 'weak' clashes"),
    ([{"name": "a", "price_input_per_mtok": -1, "price_output_per_mtok": 1}] * 2, "greater than or equal to 0"),
])
def test_bad_pools_are_refused_naming_the_field(pool: list[dict], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        Config.model_validate({"pool": pool})


def test_a_pool_replaces_the_tiers_and_is_ordered_by_price() -> None:
    with pytest.raises(ValidationError, match="leave `strong` and `weak` out"):
        Config.model_validate({"pool": pool_args(), "strong": {"name": "s"}})
    cfg = Config.model_validate({"pool": list(reversed(pool_args())), "routers": [{"router": "mf"}]})
    assert list(cfg.backend_table()) == ["m0", "m1", "m2"]  # cheapest first, whatever the listed order
    assert cfg.pool_models() == TRAINED and cfg.router_overrides(cfg.routers[0]) == {}
    assert Config.model_validate(cfg.model_dump()) == cfg  # what Serve hands the ingress validates again
    two = Config()
    assert list(two.backend_table()) == ["weak", "strong"] and two.pool_models() is None
    assert two.router_overrides(two.routers[0]) == {"strong_model": "gpt-4-1106-preview",
                                                    "weak_model": "mistralai/Mixtral-8x7B-Instruct-v0.1"}


def test_start_up_names_unknown_models_and_routers_that_cannot_score_a_pool() -> None:
    check_models(Config.model_validate({"pool": pool_args(), "routers": [{"router": "mf"}]}))
    unknown = pool_args()
    unknown[1]["score_as"] = None  # "m1" is no model mf was trained on
    with pytest.raises(UnknownModelError, match=r"'m1' and it has no alias.*known: .*gpt-4-1106-preview"):
        check_models(Config.model_validate({"pool": unknown, "routers": [{"router": "mf"}]}))
    with pytest.raises(UnknownModelError, match=r"alias 'm1' -> 'gpt-9'"):
        check_models(Config.model_validate({"pool": unknown, "routers": [
            {"router": "mf", "overrides": {"model_aliases": {"m1": "gpt-9"}}}]}))
    for router in ("random", "sw_ranking"):
        with pytest.raises(RouterayError, match=f"router '{router}' cannot route a model pool"):
            check_models(Config.model_validate({"pool": pool_args(), "routers": [{"router": router}]}))
    # the two-tier path: the tiers' names reach the routers, and an unknown one is refused
    check_models(Config.model_validate({"routers": [{"router": "mf"}, {"router": "sw_ranking"}]}))
    with pytest.raises(UnknownModelError, match="'Qwen2.5-7B-Instruct' and it has no alias"):
        check_models(Config.model_validate({"routers": [{"router": "mf"}], "weak": {"name": "Qwen2.5-7B-Instruct"}}))


def test_the_serve_config_pool_example_is_valid() -> None:
    text = (ROOT / "deploy" / "serve_config.yaml").read_text()
    block = text[text.index("      # pool:\n"):].split("\n")
    lines = []
    for line in block:
        if not line.startswith("      #"):
            break
        lines.append(line.replace("      # ", "", 1))
    pool = yaml.safe_load("\n".join(lines))["pool"]
    assert len(pool) == 3
    cfg = Config.model_validate({"pool": pool, "routers": [{"router": "mf"}]})
    check_models(cfg)
    assert [m.name for m in cfg.backend_table().values()] == ["Qwen2.5-7B-Instruct", "gpt-4o-mini", "gpt-4o"]


def test_pool_decisions_follow_the_rule_and_percentages_count_past_the_cheapest() -> None:
    decider = PoolDecider(["a", "b", "c"], [0.1, 0.5, 3.0])
    rng = np.random.default_rng(0)
    rows = rng.random((300, 3))
    for t in (0.0, 0.3, 0.5, 0.7, 1.0):
        picked = [decider.pick(row, t) for row in rows]
        assert picked == [["a", "b", "c"][i] for i in choose(rows, [0.1, 0.5, 3.0], t)]
    window = ScoreWindow(500, 20)
    for row in rows:
        window.add(decider.score(row))
    up = [decider.by_percent(row, window, 30.0)[0] != "a" for row in rows]
    assert np.mean(up) == pytest.approx(0.30, abs=0.05)
    with pytest.raises(ValueError, match="expected 3 qualities"):
        decider.pick([0.5, 0.5], 0.5)


@pytest.fixture(scope="module")
def servers() -> Iterator[list[FakeOpenAI]]:
    fakes = [FakeOpenAI(f"m{i}").start() for i in range(3)]
    yield fakes
    for f in fakes:
        f.stop()


@pytest.fixture
def client(servers: list[FakeOpenAI]) -> Iterator[Router]:
    for s in servers:
        s.mode = "ok"
    with Router(pool=pool_args(servers), routers=["mf"]) as c:
        yield c
    for s in servers:
        s.mode = "ok"


PROMPTS = ["What is 2+2?", "Prove that there are infinitely many primes.", "Write a haiku about rain.",
           "Which gas do plants absorb? A) oxygen B) carbon dioxide", "Translate 'good morning' into French."]


def test_sdk_routes_a_pool_like_the_router_predicts(client: Router) -> None:
    mf = client._async._scorers.router("mf")  # the SDK's own loaded router: MiniLM loads once
    quality = mf.model_quality(PROMPTS, TRAINED)  # type: ignore[attr-defined]
    decider = PoolDecider(["m0", "m1", "m2"], [Config.model_validate({"pool": pool_args()}).call_price(
        PoolModelConfig.model_validate(m)) for m in pool_args()])
    for t in (0.0, 0.45, 0.55, 1.0):
        for prompt, row in zip(PROMPTS, quality, strict=True):
            out = client.chat.completions.create(model=f"router-mf-{t}", messages=[{"role": "user", "content": prompt}])
            assert out.model == decider.pick(row, t)
    ids = client.models()
    assert {"m0", "m1", "m2", "router-mf-0.5"} <= set(ids) and "strong" not in ids
    shares = {m: client.metrics.registry.get_sample_value("routeray_routing_decisions_total",
                                                          {"router": "mf", "tier": m}) or 0 for m in ("m0", "m1", "m2")}
    assert sum(shares.values()) == 4 * len(PROMPTS)


def test_a_failed_model_falls_back_to_the_next_cheaper_one(client: Router, servers: list[FakeOpenAI]) -> None:
    servers[2].mode = "fail"
    out = client.chat.completions.create(model="m2", messages=[{"role": "user", "content": "hi there"}])
    assert out.model == "m1"
    servers[1].mode = "fail"
    chunks = list(client.chat.completions.create(model="m2", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True))
    assert chunks[0].model == "m0"
    reg = client.metrics.registry
    assert reg.get_sample_value("routeray_fallbacks_total", {"reason": "m2_error", "to_tier": "m1"}) == 2
    assert reg.get_sample_value("routeray_fallbacks_total", {"reason": "m1_error", "to_tier": "m0"}) == 1
    assert reg.get_sample_value("routeray_upstream_errors_total", {"tier": "m2", "reason": "status_5xx"}) == 2
    assert reg.get_sample_value("routeray_spend_dollars_total", {"tier": "m0"}) > 0
