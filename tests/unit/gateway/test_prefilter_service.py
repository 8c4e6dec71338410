"""The prefilter in the routing service: a prompt whose cheap estimate lies outside the band around the
threshold is routed on it and never reaches the scorer; the rest are scored as without it."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pydantic
import pytest

import routeray.gateway.service as service_module
from routeray.config import Config, ScorerConfig
from routeray.gateway.backends import OpenAIBackend
from routeray.gateway.protocol import ChatCompletionRequest
from routeray.gateway.service import RoutingService, Score
from routeray.metrics import GatewayMetrics
from routeray.routers.prefilter import Prefilter
from routeray.routers.prompt_features import structure_features

WORDS = "apple river stone cloud number seven garden light paper window music table".split()
SHORT, LONG = "apple river?", " ".join(WORDS * 8) + "?"


def _length_score(prompts: list[str]) -> np.ndarray:
    return 0.3 + 0.1 * structure_features(prompts)[:, 0]


@pytest.fixture(scope="module")
def prefilter() -> Prefilter:
    rng = np.random.default_rng(0)
    prompts = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 100)))) + "?" for _ in range(400)]
    return Prefilter.fit(_length_score(prompts), prompts, "fp", lam=0.01)


class Scorer:
    """Scores like the prefilter's target (the prompt's length); remembers what it scored."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def __call__(self, router: str, text: str) -> Score:
        self.texts.append(text)
        return Score(float(_length_score([text])[0]))


def _service(prefilter: Prefilter, monkeypatch: pytest.MonkeyPatch, overrides: dict | None = None,
             ) -> tuple[RoutingService, Scorer, GatewayMetrics]:
    monkeypatch.setattr(service_module, "load_prefilter", lambda router, artifact, band: prefilter)
    cfg = Config(routers=[ScorerConfig(router="random", overrides=overrides or {"prefilter": True})],
                 engine={"enabled": False}, strong={"name": "big", "base_url": "http://127.0.0.1:9/v1"},
                 weak={"name": "small", "base_url": "http://127.0.0.1:9/v1"})
    backends = {"strong": OpenAIBackend(cfg.strong, "strong", {}), "weak": OpenAIBackend(cfg.weak, "weak", {})}
    metrics, scorer = GatewayMetrics(), Scorer()
    return RoutingService(cfg, scorer, backends, metrics), scorer, metrics  # type: ignore[arg-type]


def _decide(service: RoutingService, prompt: str, model: str):  # type: ignore[no-untyped-def]
    req = ChatCompletionRequest.model_validate({"model": model, "messages": [{"role": "user", "content": prompt}]})
    return asyncio.run(service.decide(req, time.perf_counter()))


def _settled(metrics: GatewayMetrics, tier: str) -> float:
    return metrics.registry.get_sample_value("routeray_prefilter_settled_total",
                                             {"router": "random", "tier": tier}) or 0.0


def test_far_prompts_are_routed_on_the_estimate_and_near_ones_are_scored(prefilter, monkeypatch) -> None:
    service, scorer, metrics = _service(prefilter, monkeypatch)
    short, long_ = (float(_length_score([p])[0]) for p in (SHORT, LONG))
    threshold = (short + long_) / 2
    model = f"router-random-{threshold:.4f}"
    weak, strong = _decide(service, SHORT, model), _decide(service, LONG, model)
    assert (weak.tier, strong.tier) == ("weak", "strong") and scorer.texts == []
    assert weak.score == pytest.approx(short, abs=0.01) and _settled(metrics, "weak") == _settled(metrics, "strong") == 1
    on_it = float(prefilter.estimate([SHORT])[0])
    near = _decide(service, SHORT, f"router-random-{on_it:.4f}")  # the estimate sits on the threshold: scored
    assert scorer.texts == [SHORT] and near.score == pytest.approx(short) and _settled(metrics, "weak") == 1


def test_with_the_guard_on_only_weak_routes_are_settled(prefilter, monkeypatch) -> None:
    service, scorer, metrics = _service(prefilter, monkeypatch, {"prefilter": True, "guard": "spans"})
    threshold = float(_length_score([SHORT])[0] + _length_score([LONG])[0]) / 2
    assert _decide(service, SHORT, f"router-random-{threshold:.4f}").tier == "weak" and scorer.texts == []
    _decide(service, LONG, f"router-random-{threshold:.4f}")
    assert scorer.texts[:1] == [LONG] and _settled(metrics, "strong") == 0  # the guard needs the real score


def test_percentage_routing_is_scored_until_its_window_holds_a_threshold(prefilter, monkeypatch) -> None:
    service, scorer, _ = _service(prefilter, monkeypatch)
    _decide(service, SHORT, "router-random-30%")
    assert scorer.texts == [SHORT]  # no threshold yet: the seeded draw decides on the real score


def test_config_checks_the_prefilter_option() -> None:
    cfg = Config(routers=[ScorerConfig(router="mf", overrides={"prefilter": {"band": 2}, "seed": 1})],
                 engine={"enabled": False})
    assert cfg.router_prefilter(cfg.routers[0]) == 2.0
    assert "prefilter" not in cfg.router_overrides(cfg.routers[0])  # the scorer never sees it
    for bad in ("yes", {"band": -1}, {"width": 2}):
        with pytest.raises(pydantic.ValidationError, match="prefilter must be"):
            Config(routers=[ScorerConfig(router="mf", overrides={"prefilter": bad})], engine={"enabled": False})
    with pytest.raises(pydantic.ValidationError, match="pool routing needs it off"):
        Config(routers=[ScorerConfig(router="mf", overrides={"prefilter": True})], engine={"enabled": False},
               pool=[{"name": n, "base_url": "http://127.0.0.1:9/v1", "price_input_per_mtok": p,
                      "price_output_per_mtok": p} for n, p in (("a", 1.0), ("b", 2.0))])


def test_while_the_scorer_refuses_prompts_settled_routes_are_refused_too(prefilter, monkeypatch) -> None:
    """Past saturation the scorer's admission limit refuses what it cannot score in time; the routes the
    prefilter would settle must not pile up in its place, so they get the same 503 until the hold passes."""
    from routeray.gateway.overload import QueueFull

    service, scorer, metrics = _service(prefilter, monkeypatch)

    async def full(router: str, text: str) -> Score:
        raise QueueFull(router, 0.4, 0.25)

    threshold = float(_length_score([SHORT])[0] + _length_score([LONG])[0]) / 2
    model = f"router-random-{threshold:.4f}"
    on_it = float(prefilter.estimate([SHORT])[0])
    service.score_fn = full
    with pytest.raises(QueueFull):
        _decide(service, SHORT, f"router-random-{on_it:.4f}")  # needs the scorer, which refuses
    with pytest.raises(QueueFull, match="would wait 400 ms"):
        _decide(service, LONG, model)  # would be settled, but the replica is overloaded
    until, refused = service._refusing["random"]
    assert until - time.monotonic() <= service_module.PREFILTER_HOLD_S
    service._refusing["random"] = (time.monotonic() - 0.001, refused)  # the hold has passed
    assert _decide(service, LONG, model).tier == "strong" and _settled(metrics, "strong") == 1
