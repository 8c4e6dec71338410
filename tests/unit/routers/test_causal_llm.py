"""The causal_llm router: prompt templates and answer slots, slot independence in the real SmolLM2, the
per-model training rows and loss, both heads' training pipeline on a tiny Llama, artifact round trip, old and
unreadable artifacts, any strong/weak pair, and (slow) a real SmolLM2 fine-tune that must beat the random
router on held-out prompts."""

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
from routeray.train import neural
from tests.unit.routers.test_slices import STRONG, WEAK, mmlu_pro_slice

PROMPTS = ["What is the derivative of x squared times sine x?", "Write a haiku about autumn leaves please.",
           "Explain the causes of the French revolution. " * 40, "short prompt but long enough"]
PAIR = ("gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1")


@pytest.fixture(scope="module")
def smollm2_tokenizer():  # noqa: ANN201
    from transformers import AutoTokenizer

    from routeray.local_models import smollm2_path

    return AutoTokenizer.from_pretrained(str(smollm2_path()))


@pytest.fixture(scope="module")
def tiny_llama_base(smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001
    """A 2-layer, randomly initialised Llama with SmolLM2's tokenizer and tied embeddings."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_llama")
    cfg = LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(str(out))
    smollm2_tokenizer.save_pretrained(str(out))
    return out


def _train_tiny(base: Path, data_dir: Path, out: Path, **config: object) -> Path:
    from routeray.train.causal_llm import train

    data = mmlu_pro_slice(data_dir, 40, 0)[0]
    train(data, out, seed=0, progress=False,
          config={"base_model": str(base), "strong_model": STRONG, "epochs": 1, "max_length": 112,
                  "batch_size": 8, "train_layers": 1, "val_fraction": 0.25, **config})
    return out


@pytest.fixture(scope="module")
def tiny_artifact(tiny_llama_base: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default head (per_model)."""
    return _train_tiny(tiny_llama_base, shared_data, tmp_path_factory.mktemp("causal_per_model"))


@pytest.fixture(scope="module")
def three_class_artifact(tiny_llama_base: Path, shared_data: Path,
                         tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_tiny(tiny_llama_base, shared_data, tmp_path_factory.mktemp("causal_three_class"),
                       head="three_class", max_length=96)


def test_three_class_template_ends_where_the_label_token_comes(smollm2_tokenizer) -> None:  # noqa: ANN001
    from routeray.routers.causal_llm import PromptEncoder, label_token_ids, prompt_template

    pre, post = prompt_template(smollm2_tokenizer, "three_class")
    assert pre.startswith("<|im_start|>system") and post.endswith("<|im_start|>assistant\n[[")
    ids = label_token_ids(smollm2_tokenizer, "three_class")
    assert len(set(ids)) == 3
    # The answer "[[1]]" continues the template with exactly the first label token.
    full = smollm2_tokenizer.encode(post + "1]]", add_special_tokens=False)
    assert ids[0] in full
    enc = PromptEncoder(smollm2_tokenizer, pre, post, max_length=96)
    ids_t, mask, last = enc(PROMPTS, "cpu")
    assert ids_t.shape[1] <= 96
    for i in range(len(PROMPTS)):
        n = int(mask[i].sum())
        assert int(last[i]) == n - 1
        assert ids_t[i, :n].tolist()[-len(enc.post):] == enc.post  # long prompts are cut, the template not


def test_per_model_slots_are_read_after_each_models_name(smollm2_tokenizer) -> None:  # noqa: ANN001
    from routeray.routers.causal_llm import PromptEncoder, SlotEncoder, label_token_ids, prompt_template

    pre, post = prompt_template(smollm2_tokenizer, "per_model")
    assert post.endswith("<|im_start|>assistant\n") and "[[yes]] or [[no]]" in pre
    yes, no = label_token_ids(smollm2_tokenizer, "per_model")
    assert yes != no and smollm2_tokenizer.decode([yes]) == "yes"
    slots = SlotEncoder(PromptEncoder(smollm2_tokenizer, pre, post, max_length=128))
    pairs = [PAIR, PAIR[::-1], ("a", "b"), PAIR]
    ids, mask, reads = slots(PROMPTS, pairs, "cpu")
    assert ids.shape[1] <= 128
    for i, (first, second) in enumerate(pairs):
        n = int(mask[i].sum())
        row = ids[i, :n].tolist()
        assert int(reads[i, 1]) == n - 1  # the second read is the last token
        up_to_first = smollm2_tokenizer.decode(row[:int(reads[i, 0]) + 1])
        assert up_to_first.endswith(f"<|im_start|>assistant\n{first}: [[")
        assert smollm2_tokenizer.decode(row[int(reads[i, 0]) + 1:]) == f"?]] {second}: [["


def test_first_slot_never_sees_the_second_model(smollm2_tokenizer) -> None:  # noqa: ANN001
    """Real SmolLM2 weights: the strong model's read is the same whatever weak model follows, and padding
    a batch does not move either read; the weak model's read does depend on its name."""
    import torch
    from transformers import AutoModelForCausalLM

    from routeray.local_models import smollm2_path
    from routeray.routers.causal_llm import (
        PromptEncoder,
        SlotEncoder,
        label_token_ids,
        prompt_template,
        slot_logits,
    )

    model = AutoModelForCausalLM.from_pretrained(str(smollm2_path()), dtype=torch.float32).eval()
    slots = SlotEncoder(PromptEncoder(smollm2_tokenizer, *prompt_template(smollm2_tokenizer, "per_model"), 112))
    labels = label_token_ids(smollm2_tokenizer, "per_model")
    prompts = PROMPTS[:2]
    with torch.inference_mode():
        a = slot_logits(model, slots, labels, prompts, [PAIR] * 2, "cpu")
        b = slot_logits(model, slots, labels, prompts, [(PAIR[0], "alpaca-7b")] * 2, "cpu")
        alone = slot_logits(model, slots, labels, prompts[:1], [PAIR], "cpu")
    assert a.shape == (2, 2)
    assert torch.allclose(a[:, 0], b[:, 0], atol=1e-4)
    assert not torch.allclose(a[:, 1], b[:, 1], atol=1e-3)
    assert torch.allclose(alone[0], a[0], atol=1e-4)


def test_slot_rows_put_the_stronger_model_first_and_orient_judgments() -> None:
    from routeray.train.causal_llm import slot_examples

    q1, q2 = "a question about chemistry", "a question about poetry!"
    data = PreferenceData(
        judgments=[Judgment(q2, WEAK, STRONG, 0.25, "alpaca_eval")],
        golden=[GoldenLabel(q1, STRONG, 1.0, "mmlu_pro/x"), GoldenLabel(q1, WEAK, 0.0, "mmlu_pro/x")])
    models = neural.head_models(data)
    ex = neural.build_model_examples(data, models, {"per_source_cap": None, "judgment_weight": 1.0}, 0)
    pair = neural.PairSpec(STRONG, WEAK, [STRONG], [WEAK], ratings={STRONG: 1300.0, WEAK: 1100.0})
    rows, pairs = slot_examples(ex, pair, 0.5, seed=0)
    row = {p: i for i, p in enumerate(rows.prompts)}
    assert pairs == [(STRONG, WEAK), (STRONG, WEAK)]
    assert rows.targets[row[q1]].tolist() == [1.0, 0.0] and rows.mask[row[q1]].tolist() == [1.0, 1.0]
    assert rows.mask[row[q2]].tolist() == [0.0, 0.0]
    # WEAK beat STRONG with p=0.25, so the strong (first) slot beats the weak one with p=0.75.
    assert rows.judgments.tolist() == [[row[q2], 0, 1, 0.75, 1.0]]


def test_slot_loss_prefers_the_right_answer() -> None:
    import torch

    from routeray.train.causal_llm import slot_examples

    data = PreferenceData(
        judgments=[Judgment("judged prompt here", STRONG, WEAK, 1.0, "alpaca_eval")],
        golden=[GoldenLabel("golden prompt here", STRONG, 1.0, "x"), GoldenLabel("golden prompt here", WEAK, 0.0, "x")])
    ex = neural.build_model_examples(data, neural.head_models(data), {"per_source_cap": None}, 0)
    rows, _ = slot_examples(ex, neural.PairSpec(STRONG, WEAK, [STRONG], [WEAK], ratings={STRONG: 2.0}), 0.5, 0)
    loss = neural.per_model_loss(rows, judgment_weight=1.0)
    right = torch.tensor([[4.0, -4.0], [4.0, -4.0]])
    idx = np.arange(len(rows))
    assert float(loss(right, idx)) < 0.1 < float(loss(-right, idx))


def test_both_heads_train_and_keep_their_template(tiny_artifact: Path, three_class_artifact: Path) -> None:
    per_model = json.loads((tiny_artifact / "config.json").read_text())
    cfg = per_model["config"]
    assert per_model["router"] == "causal_llm" and cfg["head"] == "per_model"
    assert set(cfg["models"]) == {STRONG, WEAK} and len(cfg["label_token_ids"]) == 2 and len(cfg["slots"]) == 2
    assert per_model["report"]["n_train"] > 0 and "apgr" in per_model["report"]["validation"]
    three = json.loads((three_class_artifact / "config.json").read_text())["config"]
    assert three["head"] == "three_class" and three["template_post"].endswith("[[")
    assert len(three["label_token_ids"]) == 3
    for path in (tiny_artifact, three_class_artifact):
        assert list((path / "model").glob("*.safetensors"))
        probs = routeray.load_router("causal_llm", str(path), device="cpu").class_probs(PROMPTS)
        assert probs.shape == (len(PROMPTS), 3) and np.allclose(probs.sum(1), 1.0) and (probs >= 0).all()


def test_round_trip_scores_in_range_and_deterministic(tiny_artifact: Path) -> None:
    router = routeray.load_router("causal_llm", str(tiny_artifact), device="cpu", batch_size=2)
    scores = router.score(PROMPTS)
    assert scores.shape == (len(PROMPTS),) and ((scores >= 0) & (scores <= 1)).all()
    assert np.array_equal(router.score(PROMPTS), scores)
    again = routeray.load_router("causal_llm", str(tiny_artifact), device="cpu", batch_size=4)
    assert np.allclose(again.score(PROMPTS[::-1])[::-1], scores, atol=1e-5)
    assert router.score([]).shape == (0,)


def test_any_pair_is_scored_by_name(tiny_artifact: Path, caplog: pytest.LogCaptureFixture) -> None:
    usual = routeray.load_router("causal_llm", str(tiny_artifact), device="cpu")
    assert usual.pair == (STRONG, WEAK)
    swapped = routeray.load_router("causal_llm", str(tiny_artifact), device="cpu", strong_model=WEAK,
                                   weak_model=STRONG)
    assert swapped.pair == (WEAK, STRONG)
    assert not np.allclose(swapped.score(PROMPTS), usual.score(PROMPTS))
    aliased = routeray.load_router("causal_llm", str(tiny_artifact), device="cpu", strong_model="my-gpt",
                                   model_aliases={"my-gpt": WEAK})
    assert aliased.pair == (WEAK, WEAK)
    with caplog.at_level("WARNING"):
        unseen = routeray.load_router("causal_llm", str(tiny_artifact), device="cpu",
                                      weak_model="never-seen-model")
    assert unseen.pair == (STRONG, WEAK) and "never-seen-model" in caplog.text


def test_old_artifacts_load_and_unreadable_ones_are_refused(three_class_artifact: Path, tiny_artifact: Path,
                                                            tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(three_class_artifact, old)
    meta = json.loads((old / "config.json").read_text())
    del meta["config"]["head"]  # artifacts from before the per_model head have no "head"
    (old / "config.json").write_text(json.dumps(meta))
    assert np.allclose(routeray.load_router("causal_llm", str(old), device="cpu").score(PROMPTS),
                       routeray.load_router("causal_llm", str(three_class_artifact), device="cpu").score(PROMPTS))
    for key, value, message in (("head", "pairwise", "unknown causal_llm head 'pairwise'"),
                                ("models", None, "lacks 'models'")):
        bad = tmp_path / key
        shutil.copytree(tiny_artifact, bad)
        meta = json.loads((bad / "config.json").read_text())
        if value is None:
            del meta["config"][key]
        else:
            meta["config"][key] = value
        (bad / "config.json").write_text(json.dumps(meta))
        with pytest.raises(ArtifactError, match=message):
            routeray.load_router("causal_llm", str(bad))


def test_unknown_head_is_refused_in_training(tiny_llama_base: Path, shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(RouterayError, match="head='pairwise'"):
        _train_tiny(tiny_llama_base, shared_data, tmp_path, head="pairwise")


def test_missing_or_mismatched_model_is_a_clear_error(tiny_artifact: Path, tmp_path: Path) -> None:
    broken = tmp_path / "causal_llm"
    shutil.copytree(tiny_artifact, broken)
    for weights in (broken / "model").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(ArtifactError, match="missing model.safetensors"):
        routeray.load_router("causal_llm", str(broken))
    shutil.rmtree(broken / "model")
    with pytest.raises(ArtifactError, match="model folder"):
        routeray.load_router("causal_llm", str(broken))
    with pytest.raises(ArtifactError, match="not 'bert'"):
        routeray.load_router("bert", str(tiny_artifact))


@pytest.mark.slow
def test_smollm2_causal_llm_beats_random_on_heldout_prompts(shared_data: Path, tmp_path: Path) -> None:
    """Real SmolLM2-135M-Instruct, real MMLU-Pro labels, default (per_model) head: train on 240 prompts,
    score 600 others (scoring is cheap next to training, and a large held-out set narrows random's interval)."""
    from routeray.train.causal_llm import train

    data, held, sq, wq = mmlu_pro_slice(shared_data, 240, 600)
    train(data, tmp_path, seed=0, progress=False,
          config={"strong_model": STRONG, "max_length": 112, "epochs": 1, "train_layers": 4,
                  "lr": 1e-4, "evals_per_epoch": 1, "val_fraction": 0.1})
    scores = routeray.load_router("causal_llm", str(tmp_path)).score(held)
    base = random_baseline(sq, wq, n_seeds=100, n_points=None)
    got = apgr(scores, sq, wq)
    assert got > base.apgr_ci[1], f"held-out APGR {got:.3f} is inside random's interval {base.apgr_ci}"
