"""Similarity-weighted ranking: the batched Bradley–Terry fit, the weights, locality, and the router."""

from __future__ import annotations

import numpy as np
import pytest

from routeray.artifacts import Artifact, save_artifact
from routeray.data.schema import Judgment
from routeray.data.tiers import ELO_CENTER, ELO_SCALE, fit_ratings
from routeray.errors import ArtifactError
from routeray.routers.sw_ranking import (
    SWRankingRouter,
    fit_bt_batched,
    similarity_weights,
    sw_scores,
    tier_pairs,
)
from tests.unit.routers.test_mf import HashEmbedder


def test_batched_fit_agrees_with_the_data_layers_bradley_terry():
    # tier 0 beats 1 in 7 of 10, 1 beats 2 in 6 of 10 (one a tie), 0 beats 2 in 9 of 10
    outcomes = {(0, 1): [1] * 7 + [0] * 3, (1, 2): [1] * 5 + [0.5] * 2 + [0] * 3, (0, 2): [1] * 9 + [0]}
    judgments = [Judgment(prompt=f"p{a}{b}{k}" * 4, model_a=f"m{a}", model_b=f"m{b}", p_a=float(p), source="t")
                 for (a, b), ps in outcomes.items() for k, p in enumerate(ps)]
    ratings = fit_ratings(judgments, l2=0.01)
    ii, jj = tier_pairs(3)
    wins = np.array([[sum(outcomes[(i, j)]) for i, j in zip(ii, jj, strict=True)]], dtype=float)
    totals = np.array([[len(outcomes[(i, j)]) for i, j in zip(ii, jj, strict=True)]], dtype=float)
    xi = fit_bt_batched(wins, totals, 3, prior=0.01)[0]
    for t in range(3):
        assert xi[t] * ELO_SCALE + ELO_CENTER == pytest.approx(ratings[f"m{t}"], abs=0.5)
    # rows are independent: the same statistics twice give the same answer twice
    both = fit_bt_batched(np.vstack([wins, wins[:, ::-1]]), np.vstack([totals, totals]), 3, prior=0.01)
    np.testing.assert_allclose(both[0], xi)


def test_similarity_weights_follow_the_paper():
    sims = np.array([[0.9, 0.45, 0.0]])
    w = similarity_weights(sims, gamma=10.0)
    # γ^(1+S) with S = cos / max cos: ratios 10^(1-0.5) and 10^(1-0)
    assert w[0, 0] / w[0, 1] == pytest.approx(10 ** 0.5)
    assert w[0, 0] / w[0, 2] == pytest.approx(10.0)
    assert w.mean() == pytest.approx(1.0)
    top = similarity_weights(sims, gamma=10.0, top_k=2)
    assert top[0, 2] == 0 and top[0, 0] > top[0, 1] > 0


def _clustered(rng, n, center, noise=0.3):
    x = center + noise * rng.normal(size=(n, center.size))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_scores_are_local_and_batch_invariant():
    rng = np.random.default_rng(0)
    dim = 16
    ca, cb = np.eye(dim)[0], np.eye(dim)[1]
    train = np.vstack([_clustered(rng, 50, ca), _clustered(rng, 50, cb)])
    ii, _ = tier_pairs(2)
    wins = np.zeros((100, ii.size))
    totals = np.ones((100, ii.size)) * 4
    wins[:50] = 4  # near A the strong tier (0) always wins
    wins[50:] = 1  # near B it mostly loses
    qa, qb = _clustered(rng, 5, ca, 0.1), _clustered(rng, 5, cb, 0.1)
    q = np.vstack([qa, qb])
    for gamma, top_k in [(10.0, 0), (1e4, 0), (10.0, 20)]:
        s = sw_scores(q, train, wins, totals, 2, 0, 1, gamma=gamma, top_k=top_k, prior=1.0)
        assert ((s > 0) & (s < 1)).all()
        assert s[:5].min() > s[5:].max(), (gamma, top_k, s)
    sharp = sw_scores(q, train, wins, totals, 2, 0, 1, gamma=1e4, prior=1.0)
    flat = sw_scores(q, train, wins, totals, 2, 0, 1, gamma=10.0, prior=1.0)
    assert sharp[:5].mean() - sharp[5:].mean() > flat[:5].mean() - flat[5:].mean()
    # chunking and batch composition do not change a prompt's score; reversed tiers mirror it
    np.testing.assert_allclose(sw_scores(q, train, wins, totals, 2, 0, 1, gamma=1e4, chunk=3), sharp)
    np.testing.assert_allclose(sw_scores(q[2:3], train, wins, totals, 2, 0, 1, gamma=1e4), sharp[2:3])
    np.testing.assert_allclose(sw_scores(q, train, wins, totals, 2, 1, 0, gamma=1e4), 1 - sharp)
    np.testing.assert_allclose(sw_scores(q, train, wins, totals, 2, 0, 0, gamma=1e4), 0.5)


