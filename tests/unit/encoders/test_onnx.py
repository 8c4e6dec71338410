"""Local encoders on ONNX Runtime: the same vectors as torch in float32, close ones in int8 (its own spec),
exported once into the cache, prompts grouped by token count so batches pad little. A tiny random BERT with
MiniLM's tokenizer keeps the export fast; the real MiniLM's figures are in bench/encoders.md."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from routeray.encoders.local import LocalEmbedder, minilm_path
from routeray.encoders.onnx import QUANTIZE_ONNX, pad, prepare_onnx, token_buckets
from routeray.encoders.registry import DEFAULT_SPEC, check_embedder
from routeray.errors import ArtifactError, RouterayError

TEXTS = ["hi", "How do I sort a list in Python?", "Prove that there are infinitely many primes, step by step.",
         "What is 2+2?", "A much longer prompt " * 20]


def test_token_buckets_cover_every_prompt_once_and_bound_padding() -> None:
    lengths = [3, 50, 4, 48, 5, 200, 3, 49]
    buckets = token_buckets(lengths, max_batch=3, max_waste=0.25)
    assert sorted(int(i) for b in buckets for i in b) == list(range(len(lengths)))
    for b in buckets:
        ls = [lengths[i] for i in b]
        assert len(b) <= 3 and (len(b) == 1 or len(b) * max(ls) <= 1.25 * sum(ls))
    assert [sorted(lengths[i] for i in b) for b in buckets] == [[3, 3, 4], [5], [48, 49, 50], [200]]
    assert token_buckets([], 4) == []
    np.testing.assert_array_equal(pad([[1, 2, 3], [4]]), [[1, 2, 3], [4, 0, 0]])


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random BERT saved with MiniLM's tokenizer (exports in a second)."""
    torch = pytest.importorskip("torch")
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
              add_pooling_layer=False).save_pretrained(str(folder))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_path() / name, folder / name)
    return folder


def test_onnx_runtime_gives_torch_vectors_and_int8_close_ones(tiny_encoder: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("ROUTERAY_CACHE_DIR", str(tmp_path))
    torch_emb = LocalEmbedder(model_path=tiny_encoder, runtime="torch")
    auto = LocalEmbedder(model_path=tiny_encoder, batch_size=2)  # auto: ONNX Runtime on a CPU
    int8 = LocalEmbedder(model_path=tiny_encoder, quantize=QUANTIZE_ONNX)
    ref, got, q = torch_emb.embed(TEXTS), auto.embed(TEXTS), int8.embed(TEXTS)
    assert auto._onnx is not None and torch_emb._onnx is None
    np.testing.assert_allclose(got, ref, atol=1e-5)  # same vectors, whatever the batching
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    assert np.all((q * ref).sum(1) > 0.95)
    # int8 scales activations per run, so each prompt runs alone: its vector does not depend on its batch
    np.testing.assert_array_equal(q, np.concatenate([int8.embed([t]) for t in TEXTS]))
    # float32 ONNX is the same embedder as torch; int8 is another one that artifacts tell apart
    assert auto.spec == torch_emb.spec and int8.spec == {**torch_emb.spec, "quantize": QUANTIZE_ONNX}
    with pytest.raises(ArtifactError, match="was trained with embedder"):
        check_embedder(int8, {**DEFAULT_SPEC, "dim": 32}, "float-artifact")
    # exported once: a second embedder reuses the cached file
    files = sorted(p.name for p in (tmp_path / "models" / "onnx").iterdir())
    assert len(files) == 2 and prepare_onnx(tiny_encoder).parent.name in files
    assert auto.embed([]).shape == (0, 32)


def test_an_int8_spec_runs_its_float_weights_on_torch(tiny_encoder: Path) -> None:
    """int8 is a CPU format: with runtime torch (and on a GPU) the same spec embeds with the float32 weights."""
    torch_emb = LocalEmbedder(model_path=tiny_encoder, runtime="torch")
    int8_on_torch = LocalEmbedder(model_path=tiny_encoder, quantize=QUANTIZE_ONNX, runtime="torch")
    np.testing.assert_allclose(int8_on_torch.embed(TEXTS), torch_emb.embed(TEXTS), atol=1e-6)
    assert int8_on_torch._onnx is None and int8_on_torch.spec["quantize"] == QUANTIZE_ONNX


def test_unknown_runtime_is_refused() -> None:
    with pytest.raises(RouterayError, match="unknown encoder runtime 'tpu'"):
        LocalEmbedder(runtime="tpu")
