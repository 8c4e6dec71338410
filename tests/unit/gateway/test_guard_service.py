"""The rerouting guard in the routing service: the scorers score routers unguarded, and the service scores
a prompt's views only when the prompt's own score would send it strong (``routeray.routers.guard``)."""

from __future__ import annotations

import asyncio
import time

import pydantic
import pytest

from routeray.config import Config, ScorerConfig
from routeray.gateway.backends import OpenAIBackend
from routeray.gateway.protocol import ChatCompletionRequest
from routeray.gateway.service import RoutingService, Score
from routeray.metrics import GatewayMetrics
from routeray.routers.guard import GuardSpec, views

SPANS = {"mode": "spans", "min_words": 8, "margin": 0.01}
BODY = ("The train leaves the station at nine and reaches the city two hours later today. "
        "How many minutes does the whole trip take when it stops twice for ten minutes each?")
GADGET = "zzgadget zzgadget zzgadget"


class Scorer:
    """A scorer that remembers what it scored: ``score=<x>`` at the start scores x; else 0.9 for a text holding
    the gadget or a hard word, 0.3 for any other."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def __call__(self, router: str, text: str) -> Score:
        self.texts.append(text)
        if text.startswith("score="):
            return Score(float(text.split()[0].removeprefix("score=")))
        return Score(0.9 if ("zzgadget" in text or "zzhard" in text) else 0.3)


def _service(scorer: Scorer, guard: object = SPANS) -> tuple[RoutingService, GatewayMetrics]:
    cfg = Config(routers=[ScorerConfig(router="random", overrides={"guard": guard})], engine={"enabled": False},
                 strong={"name": "big", "base_url": "http://127.0.0.1:9/v1"},
                 weak={"name": "small", "base_url": "http://127.0.0.1:9/v1"})
    backends = {"strong": OpenAIBackend(cfg.strong, "strong", {}), "weak": OpenAIBackend(cfg.weak, "weak", {})}
    metrics = GatewayMetrics()
    return RoutingService(cfg, scorer, backends, metrics), metrics  # type: ignore[arg-type]


def _decide(service: RoutingService, prompt: str, model: str = "router-random-0.5"):  # type: ignore[no-untyped-def]
    req = ChatCompletionRequest.model_validate({"model": model, "messages": [{"role": "user", "content": prompt}]})
    return asyncio.run(service.decide(req, time.perf_counter()))


def _demotions(metrics: GatewayMetrics) -> float:
    return metrics.registry.get_sample_value("routeray_guard_demotions_total", {"router": "random"}) or 0.0


def test_a_gadget_that_lifts_the_prompt_is_demoted_by_its_views() -> None:
    scorer = Scorer()
    service, metrics = _service(scorer)
    decision = _decide(service, f"{GADGET} {BODY}")
    assert decision.tier == "weak"
    assert decision.score == pytest.approx(0.31)  # the lowest view (0.3) plus the margin, under the prompt's 0.9
    assert scorer.texts == views(f"{GADGET} {BODY}", GuardSpec.parse(SPANS))  # the prompt, then its views
    assert len(scorer.texts) > 1 and _demotions(metrics) == 1


def test_views_are_scored_only_when_the_prompt_would_go_strong() -> None:
    scorer = Scorer()
    service, metrics = _service(scorer)
    decision = _decide(service, BODY)  # 0.3: weak whatever its views score
    assert decision.tier == "weak" and decision.score == pytest.approx(0.3)
    assert scorer.texts == [BODY] and _demotions(metrics) == 0


def test_a_prompt_whose_views_agree_stays_strong() -> None:
    hard = BODY.replace("train", "zzhard train").replace("minutes", "zzhard minutes")  # every span holds one
    scorer = Scorer()
    service, metrics = _service(scorer)
    decision = _decide(service, hard)
    assert decision.tier == "strong" and decision.score == pytest.approx(0.9)
    assert len(scorer.texts) > 1 and _demotions(metrics) == 0


def test_without_a_guard_one_score_decides() -> None:
    scorer = Scorer()
    service, _ = _service(scorer, guard="off")
    assert _decide(service, f"{GADGET} {BODY}").tier == "strong"
    assert scorer.texts == [f"{GADGET} {BODY}"]


def test_percentage_routing_demotes_too() -> None:
    scorer = Scorer()
    service, metrics = _service(scorer)
    for i in range(200):  # fill the window past its minimum: scores spread over [0, 1), views of none
        _decide(service, f"score={(i * 37 % 200) / 200:.3f} short prompt", "router-random-30%")
    decision = _decide(service, f"{GADGET} {BODY}", "router-random-30%")
    assert decision.threshold == pytest.approx(0.7, abs=0.02)  # the window's 70th percentile
    assert decision.tier == "weak" and decision.score == pytest.approx(0.31) and _demotions(metrics) == 1


def test_the_playground_shows_the_guarded_score() -> None:
    service, _ = _service(Scorer())
    out = asyncio.run(service.explain(f"{GADGET} {BODY}", "router-random-0.5"))
    row = out["scores"]["random"]
    assert row["unguarded_score"] == 0.9 and row["score"] == pytest.approx(0.31)
    assert row["guard"].startswith("spans(") and out["tier"] == "weak"


def test_the_config_keeps_the_guard_out_of_the_scorers_and_checks_it() -> None:
    cfg = Config(routers=[ScorerConfig(router="random", overrides={"guard": "heads", "seed": 3})])
    assert "guard" not in cfg.router_overrides(cfg.routers[0]) and cfg.router_overrides(cfg.routers[0])["seed"] == 3
    assert cfg.router_guard(cfg.routers[0]) == GuardSpec()
    assert Config(routers=[ScorerConfig(router="random", overrides={"guard": "off"})]).router_guard(
        ScorerConfig(router="random", overrides={"guard": "off"})) is None
    with pytest.raises(pydantic.ValidationError, match="routers: random: unknown guard mode 'sideways'"):
        Config(routers=[ScorerConfig(router="random", overrides={"guard": "sideways"})])
    pool = [{"name": m, "base_url": "http://127.0.0.1:9/v1", "price_input_per_mtok": p, "price_output_per_mtok": p}
            for m, p in (("a", 1.0), ("b", 2.0))]
    with pytest.raises(pydantic.ValidationError, match="two-tier scores only"):
        Config(routers=[ScorerConfig(router="random", overrides={"guard": "heads"})], pool=pool)
