"""`routeray eval --benchmark pool`: reading pools with recorded or priced costs, the curve figures, and
the run end to end on RouterBench's mbpp test file with routers that know (or invert) the answer key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from routeray.cli import main
from routeray.errors import DataError, RouterayError
from routeray.evaluate.pool import evaluate_pool
from routeray.evaluate.pool_data import PoolBenchmark, load_pool
from routeray.evaluate.pool_metrics import Reference, area, cost_to_reach, frontier, quality_at
from routeray.routers.base import Router
from routeray.routers.mf import ModelResolver
from routeray.routers.pool import PoolScoring, read_prices
from routeray.routers.registry import register_router

ROUTERBENCH_MODELS = 11


def _mbpp(shared: Path) -> Path:
    return shared / "golden" / "routerbench" / "mbpp_test.csv"


@register_router
class AnswerKeyRouter(PoolScoring, Router):
    """Predicts each model's quality from the answer key (``sign=-1``: exactly backwards)."""

    name: ClassVar[str] = "test_answer_key"
    needs_artifact: ClassVar[bool] = False
    key: ClassVar[dict[str, dict[str, float]]] = {}
    sign: ClassVar[float] = 1.0

    def __init__(self, aliases: dict[str, str] | None = None):
        models = sorted({m for row in self.key.values() for m in row})
        self.resolver = ModelResolver(models, aliases)

    @classmethod
    def load(cls, artifact_dir: Path | None = None, **overrides: Any) -> Router:
        return cls(overrides.get("model_aliases"))

    def score(self, prompts):
        return np.full(len(prompts), 0.5)

    def _quality(self, prompts, columns):
        q = np.array([[self.key[p][self.resolver.known[c]] for c in columns] for p in prompts])
        return q if self.sign > 0 else 1 - q

    @property
    def fingerprint(self) -> str:
        return f"{self.name}-{self.sign}"


@pytest.fixture()
def answer_key(shared_data):
    bench = load_pool([_mbpp(shared_data)])
    AnswerKeyRouter.key = {p: dict(zip(bench.models, row.tolist(), strict=True))
                           for p, row in zip(bench.prompts, bench.quality, strict=True)}
    AnswerKeyRouter.sign = 1.0
    return bench


def test_routerbench_pool_has_eleven_models_and_recorded_costs(shared_data):
    bench = load_pool([_mbpp(shared_data)])
    assert len(bench.models) == ROUTERBENCH_MODELS and "gpt-4-1106-preview" in bench.models
    assert "mistralai/Mixtral-8x7B-Instruct-v0.1" in bench.models  # canonical names, as routers know them
    assert len(bench) + bench.n_incomplete == 128 and bench.cost_source.startswith("recorded")
    gpt4 = bench.models.index("gpt-4-1106-preview")
    assert 1000 * bench.cost[:, gpt4].mean() == pytest.approx(9.38, abs=0.01)  # the file's own column mean
    three = load_pool([_mbpp(shared_data)], models=["gpt-4-1106-preview", "mixtral-8x7b-chat", "claude-v1"])
    assert three.models == ["gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1", "claude-1"]
    assert np.allclose(three.quality[:, 0], bench.quality[:, gpt4])


def test_priced_pools_and_their_errors(shared_data, tmp_path):
    mmlu_pro = shared_data / "golden" / "mmlu_pro"
    with pytest.raises(RouterayError, match="records no cost per call.*--prices"):
        load_pool([mmlu_pro])
    prices = tmp_path / "prices.yaml"
    prices.write_text("gpt-4o-2024-05-13: [5, 15]\nMixtral-8x7B-Instruct-v0.1: {input: 0.6, output: 0.6}\n")
    bench = load_pool([mmlu_pro], prices=read_prices(prices))
    assert len(bench.models) == 2 and len(bench) == 5222
    per_call = bench.cost.mean(axis=0)
    assert per_call[bench.models.index("gpt-4o-2024-05-13")] > 10 * per_call[1 - bench.models.index("gpt-4o-2024-05-13")]
    with pytest.raises(RouterayError, match="no price for pool model"):
        load_pool([_mbpp(shared_data)], prices=read_prices(prices))
    with pytest.raises(DataError, match="no labels for model.*models in the data"):
        load_pool([_mbpp(shared_data)], models=["gpt-4-1106-preview", "gpt-5"])
    prices.write_text("gpt-4o: [5]\n")
    with pytest.raises(DataError, match="price of 'gpt-4o' must be"):
        read_prices(prices)