@pytest.fixture()
def artifact_dir(tmp_path):
    rng = np.random.default_rng(1)
    emb = HashEmbedder(dim=8).embed([f"training prompt number {i}" for i in range(30)])
    n_tiers = 3
    p = len(tier_pairs(n_tiers)[0])
    totals = rng.integers(1, 5, size=(30, p)).astype(np.float32)
    wins = (totals * rng.random((30, p))).astype(np.float32)
    config = {"strong_model": "gpt-4-1106-preview", "weak_model": "mistralai/Mixtral-8x7B-Instruct-v0.1",
              "model_tiers": {"gpt-4-1106-preview": 0, "llama-2-70b-chat": 1,
                              "mistralai/Mixtral-8x7B-Instruct-v0.1": 2},
              "n_tiers": n_tiers, "gamma": 100.0, "top_k": 0, "prior": 1.0,
              "model_aliases": {"gpt-4o": "gpt-4-1106-preview"}}
    tensors = {"prompt_emb": emb.astype(np.float16), "wins": wins, "totals": totals}
    save_artifact(Artifact("sw_ranking", config, tensors, embedder=HashEmbedder(dim=8).spec), tmp_path / "sw")
    return tmp_path / "sw"


def test_router_loads_scores_and_maps_models(artifact_dir):
    router = SWRankingRouter.load(artifact_dir, embedder=HashEmbedder(dim=8))
    prompts = ["How do I sort a list in Python?", "Write a sonnet about the sea.", "What is 17 * 23?"]
    s = router.score(prompts)
    assert s.dtype == np.float64 and s.shape == (3,) and ((s >= 0) & (s <= 1)).all()
    assert np.ptp(s) > 0  # depends on the prompt
    assert router.score([]).shape == (0,)
    alias = SWRankingRouter.load(artifact_dir, embedder=HashEmbedder(dim=8), strong_model="gpt-4o")
    np.testing.assert_allclose(alias.score(prompts), s)
    unknown = SWRankingRouter.load(artifact_dir, embedder=HashEmbedder(dim=8), weak_model="never-seen-7b")
    np.testing.assert_allclose(unknown.score(prompts), s)
    mid = SWRankingRouter.load(artifact_dir, embedder=HashEmbedder(dim=8), weak_model="llama-2-70b-chat")
    assert not np.allclose(mid.score(prompts), s)
    assert router.training_embeddings().shape == (30, 8)
    assert router.fingerprint != mid.fingerprint


def test_router_refuses_mismatched_tensors(artifact_dir):
    import json

    cfg_path = artifact_dir / "config.json"
    meta = json.loads(cfg_path.read_text())
    meta["config"]["n_tiers"] = 4
    cfg_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="tiers"):
        SWRankingRouter.load(artifact_dir, embedder=HashEmbedder(dim=8))


def test_default_artifact_loads_by_name_and_stays_small():
    import routeray
    from routeray.artifacts import PACKAGED_DIR

    size = sum(p.stat().st_size for p in (PACKAGED_DIR / "sw_ranking").iterdir())
    assert size < 6_000_000
    router = routeray.load_router("sw_ranking")
    s = router.score(["What is the derivative of x^3 * sin(x)?", "hi there, how are you today?"])
    assert s.shape == (2,) and ((s >= 0) & (s <= 1)).all()
