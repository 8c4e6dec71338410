"""The bert router: labels, training pipeline, artifact round trip, determinism, clear errors, and (slow)
a real MiniLM fine-tune that must beat the random router on held-out prompts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import routeray
from routeray.data.schema import GoldenLabel, Judgment, PreferenceData
from routeray.errors import ArtifactError, RouterayError
from routeray.evaluate.metrics import apgr, random_baseline
from routeray.routers.bert import score_from_probs, three_class_from_correctness
from routeray.train import neural
from tests.unit.routers.test_slices import STRONG, WEAK, mmlu_pro_slice

PROMPTS = ["What is the derivative of x squared times sine x?", "Write a haiku about autumn leaves please.",
           "Explain the causes of the French revolution.", "short prompt but long enough"]


@pytest.fixture(scope="module")
def tiny_bert_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, randomly initialised BERT with MiniLM's tokenizer: the real pipeline in seconds."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from routeray.encoders.local import minilm_path

    out = tmp_path_factory.mktemp("tiny_bert")
    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    BertModel(cfg).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def tiny_slice(shared_data: Path) -> PreferenceData:
    return mmlu_pro_slice(shared_data, 60, 0)[0]


@pytest.fixture(scope="module")
def tiny_artifact(tiny_bert_base: Path, tiny_slice: PreferenceData, tmp_path_factory: pytest.TempPathFactory
                  ) -> Path:
    from routeray.train.bert import train

    out = tmp_path_factory.mktemp("bert_artifact")
    train(tiny_slice, out, seed=0, progress=False,
          config={"base_model": str(tiny_bert_base), "strong_model": STRONG, "epochs": 1, "max_length": 64,
                  "batch_size": 8, "val_fraction": 0.2})
    return out


def test_targets_follow_the_judgment() -> None:
    assert neural.target_from_p(1.0).tolist() == [1, 0, 0]
    assert neural.target_from_p(0.5).tolist() == [0, 1, 0]
    assert neural.target_from_p(0.0).tolist() == [0, 0, 1]
    assert np.allclose(neural.target_from_p(0.75), [0.5, 0.5, 0])
    probs = np.array([[0.2, 0.6, 0.2], [1, 0, 0], [0, 0, 1]])
    assert np.allclose(score_from_probs(probs, 0.5), [0.5, 1, 0])
    assert np.allclose(score_from_probs(probs, 0.0), [0.2, 1, 0])


def test_examples_orient_judgments_to_the_strong_side() -> None:
    prompt_a, prompt_b = "a question about chemistry", "a question about poetry!"
    data = PreferenceData(
        judgments=[Judgment(prompt_a, WEAK, STRONG, 0.0, "alpaca_eval"),  # strong (model B) won
                   Judgment(prompt_a, STRONG, "other-model", 1.0, "alpaca_eval")],  # not our pair: ignored
        golden=[GoldenLabel(prompt_b, STRONG, 0.0, "mmlu_pro/x"), GoldenLabel(prompt_b, WEAK, 1.0, "mmlu_pro/x")])
    pair = neural.PairSpec(STRONG, WEAK, [STRONG], [WEAK])
    ex = neural.build_examples(data, pair, {"per_source_cap": None, "source_weights": {"mmlu_pro": 2.0}}, 0)
    got = dict(zip(ex.prompts, ex.targets.tolist(), strict=True))
    assert got == {prompt_a: [1, 0, 0], prompt_b: [0, 0, 1]}
    assert dict(zip(ex.prompts, ex.weights.tolist(), strict=True)) == {prompt_a: 1.0, prompt_b: 2.0}
    assert ex.sources == ["alpaca_eval", "mmlu_pro"]


def test_source_cap_limits_each_family(tiny_slice: PreferenceData) -> None:
    pair = neural.PairSpec(STRONG, WEAK, [STRONG], [WEAK])
    ex = neural.build_examples(tiny_slice, pair, {"per_source_cap": 25}, 0)
    assert len(ex) == 25 and set(ex.sources) == {"mmlu_pro"}


def test_unseen_model_is_a_clear_error_or_mapped(tiny_slice: PreferenceData) -> None:
    cfg = neural.merge_config({"strong_model": STRONG, "weak_model": "never-seen-model", "n_tiers": 2,
                               "use_tiers": True, "model_aliases": {}, "strong_tier": None,
                               "weak_tier": None}, None)
    with pytest.raises(RouterayError, match="never-seen-model") as err:
        neural.resolve_pair(tiny_slice, cfg)
    assert not isinstance(err.value, KeyError)
    pair = neural.resolve_pair(tiny_slice, {**cfg, "model_aliases": {"never-seen-model": WEAK}})
    assert pair.weak_models == [WEAK] and pair.strong_models == [STRONG]
    pair = neural.resolve_pair(tiny_slice, {**cfg, "weak_tier": 1})
    assert pair.weak_models == [WEAK]


def test_unknown_or_mistyped_hyper_parameter_is_refused() -> None:
    from routeray.train.bert import DEFAULTS

    with pytest.raises(RouterayError, match="unknown hyper-parameter 'epoch'"):
        neural.merge_config(DEFAULTS, {"epoch": 3})
    with pytest.raises(RouterayError, match="expected int"):
        neural.merge_config(DEFAULTS, {"epochs": "two"})
    cfg = neural.merge_config(DEFAULTS, {"epochs": "3", "lr": "1e-4", "source_weights": '{"alpaca_eval": 0.5}'})
    assert cfg["epochs"] == 3 and cfg["lr"] == 1e-4 and cfg["source_weights"] == {"alpaca_eval": 0.5}


def test_artifact_holds_model_folder_and_report(tiny_artifact: Path) -> None:
    meta = json.loads((tiny_artifact / "config.json").read_text())
    assert meta["router"] == "bert"
    assert (tiny_artifact / "model" / "config.json").is_file()
    assert list((tiny_artifact / "model").glob("*.safetensors"))
    assert (tiny_artifact / "model" / "tokenizer_config.json").is_file()
    report = meta["report"]
    assert report["n_train"] + report["n_val"] == 60
    val = report["validation"]
    assert 0.0 <= val["apgr"] <= 1.0 or val["apgr"] is None
    assert "random_apgr" in val and len(val["random_ci"]) == 2
    assert report["seconds"] > 0
    assert meta["config"]["strong_model"] == STRONG and meta["config"]["weak_model"] == WEAK


def test_round_trip_scores_in_range_and_deterministic(tiny_artifact: Path) -> None:
    router = routeray.load_router("bert", str(tiny_artifact), device="cpu", batch_size=2)
    scores = router.score(PROMPTS)
    assert scores.shape == (len(PROMPTS),) and scores.dtype == np.float64
    assert ((scores >= 0) & (scores <= 1)).all()
    assert np.array_equal(router.score(PROMPTS), scores)
    again = routeray.load_router("bert", str(tiny_artifact), device="cpu", batch_size=3)
    assert np.allclose(again.score(PROMPTS[::-1])[::-1], scores, atol=1e-5)
    assert router.score([]).shape == (0,)
    probs = router.class_probs(PROMPTS)
    assert np.allclose(probs.sum(1), 1.0)
    emb = router.training_embeddings()
    n_train = json.loads((tiny_artifact / "config.json").read_text())["report"]["n_train"]
    assert emb.shape == (n_train, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-2)


def test_load_by_name_finds_user_artifacts(tiny_artifact: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(tiny_artifact, tmp_path / "bert")
    monkeypatch.setenv("ROUTERAY_ARTIFACTS_DIR", str(tmp_path))
    assert routeray.load_router("bert").score(PROMPTS[:1]).shape == (1,)


def test_missing_model_folder_is_a_clear_error(tiny_artifact: Path, tmp_path: Path) -> None:
    broken = tmp_path / "bert"
    shutil.copytree(tiny_artifact, broken)
    shutil.rmtree(broken / "model")
    with pytest.raises(ArtifactError, match="model folder"):
        routeray.load_router("bert", str(broken))


def test_swapped_weights_are_refused(tiny_artifact: Path, tmp_path: Path) -> None:
    broken = tmp_path / "bert"
    shutil.copytree(tiny_artifact, broken)
    weights = next((broken / "model").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match"):
        routeray.load_router("bert", str(broken))


def test_other_routers_artifact_is_refused(tiny_artifact: Path) -> None:
    with pytest.raises(ArtifactError, match="not 'causal_llm'"):
        routeray.load_router("causal_llm", str(tiny_artifact))


@pytest.mark.slow
def test_minilm_bert_beats_random_on_heldout_prompts(shared_data: Path, tmp_path: Path) -> None:
    """Real MiniLM, real MMLU-Pro labels: train on 300 prompts, score 200 others."""
    from routeray.train.bert import train

    data, held, sq, wq = mmlu_pro_slice(shared_data, 300, 200)
    train(data, tmp_path, seed=0, progress=False,
          config={"strong_model": STRONG, "max_length": 128, "epochs": 2, "lr": 1e-4, "evals_per_epoch": 1})
    scores = routeray.load_router("bert", str(tmp_path)).score(held)
    base = random_baseline(sq, wq, n_seeds=100, n_points=None)
    got = apgr(scores, sq, wq)
    assert got > base.apgr_ci[1], f"held-out APGR {got:.3f} is inside random's interval {base.apgr_ci}"


def test_another_pair_is_scored_with_a_warning_not_an_error(tiny_artifact: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        router = routeray.load_router("bert", str(tiny_artifact), strong_model="never-seen-model",
                                      weak_model=WEAK)
    assert router.score(PROMPTS[:1]).shape == (1,)
    assert "never-seen-model" in caplog.text


def test_per_model_examples_keep_each_models_labels_and_judgments() -> None:
    q1, q2 = "a question about chemistry", "a question about poetry!"
    data = PreferenceData(
        judgments=[Judgment(q2, STRONG, "other-model", 0.25, "alpaca_eval", weight=2.0)],
        golden=[GoldenLabel(q1, STRONG, 1.0, "mmlu_pro/x"), GoldenLabel(q1, WEAK, 0.0, "mmlu_pro/x"),
                GoldenLabel(q1, WEAK, 1.0, "mmlu_pro/x")])  # two labels for one cell: their mean
    models = neural.head_models(data)
    assert models == sorted([STRONG, WEAK, "other-model"])
    ex = neural.build_model_examples(data, models, {"per_source_cap": None, "judgment_weight": 0.5}, 0)
    row = {p: i for i, p in enumerate(ex.prompts)}
    col = {m: i for i, m in enumerate(models)}
    assert ex.targets[row[q1], col[STRONG]] == 1.0 and ex.targets[row[q1], col[WEAK]] == 0.5
    assert ex.mask[row[q1]].tolist() == [1.0 if m in (STRONG, WEAK) else 0.0 for m in models]
    assert ex.mask[row[q2]].sum() == 0  # judgments only: no golden cell
    assert ex.judgments.tolist() == [[row[q2], col[STRONG], col["other-model"], 0.25, 1.0]]  # 0.5 x weight 2
    none = neural.build_model_examples(data, models, {"per_source_cap": None, "judgment_weight": 0.0}, 0)
    assert none.prompts == [q1] and len(none.judgments) == 0


def test_correctness_gives_three_classes_and_the_gap_score() -> None:
    ps, pw = np.array([0.9, 0.5, 0.1]), np.array([0.2, 0.5, 0.8])
    probs = three_class_from_correctness(ps, pw)
    assert np.allclose(probs.sum(1), 1.0) and (probs >= 0).all()
    assert np.allclose(score_from_probs(probs, 0.5), (1 + ps - pw) / 2)


def test_per_model_loss_prefers_the_right_answer() -> None:
    import torch

    data = PreferenceData(
        judgments=[Judgment("judged prompt here", STRONG, WEAK, 1.0, "alpaca_eval")],
        golden=[GoldenLabel("golden prompt here", STRONG, 1.0, "x"), GoldenLabel("golden prompt here", WEAK, 0.0, "x")])
    models = neural.head_models(data)
    ex = neural.build_model_examples(data, models, {"per_source_cap": None}, 0)
    loss = neural.per_model_loss(ex, judgment_weight=1.0)
    s, w = models.index(STRONG), models.index(WEAK)
    right = torch.zeros(2, 2)
    right[:, s], right[:, w] = 4.0, -4.0
    idx = np.arange(len(ex))
    assert float(loss(right, idx)) < 0.1 < float(loss(-right, idx))


@pytest.fixture(scope="module")
def three_class_artifact(tiny_bert_base: Path, tiny_slice: PreferenceData,
                         tmp_path_factory: pytest.TempPathFactory) -> Path:
    from routeray.train.bert import train

    out = tmp_path_factory.mktemp("bert_three_class")
    train(tiny_slice, out, seed=0, progress=False,
          config={"base_model": str(tiny_bert_base), "strong_model": STRONG, "epochs": 1, "max_length": 64,
                  "batch_size": 8, "val_fraction": 0.2, "head": "three_class"})
    return out


def test_both_heads_train_and_load(tiny_artifact: Path, three_class_artifact: Path) -> None:
    per_model = json.loads((tiny_artifact / "config.json").read_text())["config"]
    assert per_model["head"] == "per_model" and set(per_model["models"]) == {STRONG, WEAK}
    three = json.loads((three_class_artifact / "config.json").read_text())["config"]
    assert three["head"] == "three_class" and three["labels"] == list(neural.LABELS)
    for path in (tiny_artifact, three_class_artifact):
        probs = routeray.load_router("bert", str(path), device="cpu").class_probs(PROMPTS)
        assert probs.shape == (len(PROMPTS), 3) and np.allclose(probs.sum(1), 1.0)


def test_per_model_head_scores_the_pair_asked_for(tiny_artifact: Path) -> None:
    usual = routeray.load_router("bert", str(tiny_artifact), device="cpu").score(PROMPTS)
    swapped = routeray.load_router("bert", str(tiny_artifact), device="cpu", strong_model=WEAK,
                                   weak_model=STRONG).score(PROMPTS)
    assert np.allclose(usual + swapped, 1.0)  # (1 + ps - pw)/2 mirrored


def test_unknown_head_is_refused(tiny_bert_base: Path, tiny_slice: PreferenceData, tmp_path: Path) -> None:
    from routeray.train.bert import train

    with pytest.raises(RouterayError, match="head='pairwise'"):
        train(tiny_slice, tmp_path, progress=False, config={"base_model": str(tiny_bert_base), "head": "pairwise"})


def test_per_model_head_scores_a_pool_and_the_pair_head_says_it_cannot(tiny_artifact: Path,
                                                                     three_class_artifact: Path) -> None:
    from routeray.errors import UnknownModelError
    from routeray.routers.pool import supports_pool

    router = routeray.load_router("bert", str(tiny_artifact), device="cpu", model_aliases={"big": STRONG})
    q = router.model_quality(PROMPTS, [WEAK, "big"])
    assert q.shape == (len(PROMPTS), 2) and ((q > 0) & (q < 1)).all()
    assert np.allclose(router.score(PROMPTS), (1 + q[:, 1] - q[:, 0]) / 2)  # the pair score, from the pool
    with pytest.raises(UnknownModelError, match=f"known: {STRONG}|known: {WEAK}"):
        router.model_quality(PROMPTS, ["gpt-9"])
    pair = routeray.load_router("bert", str(three_class_artifact), device="cpu")
    assert supports_pool(router) and not supports_pool(pair)
    with pytest.raises(RouterayError, match="3-class.*head=per_model"):
        pair.model_quality(PROMPTS, [STRONG, WEAK])
