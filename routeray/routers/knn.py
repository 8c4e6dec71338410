"""The k-nearest-neighbour baseline: the mean correctness gap (strong minus weak) of the ``k`` training
prompts nearest to the query in embedding space. No learned weights; ``k`` is chosen on held-out sources
by :mod:`routeray.train.knn`. Published work finds such routers beating many learned ones (arXiv
2505.12601), so every learned router is measured against it.

The artifact holds every golden-labelled training prompt (unit MiniLM embeddings, int8) and each model's
score on it (``NaN`` where a model was not labelled). For a (strong, weak) pair only the prompts that label
both count; a source without the pair's strong (weak) model can lend another through ``stand_ins``
(MMLU-Pro's gpt-4o stands in for gpt-4-1106-preview by default, as in the training folds).
``score = (1 + mean gap of the k nearest) / 2`` lies in [0, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routeray.artifacts import Artifact, load_artifact
from routeray.encoders.base import Embedder
from routeray.encoders.registry import embedder_for_artifact
from routeray.errors import ArtifactError
from routeray.routers.base import EmbeddingRouter
from routeray.routers.mf import ModelResolver

log = logging.getLogger(__name__)


def pair_gaps(labels: np.ndarray, models: Sequence[str], strong: Sequence[str],
              weak: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, gap)``: the training rows labelled for a strong and a weak model (the first labelled name
    of each list wins) and their score differences."""
    col = {m: i for i, m in enumerate(models)}

    def first_labelled(names: Sequence[str]) -> np.ndarray:
        out = np.full(labels.shape[0], np.nan)
        for name in names:
            if name in col:
                v = labels[:, col[name]].astype(np.float64)
                out = np.where(np.isnan(out), v, out)
        return out

    s, w = first_labelled(strong), first_labelled(weak)
    rows = np.flatnonzero(~np.isnan(s) & ~np.isnan(w))
    return rows, (s - w)[rows]


def knn_mean(query: np.ndarray, index: np.ndarray, values: np.ndarray, k: int, chunk: int = 512) -> np.ndarray:
    """Mean of ``values`` over the ``k`` rows of ``index`` most similar (dot product) to each query row."""
    k = max(1, min(int(k), index.shape[0]))
    out = np.empty(query.shape[0], dtype=np.float64)
    for start in range(0, query.shape[0], chunk):
        sims = np.asarray(query[start:start + chunk], dtype=np.float32) @ index.T
        if k < index.shape[0]:
            nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            nn = np.broadcast_to(np.arange(index.shape[0]), sims.shape)
        out[start:start + chunk] = values[nn].mean(axis=1)
    return out


class KNNRouter(EmbeddingRouter):
    """Mean strong-minus-weak correctness of the k nearest labelled training prompts."""

    name: ClassVar[str] = "knn"

    def __init__(self, artifact: Artifact, embedder: Embedder, strong_model: str | None = None,
                 weak_model: str | None = None, model_aliases: Mapping[str, str] | None = None,
                 k: int | None = None):
        cfg = artifact.config
        self.artifact, self.embedder = artifact, embedder
        self.models = [str(m) for m in cfg["models"]]
        aliases = dict(cfg.get("model_aliases", {}))
        aliases.update(model_aliases or {})
        resolver = ModelResolver(self.models, aliases)
        self.strong_model = strong_model or cfg["strong_model"]
        self.weak_model = weak_model or cfg["weak_model"]
        strong = resolver.resolve(self.strong_model, cfg["strong_model"])
        weak = resolver.resolve(self.weak_model, cfg["weak_model"])
        stand_ins = {str(k): [str(x) for x in v] for k, v in cfg.get("stand_ins", {}).items()}
        emb = artifact.tensors["prompt_emb_q8"].astype(np.float32)
        labels = artifact.tensors["labels"]
        if labels.shape != (emb.shape[0], len(self.models)):
            raise ArtifactError(f"{artifact.path}: knn labels {labels.shape} do not match "
                                f"{emb.shape[0]} prompts x {len(self.models)} models")
        rows, gaps = pair_gaps(labels, self.models, [strong, *stand_ins.get(strong, [])],
                               [weak, *stand_ins.get(weak, [])])
        if rows.size == 0:
            raise ArtifactError(f"{artifact.path}: no training prompt labels both {strong!r} and {weak!r}")
        self._emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        self._index, self._gaps = self._emb[rows], gaps
        self.k = int(k if k is not None else cfg["k"])
        self._fingerprint = f"knn-{artifact.fingerprint}-{strong}-{weak}-{self.k}"

    @classmethod
    def load(cls, artifact_dir: Path | None, **overrides: Any) -> KNNRouter:
        """Overrides: ``strong_model``, ``weak_model``, ``model_aliases``, ``k``, ``embedder`` (an Embedder),
        ``embedder_options``."""
        if artifact_dir is None:
            raise ArtifactError("the knn router needs an artifact (`routeray train knn`)")
        artifact = load_artifact(artifact_dir, expect_router=cls.name)
        return cls(artifact, embedder_for_artifact(artifact, overrides), strong_model=overrides.get("strong_model"),
                   weak_model=overrides.get("weak_model"), model_aliases=overrides.get("model_aliases"),
                   k=overrides.get("k"))

    def score_embeddings(self, emb: np.ndarray, prompts: Sequence[str] | None = None) -> np.ndarray:
        """P(strong wins) (the prompts are not needed) from precomputed unit prompt embeddings ``(n, D)``."""
        return (1.0 + knn_mean(emb, self._index, self._gaps, self.k)) / 2.0

    def training_embeddings(self) -> np.ndarray | None:
        return self._emb
