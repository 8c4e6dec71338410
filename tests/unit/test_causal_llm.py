"""The causal_llm router: prompt template and label tokens, training pipeline on a tiny Llama, artifact
round trip, determinism, clear errors, and (slow) a real SmolLM2 fine-tune that must beat the random
router on held-out prompts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import routeray
from routeray.errors import ArtifactError
from routeray.evaluate.metrics import apgr, random_baseline
from tests.unit.test_bert_slices import STRONG, mmlu_pro_slice

PROMPTS = ["What is the derivative of x squared times sine x?", "Write a haiku about autumn leaves please.",
           "Explain the causes of the French revolution. " * 40, "short prompt but long enough"]


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


@pytest.fixture(scope="module")
def tiny_artifact(tiny_llama_base: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from routeray.train.causal_llm import train

    data = mmlu_pro_slice(shared_data, 40, 0)[0]
    out = tmp_path_factory.mktemp("causal_artifact")
    train(data, out, seed=0, progress=False,
          config={"base_model": str(tiny_llama_base), "strong_model": STRONG, "epochs": 1, "max_length": 96,
                  "batch_size": 8, "train_layers": 1, "val_fraction": 0.25})
    return out


def test_template_ends_where_the_label_token_comes(smollm2_tokenizer) -> None:  # noqa: ANN001
    from routeray.routers.causal_llm import PromptEncoder, label_token_ids, prompt_template

    pre, post = prompt_template(smollm2_tokenizer)
    assert pre.startswith("<|im_start|>system") and post.endswith("<|im_start|>assistant\n[[")
    ids = label_token_ids(smollm2_tokenizer)
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


def test_artifact_holds_model_folder_template_and_labels(tiny_artifact: Path) -> None:
    meta = json.loads((tiny_artifact / "config.json").read_text())
    assert meta["router"] == "causal_llm"
    assert meta["config"]["template_post"].endswith("[[")
    assert len(meta["config"]["label_token_ids"]) == 3
    assert list((tiny_artifact / "model").glob("*.safetensors"))
    assert meta["report"]["n_train"] > 0 and "apgr" in meta["report"]["validation"]


def test_round_trip_scores_in_range_and_deterministic(tiny_artifact: Path) -> None:
    router = routeray.load_router("causal_llm", str(tiny_artifact), device="cpu", batch_size=2)
    scores = router.score(PROMPTS)
    assert scores.shape == (len(PROMPTS),) and ((scores >= 0) & (scores <= 1)).all()
    assert np.array_equal(router.score(PROMPTS), scores)
    again = routeray.load_router("causal_llm", str(tiny_artifact), device="cpu", batch_size=4)
    assert np.allclose(again.score(PROMPTS[::-1])[::-1], scores, atol=1e-5)
    assert np.allclose(router.class_probs(PROMPTS).sum(1), 1.0)
    assert router.score([]).shape == (0,)


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
    """Real SmolLM2-135M-Instruct, real MMLU-Pro labels: train on 240 prompts, score 600 others (scoring is
    cheap next to training, and a large held-out set narrows random's interval)."""
    from routeray.train.causal_llm import train

    data, held, sq, wq = mmlu_pro_slice(shared_data, 240, 600)
    train(data, tmp_path, seed=0, progress=False,
          config={"strong_model": STRONG, "max_length": 112, "epochs": 1, "train_layers": 4,
                  "lr": 1e-4, "evals_per_epoch": 1, "val_fraction": 0.1})
    scores = routeray.load_router("causal_llm", str(tmp_path)).score(held)
    base = random_baseline(sq, wq, n_seeds=100, n_points=None)
    got = apgr(scores, sq, wq)
    assert got > base.apgr_ci[1], f"held-out APGR {got:.3f} is inside random's interval {base.apgr_ci}"