def test_curve_figures_on_a_hand_made_frontier():
    ref = Reference(cheapest_cost=1.0, cheapest_quality=0.5, best_cost=11.0, best_quality=0.9)
    # random mixing of the cheapest and the best model: the straight line, area 0.5
    line = frontier([(11.0, 0.9)], ref)
    assert area(line, ref) == pytest.approx(0.5, abs=1e-6)
    assert cost_to_reach(line, 0.95 * 0.9) == pytest.approx(1 + 10 * (0.855 - 0.5) / 0.4)
    # a router that reaches the best quality at 3 US$ and stays there
    front = frontier([(2.0, 0.7), (3.0, 0.9), (6.0, 0.85)], ref)
    assert quality_at(front, 0.5) == 0.5 and quality_at(front, 2.5) == pytest.approx(0.8)
    assert quality_at(front, 6.0) == 0.9  # a pricier, worse point is never taken
    assert area(front, ref) == pytest.approx((0.25 + 0.75 + 8) / 10, abs=1e-6)  # PGR 0→½→1, then 1
    assert cost_to_reach(frontier([(2.0, 0.6)], ref), 0.9) == float("inf")


def test_pool_eval_end_to_end(shared_data, tmp_path, answer_key):
    out = tmp_path / "out"
    rc = main(["eval", "--benchmark", "pool", "--data-dir", str(_mbpp(shared_data)), "--routers",
               "test_answer_key", "--output", str(out), "--name", "mbpp-test", "--no-cache"])
    assert rc == 0
    res = json.loads((out / "mbpp-test.json").read_text())
    assert (out / "mbpp-test.png").stat().st_size > 10_000
    assert res["mode"] == "pool" and res["n_prompts"] == len(answer_key) and len(res["models"]) == 11
    assert res["best_model"] in ("gpt-4-1106-preview", "gpt-3.5-turbo-1106")  # tied at 0.688 on mbpp
    r = res["routers"]["test_answer_key"]
    # knowing the answer key, the N-way router is the oracle and beats every pair and random mixing
    assert r["area"] == pytest.approx(res["oracle"]["area"])
    assert r["area"] > r["two_model"]["area"] > res["random_mix"]["area"]
    assert len(r["two_model"]["pair_areas"]) == 55
    assert r["cost_to_95pct"]["pct_of_best_cost"] < 25
    assert r["quality_at_spend"]["50"]["share_of_best"] >= 1.0
    costs = [p["usd_per_1k"] for p in r["curve"]]
    assert costs == sorted(costs) and all(abs(sum(p["shares"]) - 1) < 1e-9 for p in r["curve"])


def test_the_price_order_rule_cannot_use_the_answer_key(answer_key):
    # with 0/1 labels the threshold rule has one operating point besides the cheapest model: the cheapest
    # *right* model, which can be GPT-4 at 28x GPT-3.5's price; the cost rule skips such prompts first
    by_rule = {rule: evaluate_pool(answer_key, {"key": AnswerKeyRouter()}, rule=rule, progress=False)
               for rule in ("threshold", "cost")}
    assert by_rule["threshold"]["routers"]["key"]["area"] < 0.6 < by_rule["cost"]["routers"]["key"]["area"]
    assert by_rule["threshold"]["rule"] == "threshold"


def test_a_backwards_router_loses_to_random_mixing(shared_data, answer_key):
    AnswerKeyRouter.sign = -1.0
    res = evaluate_pool(answer_key, {"backwards": AnswerKeyRouter()}, progress=False)
    assert res["routers"]["backwards"]["area"] < res["random_mix"]["area"]


def test_pool_eval_refuses_routers_without_per_model_quality(shared_data, tmp_path, capsys):
    bench = PoolBenchmark("tiny", ["a", "b"], ["p1", "p2"], np.ones((2, 2)), np.ones((2, 2)), "given")
    from routeray.routers.random import RandomRouter

    with pytest.raises(RouterayError, match="does not predict each model's quality"):
        evaluate_pool(bench, {"rnd": RandomRouter(seed=0), "x": RandomRouter(seed=1)}, progress=False)
    assert main(["eval", "--benchmark", "mmlu", "--data-dir", "a", "b", "--routers", "mf", "--output", str(tmp_path)])
    assert "--benchmark mmlu reads one --data-dir, got 2" in capsys.readouterr().err
