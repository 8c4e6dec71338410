"""The mf trainer on a small real slice of ../shared/data: it must beat the random router on held-out
prompts (split by prompt), averaged over the golden sources with enough prompts to tell."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routeray.artifacts import load_artifact
from routeray.train.cli import subsample_prompts
from routeray.train.common import evaluate_router_dir

FAST = {"grid": {}, "dim": 16, "steps": 200, "min_holdout_prompts": 40}
MIN_PROMPTS = 100  # below this the random interval is too wide to say anything


def test_mf_beats_random_on_heldout_prompts(real_slice, tmp_path):
    from routeray.train.mf import train

    train_data, heldout = real_slice
    artifact = train(train_data, tmp_path / "mf", seed=0, config=FAST, progress=False)
    assert (tmp_path / "mf" / "tensors.safetensors").is_file()
    report = artifact.report
    assert report["n_train_prompts"] > 0 and report["n_val_prompts"] > 0
    # selection ran on leave-one-source-out folds and one fold per family of sources held out at once: one
    # APGR per held-out source, per eval set of a family fold
    assert report["selection"] == "leave-one-source-out and leave-one-family-out"
    families = [f for f in report["folds"] if f.startswith("family:")]
    assert families and len(report["folds"]) - len(families) >= 2
    assert {k.split("/")[0] if k.startswith("family:") else k for k in report["validation"]["per_source"]} \
        == set(report["folds"])
    assert np.isfinite(report["validation"]["mean_apgr"]) and report["seconds"] > 0
    assert artifact.config["route_on"] == "correctness" and artifact.tensors["model_bias"].shape == (
        len(artifact.config["models"]),)
    json.dumps(report)  # the report is plain JSON

    per = evaluate_router_dir("mf", tmp_path / "mf", heldout.golden, n_seeds=100)["per_source"]
    big = {k: v for k, v in per.items() if v["n_prompts"] >= MIN_PROMPTS}
    assert {"routerbench", "mmlu_pro"} <= set(big), per
    for source, v in big.items():  # never significantly worse than random on any source
        assert v["apgr"] > v["random_apgr_ci"][0], (source, v)
    # beats random on average by a clear margin. On ~150 held-out prompts per source one training seed moves
    # the gap by up to 0.1 (RouterBench, seeds 0/1/2: -0.03, +0.04, +0.09; MMLU-Pro +0.07 each), so the
    # margin is asked of the mean over three seeds (measured: +0.054)
    gaps = [v["apgr"] - v["random_apgr"] for v in big.values()]
    for seed in (1, 2):
        train(train_data, tmp_path / f"mf{seed}", seed=seed, config=FAST, progress=False)
        per = evaluate_router_dir("mf", tmp_path / f"mf{seed}", heldout.golden, n_seeds=100)["per_source"]
        gaps += [per[k]["apgr"] - per[k]["random_apgr"] for k in big]
    assert np.mean(gaps) > 0.03, gaps


def test_mf_artifact_round_trip_and_determinism(real_slice, tmp_path):
    from routeray import load_router
    from routeray.train.mf import train

    train_data, heldout = real_slice
    small = subsample_prompts(train_data, 300, seed=3)
    a1 = train(small, tmp_path / "a", seed=5, config={**FAST, "steps": 50}, progress=False)
    a2 = train(small, tmp_path / "b", seed=5, config={**FAST, "steps": 50}, progress=False)
    for key in a1.tensors:
        np.testing.assert_array_equal(a1.tensors[key], a2.tensors[key])
    loaded = load_artifact(tmp_path / "a", expect_router="mf")
    assert loaded.embedder == a1.embedder and loaded.config["models"] == a1.config["models"]
    router = load_router("mf", tmp_path / "a")
    prompts = heldout.prompts[:5]
    s = router.score(prompts)
    assert s.dtype == np.float64 and s.shape == (5,) and ((s >= 0) & (s <= 1)).all()
    np.testing.assert_allclose(router.score(prompts[::-1])[::-1], s, rtol=1e-6)
    assert router.training_embeddings().shape == (len(small.prompts), 384)


def test_bad_optimizer_or_holdouts_fail_clearly(real_slice, tmp_path):
    from routeray.errors import RouterayError
    from routeray.train.mf import train

    small = subsample_prompts(real_slice[0], 100, seed=2)
    with pytest.raises(RouterayError, match="optimizer"):
        train(small, tmp_path / "o", config={**FAST, "optimizer": "sgd"}, progress=False)
    with pytest.raises(RouterayError, match="selection_holdouts"):
        train(small, tmp_path / "h", config={**FAST, "selection_holdouts": "everything"}, progress=False)
    with pytest.raises(RouterayError, match="selection_families: unknown family"):
        train(small, tmp_path / "f", config={**FAST, "selection_families": ["poetry"]}, progress=False)
    with pytest.raises(RouterayError, match="route_boost: unknown prompt feature"):
        train(small, tmp_path / "b", config={**FAST, "route_boost": {"log_vibes": 1.0}}, progress=False)
    with pytest.raises(RouterayError, match="route_boost: unknown prompt feature"):
        train(small, tmp_path / "g", config={**FAST, "grid": {"route_boost": [{}, {"log_vibes": 1.0}]}},
              progress=False)


def test_route_boost_moves_the_score_by_the_prompts_structure(real_slice, tmp_path):
    """``route_boost`` shifts the routing score on the logit scale by standardised structure features: served,
    the trainer's selection scorer and the formula agree, and more numbers in a prompt raise its score."""
    from routeray.artifacts import Artifact
    from routeray.routers.mf import MFRouter, ModelResolver
    from routeray.routers.prompt_features import STRUCTURE_FEATURES, ScoreBoost, structure_features
    from routeray.routers.registry import load_router
    from routeray.train.common import embed_texts
    from routeray.train.mf import selection_scorer, train

    train_data, heldout = real_slice
    small = subsample_prompts(train_data, 200, seed=4)
    # two terms, not in name order: the artifact's JSON config comes back with sorted keys, and each weight must
    # still meet its own feature's mean and spread (the default artifact once served them crossed)
    weights = {"log_words": 0.3, "log_numbers": 1.0}
    artifact = train(small, tmp_path / "mf", seed=0, progress=False,
                     config={**FAST, "steps": 30, "selection_families": [], "route_boost": weights})
    cfg, t = artifact.config, artifact.tensors
    assert cfg["route_boost"] == weights and t["boost_std"].shape == (2,)
    router = load_router("mf", tmp_path / "mf")
    prompts = list(dict.fromkeys(heldout.prompts))[:50]
    served = router.score(prompts)

    plain = MFRouter(Artifact(router="mf", config={k: v for k, v in cfg.items() if k != "route_boost"},
                              tensors=t, embedder=artifact.embedder), router.embedder)
    base = plain.score(prompts)
    train_f = structure_features(list(dict.fromkeys(small.prompts)))
    f = structure_features(prompts)
    shift = np.zeros(len(prompts))
    for name, w in weights.items():
        col = STRUCTURE_FEATURES.index(name)
        shift += w * (f[:, col] - train_f[:, col].mean()) / train_f[:, col].std()
    expected = 1 / (1 + np.exp(-(np.log(base / (1 - base)) + shift)))
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert not np.allclose(served, base)

    emb, _ = embed_texts(prompts, artifact.embedder, progress=False)
    rows = dict(zip(prompts, router.inputs(emb, prompts), strict=True))
    boost = ScoreBoost.from_artifact(cfg, t)
    assert boost is not None
    select = selection_scorer(t, lambda ps: np.stack([rows[p] for p in ps]),
                              ModelResolver(cfg["models"], cfg["model_aliases"]),
                              (cfg["strong_model"], cfg["weak_model"]), cfg["route_on"],
                              (boost, structure_features))
    np.testing.assert_allclose(select(prompts, cfg["strong_model"], cfg["weak_model"]), served, atol=1e-6)

    # the same base score, more numbers: a higher routing score; no weight, no boost
    few, many = "How many apples are left?", "If I have 12 apples, eat 3, buy 7 and give 5 away, how many are left?"
    moved = boost.apply(np.array([0.5, 0.5]), [few, many])
    assert 0 < moved[0] < moved[1] < 1
    assert ScoreBoost.fit({"log_numbers": 0.0}, structure_features([few, many])) is None


