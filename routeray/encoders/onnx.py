"""ONNX Runtime for the local encoders on CPU: the same MiniLM, about 1.8x less CPU per prompt than torch
(float32, the same vectors), or about 3x less with int8 weights (``quantize: onnx-int8``, other vectors).

The graph is exported once from the installed torch weights (``torch.onnx.export``, TorchScript exporter,
opset 17, dynamic batch and sequence axes) into ``routeray.paths.models_dir()/onnx/<name>``; ``onnx-int8``
then quantises every MatMul's weights to int8 per output channel with ONNX Runtime's dynamic quantisation
(activations quantised per batch at run time), which keeps cosine 0.994 to the float vectors on real prompts
where torch's per-tensor ``dynamic-int8`` keeps 0.93 (bench/encoders.md). The folder's name carries a hash
of the source weights and the recipe, so another MiniLM or another recipe gets another file.

Sessions run ``intra_op_num_threads`` threads (1 by default: on a small machine the serving process needs the
other core, and one thread wastes nothing on synchronisation) without spin-waiting. In float32, prompts are grouped
by token count before they are run (:func:`token_buckets`), so a batch pads little: on CPU a padded token
costs as much as a real one. In int8 each prompt runs alone: activations are quantised with one scale per
run, so a prompt batched with others would get a vector, and a route, that depends on its neighbours.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routeray.errors import RouterayError
from routeray.paths import models_dir, sha256_file, staged_dir

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
META_FILE = "meta.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
QUANTIZE_ONNX = "onnx-int8"


@dataclass(frozen=True)
class OnnxRecipe:
    """Everything besides the source weights that decides the exported graph."""

    quantize: str | None = None
    opset: int = 17
    version: int = 1


def available() -> bool:
    """ONNX Runtime is installed (the ``onnx`` package too, needed to quantise)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def recipe_hash(source: Path, recipe: OnnxRecipe) -> str:
    h = hashlib.sha256(json.dumps(asdict(recipe), sort_keys=True).encode())
    for weights in sorted(source.glob("*.safetensors")):
        h.update(sha256_file(weights).encode())
    return h.hexdigest()[:12]


def onnx_model_dir(source: Path, recipe: OnnxRecipe) -> Path:
    tag = "fp32" if recipe.quantize is None else recipe.quantize
    return models_dir() / "onnx" / f"{source.name}-{tag}-{recipe_hash(source, recipe)}"


def _export(source: Path, out: Path, opset: int) -> None:
    """The encoder's last hidden state as an ONNX graph with dynamic batch and sequence axes."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(source), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(source))

    class Hidden(torch.nn.Module):
        def __init__(self, encoder: Any):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state

    # Traced on a padded batch: transformers drops the attention mask from the graph when the sample has no padding.
    sample = tokenizer(["a short prompt", "a somewhat longer prompt to trace"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "last_hidden_state")}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape checks it folds into constants
        torch.onnx.export(Hidden(model), tuple(sample[k] for k in INPUTS), str(out), input_names=list(INPUTS),
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=opset, dynamo=False)


def _quantize(src: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def prepare_onnx(source: Path, quantize: str | None = None) -> Path:
    """The ONNX file of the encoder folder ``source`` (exported, and quantised, on first use; ~20 s)."""
    if quantize not in (None, QUANTIZE_ONNX):
        raise RouterayError(f"unknown ONNX quantisation {quantize!r} (known: {QUANTIZE_ONNX})")
    recipe = OnnxRecipe(quantize=quantize)
    target = onnx_model_dir(source, recipe)
    if (target / ONNX_FILE).is_file():
        return target / ONNX_FILE
    log.info("exporting %s to ONNX%s in %s (once)", source.name, f" ({quantize})" if quantize else "", target)
    with staged_dir(target) as tmp:
        if quantize is None:
            _export(source, tmp / ONNX_FILE, recipe.opset)
        else:
            _export(source, tmp / "float.onnx", recipe.opset)
            _quantize(tmp / "float.onnx", tmp / ONNX_FILE)
            (tmp / "float.onnx").unlink()
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                     "config.json"):
            if (source / name).is_file():
                (tmp / name).write_bytes((source / name).read_bytes())
        (tmp / META_FILE).write_text(json.dumps({"source": str(source), **asdict(recipe)}, indent=2))
    return target / ONNX_FILE


def token_buckets(lengths: Sequence[int], max_batch: int, max_waste: float = 0.25) -> list[np.ndarray]:
    """Index arrays of prompts to run together: sorted by token count, a batch closes when it holds
    ``max_batch`` prompts or when padding to its longest would add more than ``max_waste`` of its real
    tokens. Every index appears once; callers write results back at these indices."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    out: list[np.ndarray] = []
    start, real = 0, 0
    for i, idx in enumerate(order):
        n = int(lengths[idx])
        size = i - start + 1
        if size > 1 and (size > max_batch or size * n > (real + n) * (1 + max_waste)):
            out.append(order[start:i])
            start, real = i, 0
        real += n
    if start < len(order):
        out.append(order[start:])
    return out


def pad(rows: Sequence[Sequence[int]], value: int = 0) -> np.ndarray:
    """Token id lists right-padded to the longest, as an int64 matrix."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


class OnnxEncoder:
    """Mean-pooled hidden states of an exported encoder, run by ONNX Runtime on CPU (loaded on first use)."""

    def __init__(self, source: Path, quantize: str | None = None, max_length: int = 256, batch_size: int = 64,
                 threads: int = 1):
        self.source = source
        self.quantize = quantize
        self.max_length = max_length
        self.batch_size = batch_size
        self.threads = threads
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from transformers import AutoTokenizer

            path = prepare_onnx(self.source, self.quantize)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # idle threads sleep instead of spinning: a spinning pool burns the core the event loop needs
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._tokenizer = AutoTokenizer.from_pretrained(str(self.source))
            self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def embed(self, texts: Sequence[str], dim: int) -> np.ndarray:
        """``(len(texts), dim)`` mean-pooled (not yet normalised) float32 vectors."""
        self._load()
        enc = self._tokenizer(list(texts), truncation=True, max_length=self.max_length)
        ids, types = enc["input_ids"], enc.get("token_type_ids")
        out = np.empty((len(texts), dim), dtype=np.float32)
        # int8 quantises activations with one scale per run: a prompt run beside others would get a vector (and
        # a route) that depends on its neighbours, so each runs alone; on one CPU thread that costs nothing
        # (MiniLM int8, 256 MMLU prompts: 8.6 ms per prompt alone, 8.9 in batches of 64)
        max_batch = 1 if self.quantize else self.batch_size
        for idx in token_buckets([len(r) for r in ids], max_batch):
            input_ids = pad([ids[i] for i in idx])
            mask = pad([[1] * len(ids[i]) for i in idx])
            type_ids = pad([types[i] for i in idx]) if types is not None else np.zeros_like(input_ids)
            hidden = self._session.run(None, {"input_ids": input_ids, "attention_mask": mask,
                                              "token_type_ids": type_ids})[0]
            m = mask[..., None].astype(np.float32)
            out[idx] = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return out
