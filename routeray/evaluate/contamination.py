"""Decontamination and the paper's benchmark–dataset similarity.

A benchmark prompt is contaminated for a router when its embedding's cosine similarity to any prompt the
router was trained on is at least 0.95 (the paper's rule). Routers expose their training prompts'
embeddings through the optional :meth:`Router.training_embeddings` hook; the benchmark prompts are
embedded with the router's own embedder (``router.embedder``) or MiniLM when it has none.

The benchmark–dataset similarity score (paper, section 5.2) is the mean over benchmark prompts of the
highest cosine similarity to any training prompt: how close the evaluation is to what the router saw.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routeray.encoders.base import Embedder
from routeray.routers.base import Router

log = logging.getLogger(__name__)

THRESHOLD = 0.95
_CHUNK = 512


@dataclass
class Contamination:
    """One router's view of a benchmark's contamination."""

    router: str
    max_similarity: np.ndarray  # per benchmark prompt: the highest cosine to a training prompt
    threshold: float = THRESHOLD

    @property
    def mask(self) -> np.ndarray:
        return self.max_similarity >= self.threshold

    @property
    def n_contaminated(self) -> int:
        return int(self.mask.sum())

    @property
    def similarity(self) -> float:
        """The paper's benchmark–dataset similarity score."""
        return float(self.max_similarity.mean()) if self.max_similarity.size else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {"n_contaminated": self.n_contaminated, "similarity": round(self.similarity, 6),
                "threshold": self.threshold}


def max_cosine(queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each row of ``queries``, the highest cosine similarity to any row of ``keys``."""
    q = _unit(queries)
    k = _unit(keys)
    if k.shape[0] == 0:
        return np.full(q.shape[0], -1.0, dtype=np.float32)
    if q.shape[1] != k.shape[1]:
        raise ValueError(f"embeddings of different sizes: {q.shape[1]} and {k.shape[1]}")
    out = np.empty(q.shape[0], dtype=np.float32)
    for start in range(0, q.shape[0], _CHUNK):
        out[start:start + _CHUNK] = (q[start:start + _CHUNK] @ k.T).max(axis=1)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def training_embeddings(router: Router) -> np.ndarray | None:
    """The router's training-prompt embeddings: its :meth:`Router.training_embeddings` hook, else an
    artifact tensor ``prompt_emb`` (similarity-weighted routers keep their training prompts' embeddings)."""
    hook = getattr(router, "training_embeddings", None)
    train = hook() if callable(hook) else None
    if train is None:
        tensors = getattr(getattr(router, "artifact", None), "tensors", None) or {}
        train = tensors.get("prompt_emb")
    return None if train is None else np.asarray(train, dtype=np.float32)


def query_embedder(router: Router) -> Embedder:
    """The space a router's training embeddings live in: its own embedder, else MiniLM."""
    from routeray.encoders.registry import make_embedder

    return getattr(router, "embedder", None) or make_embedder()


def router_contamination(router: Router, prompts: list[str], label: str = "", threshold: float = THRESHOLD,
                         progress: bool = True, queries: np.ndarray | None = None) -> Contamination | None:
    """Contamination of ``prompts`` with respect to ``router``'s training prompts; ``None`` when the router
    does not say what it was trained on. ``queries``: the prompts' embeddings in :func:`query_embedder`'s
    space when the caller has them (else they are embedded here, through the embedding cache)."""
    name = label or getattr(router, "name", type(router).__name__)
    train = training_embeddings(router)
    if train is None:
        log.info("%s: training prompts unknown; no embedding decontamination for it", name)
        return None
    if queries is None:
        from routeray.encoders.cache import EmbeddingCache

        queries = EmbeddingCache(query_embedder(router)).embed(prompts, progress=progress,
                                                              desc=f"embedding for {name}")
    sims = max_cosine(queries, np.asarray(train))
    result = Contamination(name, sims, threshold)
    log.info("%s: %d of %d prompts have cosine >= %.2f to a training prompt; similarity score %.3f",
             name, result.n_contaminated, len(prompts), threshold, result.similarity)
    return result


def reference_contamination(prompts: list[str], train_prompts: list[str], label: str = "training data",
                            threshold: float = THRESHOLD, progress: bool = True) -> Contamination:
    """Contamination of ``prompts`` against a given list of training prompts, embedded with MiniLM (for
    routers that do not expose their own training embeddings but are known to be trained on this data)."""
    from routeray.encoders.cache import EmbeddingCache
    from routeray.encoders.registry import make_embedder

    cache = EmbeddingCache(make_embedder())
    train = cache.embed(list(dict.fromkeys(train_prompts)), progress=progress, desc="embedding training prompts")
    queries = cache.embed(prompts, progress=progress, desc="embedding benchmark prompts")
    result = Contamination(label, max_cosine(queries, train), threshold)
    log.info("%s: %d of %d prompts have cosine >= %.2f to it; similarity score %.3f", label,
             result.n_contaminated, len(prompts), threshold, result.similarity)
    return result


def contaminated_mask(found: list[Contamination], n: int, benchmark: str) -> np.ndarray:
    """The prompts any of ``found`` flags (``n`` prompts); an error when that is every prompt."""
    from routeray.errors import RouterayError

    dropped = np.zeros(n, dtype=bool)
    for c in found:
        dropped |= c.mask
    if n and dropped.all():
        raise RouterayError(f"every {benchmark} prompt is contaminated by a router's training data")
    return dropped


def write_contaminated(path: str | Path, prompts: list[str], ids: list[str],
                       results: list[Contamination]) -> int:
    """Write the contaminated prompts in RouteLLM's ``contaminated_prompts.jsonl`` format (``eval_prompt``)
    plus which router's training data each matched and how closely. Returns the number written."""
    path = Path(path)
    rows = []
    for i, (prompt, pid) in enumerate(zip(prompts, ids, strict=True)):
        hits = {r.router: float(r.max_similarity[i]) for r in results if r.mask[i]}
        if hits:
            rows.append({"eval_prompt": prompt, "id": pid, "max_similarity": hits})
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)
