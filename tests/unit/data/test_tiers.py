"""Model names, Bradley-Terry ratings, DP tiers and the tier map."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from routeray.data import Judgment, TierMap, assign_tiers, canonical_model, fit_ratings, fit_tier_map


@pytest.mark.parametrize("name", ["gpt4_1106_preview", "gpt-4-turbo", "gpt-4-1106-preview", " GPT-4-1106-Preview "])
def test_canonical_gpt4(name: str) -> None:
    assert canonical_model(name) == "gpt-4-1106-preview"


@pytest.mark.parametrize("name", ["Mixtral-8x7B-Instruct-v0.1", "mistralai/Mixtral-8x7B-Instruct-v0.1",
                                  "mistralai/mixtral-8x7b-chat", "mixtral-8x7b-instruct-v0.1"])
def test_canonical_mixtral(name: str) -> None:
    assert canonical_model(name) == "mistralai/Mixtral-8x7B-Instruct-v0.1"


def test_canonical_keeps_unknown_and_variants() -> None:
    assert canonical_model("  my-org/My  Model ") == "my-org/My Model"
    assert canonical_model("Mixtral-8x7B-Instruct-v0.1_concise") == "Mixtral-8x7B-Instruct-v0.1_concise"
    assert canonical_model("gpt-4o-2024-05-13") == "gpt-4o-2024-05-13"


def _simulate(true: dict[str, float], n: int, seed: int, soft: bool = False) -> list[Judgment]:
    rng = np.random.default_rng(seed)
    out = []
    for a, b in itertools.permutations(true, 2):
        p = 1.0 / (1.0 + 10 ** ((true[b] - true[a]) / 400))
        for _ in range(n):
            out.append(Judgment("prompt text long enough", a, b, float(p) if soft else float(rng.random() < p), "t"))
    return out


def test_fit_ratings_recovers_elo_differences() -> None:
    true = {"a": 1300.0, "b": 1100.0, "c": 1000.0, "d": 600.0}
    for soft in (False, True):
        r = fit_ratings(_simulate(true, 400, seed=1, soft=soft), l2=0.0)
        assert np.mean(list(r.values())) == pytest.approx(1000.0)
        for x, y in itertools.combinations(true, 2):
            assert r[x] - r[y] == pytest.approx(true[x] - true[y], abs=40 if not soft else 1.0)


def test_fit_ratings_ties_weights_and_separation() -> None:
    tie = [Judgment("p" * 20, "a", "b", 0.5, "t")] * 10
    r = fit_ratings(tie)
    assert r["a"] == pytest.approx(r["b"])
    # 3 wins for a at weight 1 against 1 win for b at weight 3: even
    even = [Judgment("p" * 20, "a", "b", 1.0, "t")] * 3 + [Judgment("p" * 20, "a", "b", 0.0, "t", weight=3.0)]
    r = fit_ratings(even)
    assert r["a"] == pytest.approx(r["b"], abs=1e-6)
    # a always beats b: the L2 penalty keeps ratings finite, a on top
    r = fit_ratings([Judgment("p" * 20, "a", "b", 1.0, "t")] * 50)
    assert math.isfinite(r["a"]) and r["a"] > r["b"] + 400
    assert fit_ratings([]) == {}


def test_assign_tiers_is_the_optimal_partition() -> None:
    ratings = {"g1": 1400, "g2": 1390, "m1": 1100, "m2": 1080, "m3": 1090, "w1": 700}
    assert assign_tiers(ratings, 3) == {"g1": 0, "g2": 0, "m1": 1, "m3": 1, "m2": 1, "w1": 2}
    rng = np.random.default_rng(0)
    vals = {f"m{i}": float(v) for i, v in enumerate(rng.normal(1000, 200, 9))}
    tiers = assign_tiers(vals, 3)

    def cost(assign: dict[str, int]) -> float:
        groups: dict[int, list[float]] = {}
        for m, t in assign.items():
            groups.setdefault(t, []).append(vals[m])
        return sum(float(np.var(g) * len(g)) for g in groups.values())

    order = sorted(vals, key=lambda m: -vals[m])
    best = min(cost({m: (0 if k < i else 1 if k < j else 2) for k, m in enumerate(order)})
               for i in range(1, 8) for j in range(i + 1, 9))
    assert cost(tiers) == pytest.approx(best)
    assert all(vals[a] >= vals[b] for a in vals for b in vals if tiers[a] < tiers[b])
    assert assign_tiers(ratings, 10) == {m: i for i, m in enumerate(sorted(ratings, key=lambda m: -ratings[m]))}
    with pytest.raises(ValueError):
        assign_tiers(ratings, 0)


def test_tier_map_unseen_models_never_keyerror() -> None:
    true = {"gpt-4-1106-preview": 1300.0, "claude-2.1": 1150.0,
            "mistralai/Mixtral-8x7B-Instruct-v0.1": 1100.0, "llama-13b": 700.0}
    tm = fit_tier_map(_simulate(true, 200, seed=2), n_tiers=3, aliases={"gpt-4o": "gpt4_1106_preview"})
    assert tm.tier_of("gpt4_1106_preview") == 0
    assert tm.tier_of("gpt-4o") == 0
    assert tm.tier_of("llama-13b") == 2
    assert tm.tier_of("never-seen") == 1  # middle tier by default
    assert TierMap.from_dict(tm.to_dict()).tier_of("never-seen") == 1
    tm.default_tier = 2
    assert tm.tier_of("never-seen") == 2
    assert tm.models_in(0) == ["gpt-4-1106-preview"]