def test_mf_scores_the_same_through_training_serving_and_evaluation(real_slice, tmp_path):
    """One MF formula (routeray.routers.mf.mf_linear): the torch model training fits, the trainer's
    selection scorer, the served router and the evaluation's score path agree on a trained artifact."""
    import torch

    from routeray.evaluate.benchmarks import Benchmark
    from routeray.evaluate.cache import ScoreCache
    from routeray.evaluate.runner import EmbeddingPass, benchmark_scores
    from routeray.routers.mf import ModelResolver, mf_linear
    from routeray.routers.registry import load_router
    from routeray.train.common import embed_texts
    from routeray.train.mf import _MFNet, selection_scorer, train

    train_data, heldout = real_slice
    artifact = train(subsample_prompts(train_data, 200, seed=4), tmp_path / "mf", seed=0,
                     config={**FAST, "steps": 30}, progress=False)
    prompts = list(dict.fromkeys(heldout.prompts))[:50]
    cfg, t = artifact.config, artifact.tensors

    router = load_router("mf", tmp_path / "mf")
    served = router.score(prompts)

    emb, _ = embed_texts(prompts, artifact.embedder, progress=False)  # the trainer's own (cached) embeddings
    assert router.features is not None  # the default reads the prompt's structure too
    x = router.inputs(emb, prompts)  # [embedding, scaled structure features]
    rows = dict(zip(prompts, x, strict=True))
    select = selection_scorer(t, lambda ps: np.stack([rows[p] for p in ps]),
                              ModelResolver(cfg["models"], cfg["model_aliases"]),
                              (cfg["strong_model"], cfg["weak_model"]), cfg["route_on"])
    np.testing.assert_allclose(select(prompts, cfg["strong_model"], cfg["weak_model"]), served, atol=1e-6)

    # the forward pass training differentiates computes the same s(m, q) as the artifact's numpy tensors
    with torch.no_grad():
        trained = _MFNet.from_state(t).scores(torch.from_numpy(x.astype(np.float32))).numpy()
    u, c = mf_linear(t["proj_weight"].astype(np.float64), t["proj_bias"].astype(np.float64),
                     t["model_emb"].astype(np.float64), t["classifier"].astype(np.float64))
    np.testing.assert_allclose(trained, x @ u + c, atol=1e-4)

    # routeray eval: the router scores the evaluation's one embedding pass (shared with decontamination)
    cache = ScoreCache(tmp_path / "scores")
    bench = Benchmark("parity", cfg["strong_model"], cfg["weak_model"], prompts, np.ones(len(prompts)),
                      np.zeros(len(prompts)), "accuracy")
    for _ in range(2):  # computed, then read back from the cache
        evaluated = benchmark_scores(bench, {"mf": router}, cache, EmbeddingPass(prompts, progress=False),
                                     progress=False)["mf"]
        np.testing.assert_allclose(evaluated, served, atol=1e-6)


