"""Pool routing on the router side: the decision rules, the per-model quality API of mf, strict model
resolution through aliases."""

from __future__ import annotations

import numpy as np
import pytest

from routeray.errors import RouterayError, UnknownModelError
from routeray.routers.mf import MFRouter, ModelResolver, mf_linear
from routeray.routers.pool import (
    choose,
    choose_by_cost,
    pool_score,
    resolve_pool,
    supports_pool,
    switch_points,
)
from tests.unit.routers.test_mf import MODELS, HashEmbedder, make_artifact

RNG = np.random.default_rng(7)
THRESHOLDS = [0.0, 0.1, 0.3721, 0.5, 0.5 + 1e-9, 0.6237, 0.9013, 1.0, 1.01]  # off the 0.005 grid of rounded q


def test_two_models_reduce_to_the_two_tier_rule():
    q = RNG.random((500, 2))
    costs = [5.0, 0.2]  # column 0 is the strong (pricier) model
    pair_score = (1 + q[:, 0] - q[:, 1]) / 2
    for t in THRESHOLDS:
        strong = pair_score >= t
        assert np.array_equal(choose(q, costs, t) == 0, strong), t
        assert np.array_equal(choose(q, costs, t, rule="cost") == 0, strong), t
        assert np.array_equal(pool_score(q, costs) >= t, strong), t


def _brute_force(q_row: np.ndarray, costs: list[float], t: float) -> int:
    order = sorted(range(len(costs)), key=lambda j: costs[j])
    for pos, m in enumerate(order):
        if all((1 + q_row[k] - q_row[m]) / 2 < t for k in order[pos + 1:]):
            return m
    raise AssertionError("the priciest model is always acceptable")


def test_threshold_rule_is_the_cheapest_model_within_reach_of_the_best():
    q = np.round(RNG.random((300, 5)), 2)  # rounded: ties on purpose
    costs = [3.0, 0.1, 1.0, 0.5, 9.0]
    for t in THRESHOLDS:
        got = choose(q, costs, t, rule="threshold")
        assert [_brute_force(row, costs, t) for row in q] == got.tolist()
        if t > 0.5:
            # for threshold > 0.5: the cheapest model whose quality is within 2t - 1 of the row's best
            delta = 2 * t - 1
            for row, m in zip(q, got, strict=True):
                ok = [j for j in range(5) if row.max() - row[j] < delta]
                assert m == min(ok, key=lambda j: costs[j])
    assert (choose(q, costs, 1.01, rule="threshold") == 1).all()  # above 1: always the cheapest
    assert (choose(q, costs, 0.0, rule="threshold") == 4).all()  # 0: always the priciest


@pytest.mark.parametrize("rule", ["cost", "threshold"])
def test_pool_score_decides_cheapest_or_not_and_is_monotone(rule):
    q = np.round(RNG.random((400, 4)), 2)
    costs = [0.4, 0.1, 2.0, 0.1 + 1e-3]
    s = pool_score(q, costs, rule=rule)
    for t in THRESHOLDS:
        assert np.array_equal(choose(q, costs, t, rule=rule) != 1, s >= t), t
    # raising the threshold never moves a prompt to a pricier model
    prev = None
    for t in np.linspace(0, 1.01, 60):
        cost = np.asarray(costs)[choose(q, costs, t, rule=rule)]
        if prev is not None:
            assert (cost <= prev + 1e-12).all()
        prev = cost
    assert switch_points(q, costs).shape == (400, 4)


def test_cost_rule_uses_price_magnitudes_and_breaks_ties_upwards():
    q = np.array([[0.8, 0.8, 0.5], [0.5, 0.9, 0.52]])
    costs = [1.0, 10.0, 0.0]
    assert choose_by_cost(q, costs, 0.0).tolist() == [1, 1]  # equal utility: the pricier, like score == threshold
    # scaled costs [0.1, 1, 0]: utilities at λ=0.3 are (0.77, 0.5, 0.5) and (0.47, 0.6, 0.52)
    assert choose_by_cost(q, costs, 0.3).tolist() == [0, 1]
    assert choose_by_cost(q, costs, 0.5).tolist() == [0, 2]  # (0.75, 0.3, 0.5) and (0.45, 0.4, 0.52)
    assert choose_by_cost(q, costs, 100.0).tolist() == [2, 2]
    # the threshold rule sees only the order: the 10x pricier model wins whenever it is within reach
    assert choose(q, costs, 0.6, rule="threshold").tolist() == [0, 1]
    with pytest.raises(RouterayError, match="unknown pool decision rule"):
        choose(q, costs, 0.5, rule="nope")
    with pytest.raises(ValueError, match="quality must be"):
        choose(q, [1.0, 2.0], 0.5)


def test_resolution_is_strict_and_names_the_known_models():
    resolver = ModelResolver(MODELS, {"big": "gpt-4-1106-preview", "ghost": "no-such-model"})
    assert resolve_pool(resolver, ["big", "Mixtral-8x7B-Instruct-v0.1", "llama-2-70b-chat"]) == [0, 1, 2]
    with pytest.raises(UnknownModelError, match=r"'unseen-model'.*no alias.*known: gpt-4-1106-preview"):
        resolve_pool(resolver, ["big", "unseen-model"], router="the mf router")
    with pytest.raises(UnknownModelError, match=r"alias 'ghost' -> 'no-such-model'.*known models"):
        resolve_pool(resolver, ["ghost"])
    with pytest.raises(RouterayError, match="empty"):
        resolve_pool(resolver, [])


def test_mf_model_quality_matches_its_formula_and_its_pair_score(tmp_path):
    router = MFRouter.load(make_artifact(tmp_path / "mf", route_on="correctness"), embedder=HashEmbedder())
    assert supports_pool(router) and router.known_models == MODELS
    prompts = ["What is 2+2?", "Prove Fermat's little theorem.", "Name a colour."]
    pool = ["llama-2-70b-chat", "gpt-4-1106-preview", "my-big-model", "mixtral-8x7b-chat"]
    q = router.model_quality(prompts, pool)
    assert q.shape == (3, 4) and ((q > 0) & (q < 1)).all()
    emb = HashEmbedder().embed(prompts)
    t = router.artifact.tensors
    u, c = mf_linear(t["proj_weight"], t["proj_bias"], t["model_emb"], t["classifier"])  # every trained model
    for j, i in enumerate([2, 0, 2, 1]):  # my-big-model is aliased to llama-2-70b-chat
        assert np.allclose(q[:, j], 1 / (1 + np.exp(-(emb @ u[:, i] + c[i] + t["model_bias"][i]))), atol=1e-6)
    # the pair router's score is the pool rule's pair score
    pair = router.model_quality(prompts, ["gpt-4-1106-preview", "mixtral-8x7b-chat"])
    assert np.allclose(router.score(prompts), (1 + pair[:, 0] - pair[:, 1]) / 2)
    assert np.allclose(router.quality_embeddings(emb, pool), q)
    assert router.model_quality([], pool).shape == (0, 4)
    with pytest.raises(UnknownModelError, match="claude-9"):
        router.model_quality(prompts, ["claude-9"])
    aliased = MFRouter.load(tmp_path / "mf", embedder=HashEmbedder(), model_aliases={"claude-9": "claude-1"})
    with pytest.raises(UnknownModelError, match="'claude-9' -> 'claude-1'"):
        aliased.model_quality(prompts, ["claude-9"])
