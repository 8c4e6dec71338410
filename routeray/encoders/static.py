"""A static (per-token) embedder distilled from all-MiniLM-L6-v2, model2vec-style, built locally.

MiniLM costs ~2.5 ms a prompt on two CPU cores; the MF router's own work after the embedding is one
mat-vec. A static table turns the embedding into a WordPiece tokenisation plus a weighted sum of table rows
(numpy only, no torch at inference): 4,000-5,000 prompts/s here, over ten times MiniLM's idle speed, with
the mf router about as good (bench/encoders.md). The table is built once from the
installed MiniLM (no download): every vocabulary token is run through MiniLM as ``[CLS] token [SEP]`` and
mean-pooled like a sentence, the rows are reduced by PCA (sign-fixed so every machine gets the same axes)
and scaled by a Zipf weight ``log(1 + rank)`` (BERT's vocabulary is roughly frequency-ordered, so frequent
tokens weigh less, as in SIF). A prompt is the L2-normalised sum of its tokens' rows, ``[CLS]`` and ``[SEP]``
included as MiniLM's mean pooling includes them.

The table lives under ``routeray.paths.cache_dir()/models/<name>`` with a ``meta.json``. Its spec carries a
``hash`` of everything that determines the table (the source model's weights and tokenizer, the recipe), so
an artifact trained on one table refuses another.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from routeray.encoders.base import Embedder
from routeray.encoders.local import minilm_path
from routeray.errors import RouterayError
from routeray.paths import models_dir, sha256_file, staged_dir

log = logging.getLogger(__name__)

TABLE_FILE = "table.npy"
META_FILE = "meta.json"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class StaticRecipe:
    """Everything that decides the table's content besides the source model's files."""

    source: str = "all-MiniLM-L6-v2"
    dim: int = 256
    weighting: str = "zipf"
    max_tokens: int = 512
    version: int = 1


RECIPES: dict[str, StaticRecipe] = {"minilm-static-256": StaticRecipe()}
DEFAULT_STATIC = "minilm-static-256"


def recipe(name: str) -> StaticRecipe:
    if name not in RECIPES:
        raise RouterayError(f"unknown static embedder {name!r} (known: {', '.join(sorted(RECIPES))})")
    return RECIPES[name]


@cache
def static_hash(name: str) -> str:
    """Hash of the recipe and the installed source model's weights and tokenizer (computed once per process)."""
    src = minilm_path()
    h = hashlib.sha256(json.dumps(asdict(recipe(name)), sort_keys=True).encode())
    for file in ("model.safetensors", TOKENIZER_FILE):
        h.update(sha256_file(src / file).encode())
    return h.hexdigest()[:16]


def static_spec(name: str = DEFAULT_STATIC) -> dict[str, Any]:
    r = recipe(name)
    return {"kind": "static", "model": name, "source": r.source, "dim": r.dim, "hash": static_hash(name)}


def static_model_dir(name: str) -> Path:
    return models_dir() / name


def token_vectors(model_path: Path, batch_size: int = 1024, threads: int = 2) -> np.ndarray:
    """MiniLM's mean-pooled output for every vocabulary token alone (``[CLS] t [SEP]``): ``(V, 384)``."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(str(model_path))
    model = AutoModel.from_pretrained(str(model_path)).eval()
    ids = torch.arange(tok.vocab_size)[:, None]
    out = np.empty((tok.vocab_size, model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            mid = ids[start:start + batch_size]
            seq = torch.cat([torch.full_like(mid, tok.cls_token_id), mid, torch.full_like(mid, tok.sep_token_id)], 1)
            hidden = model(input_ids=seq, attention_mask=torch.ones_like(seq)).last_hidden_state
            out[start:start + len(mid)] = hidden.mean(1).numpy()
    return out


def pca_rows(x: np.ndarray, dim: int) -> np.ndarray:
    """Project rows on their top ``dim`` principal axes, each axis' sign fixed so that its largest loading
    is positive (SVD signs are otherwise arbitrary and could differ between machines)."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:dim]
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    return centred @ (axes * signs[:, None]).T


def zipf_weights(n: int) -> np.ndarray:
    """``log(1 + rank)``: BERT's vocabulary is roughly frequency-ordered, so later (rarer) tokens weigh more."""
    return np.log1p(np.arange(n, dtype=np.float64))


def build_table(r: StaticRecipe, model_path: Path) -> np.ndarray:
    """The weighted ``(V, dim)`` float32 table for recipe ``r`` from the MiniLM folder ``model_path``."""
    if r.weighting != "zipf":
        raise RouterayError(f"unknown static weighting {r.weighting!r}")
    vectors = token_vectors(model_path)
    if r.dim > vectors.shape[1]:
        raise RouterayError(f"static dim {r.dim} exceeds the source model's {vectors.shape[1]}")
    table = pca_rows(vectors, r.dim) * zipf_weights(len(vectors))[:, None]
    return table.astype(np.float32)


def prepare_static(name: str = DEFAULT_STATIC) -> Path:
    """The folder holding static embedder ``name``, built from the installed MiniLM when missing or stale."""
    target = static_model_dir(name)
    expected = static_hash(name)
    meta_path = target / META_FILE
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("hash") == expected:
        return target
    log.info("building static embedder %s from MiniLM into %s (once, ~20 s)", name, target)
    src = minilm_path()
    table = build_table(recipe(name), src)
    with staged_dir(target, replace=True) as tmp:  # a stale table is replaced
        np.save(tmp / TABLE_FILE, table)
        shutil.copyfile(src / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
        meta = {"name": name, "hash": expected, "recipe": asdict(recipe(name)),
                "table_sha256": hashlib.sha256(table.tobytes()).hexdigest(), "shape": list(table.shape)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return target


class StaticEmbedder(Embedder):
    """Embeds prompts as the normalised sum of per-token table rows; the table is built on first use."""

    def __init__(self, model: str = DEFAULT_STATIC):
        self._spec = static_spec(model)
        self._name = model
        self._table: np.ndarray | None = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self._spec)

    def _load(self) -> tuple[Any, np.ndarray]:
        with self._lock:
            if self._table is not None:
                return self._tokenizer, self._table
            from tokenizers import Tokenizer

            folder = prepare_static(self._name)
            table = np.load(folder / TABLE_FILE)
            meta = json.loads((folder / META_FILE).read_text())
            if hashlib.sha256(table.tobytes()).hexdigest() != meta["table_sha256"]:
                raise RouterayError(f"{folder / TABLE_FILE} does not match its checksum; delete {folder} to rebuild")
            tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
            tokenizer.no_padding()
            tokenizer.enable_truncation(recipe(self._name).max_tokens)
            self._tokenizer, self._table = tokenizer, table
            return tokenizer, table

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        tokenizer, table = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # One small gather-and-sum per prompt: gathering every token row of a batch at once (for
        # np.add.reduceat) allocates tokens x dim floats and measured ~25x slower at batch 2,048.
        sums = np.stack([table[e.ids].sum(axis=0) for e in tokenizer.encode_batch(list(texts))])
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        return sums / np.maximum(norms, 1e-12)