def test_source_effects_absorb_what_only_tells_sources_apart():
    """With ``source_effects`` a per-(source, model) bias explains a gap that differs only between sources,
    so the prompt's score stops encoding which source a prompt came from; the artifact keeps no such bias."""
    from routeray.data.schema import GoldenLabel, PreferenceData
    from routeray.routers.mf import mf_linear
    from routeray.train.mf import DEFAULTS, build_targets, fit

    rng = np.random.default_rng(0)
    golden, rows = [], {}
    for source, sign, p_right in (("a", 1.0, 0.9), ("b", -1.0, 0.1)):
        for i in range(200):
            prompt = f"{source} {i}"
            rows[prompt] = np.concatenate([[sign], rng.normal(size=7)]).astype(np.float32)
            golden += [GoldenLabel(prompt, "m0", float(rng.random() < p_right), source),
                       GoldenLabel(prompt, "m1", float(rng.random() < 0.5), source)]
    cfg = {**DEFAULTS, "dim": 4, "steps": 200}
    targets = build_targets(PreferenceData(golden=golden), ["m0", "m1"], cfg)
    assert targets.sources == ["a", "b"] and set(np.unique(targets.cell_source)) == {0, 1}
    emb = np.stack([rows[p] for p in targets.prompts])
    in_a = np.asarray([p.startswith("a") for p in targets.prompts])

    def source_gap(tensors):  # how far apart m0's prompt scores put the two sources
        u, c = mf_linear(tensors["proj_weight"], tensors["proj_bias"], tensors["model_emb"], tensors["classifier"])
        s = emb @ u + c
        return abs(s[in_a, 0].mean() - s[~in_a, 0].mean())

    plain = fit(cfg, targets, emb, seed=0)
    absorbed = fit({**cfg, "source_effects": True}, targets, emb, seed=0)
    assert set(absorbed) == set(plain)  # same artifact tensors: the source biases are not kept
    assert source_gap(absorbed) < 0.5 * source_gap(plain), (source_gap(absorbed), source_gap(plain))
