"""Similarity-weighted ranking router (RouteLLM paper, section 4.1.1), vectorised over a batch.

For a query ``q`` every training prompt ``i`` gets the weight ``γ^(1 + S_i)`` with
``S_i = cos(q, i) / max_k cos(q, k)``; a weighted Bradley–Terry model over model *tiers* is fitted on the
judgments, and ``P(strong wins) = σ(ξ_tier(strong) − ξ_tier(weak))``.

Nothing is refitted over the raw dataset per request: the artifact holds, per training prompt, the
weighted win and total counts for every tier pair (the BT sufficient statistics), so a batch costs one
matrix product for the similarities, one for the weighted counts, and a few batched Newton steps.
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


def tier_pairs(n_tiers: int) -> tuple[np.ndarray, np.ndarray]:
    """The unordered tier pairs ``(i, j)``, ``i < j``, in the order the statistics columns use."""
    i, j = np.triu_indices(n_tiers, k=1)
    return i.astype(np.int64), j.astype(np.int64)


def similarity_weights(sims: np.ndarray, gamma: float, top_k: int = 0) -> np.ndarray:
    """``γ^(1 + S)`` with ``S = cos / max cos`` per row, scaled so each row averages 1 (the scale only
    matters against the prior). ``top_k > 0`` keeps only the k most similar training prompts."""
    sims = np.asarray(sims, dtype=np.float64)
    max_sim = np.maximum(sims.max(axis=1, keepdims=True), 1e-6)
    s = sims / max_sim
    # γ^(1+S) / γ^2 = γ^(S-1): same ratios, no overflow for large γ
    w = np.exp((s - 1.0) * np.log(gamma))
    if 0 < top_k < sims.shape[1]:
        kth = np.partition(sims, -top_k, axis=1)[:, -top_k][:, None]
        w = np.where(sims >= kth, w, 0.0)
    return w / np.maximum(w.mean(axis=1, keepdims=True), 1e-300)


def fit_bt_batched(wins: np.ndarray, totals: np.ndarray, n_tiers: int, prior: float,
                   iters: int = 12) -> np.ndarray:
    """Weighted Bradley–Terry coefficients (natural log-odds scale) for every row at once.

    ``wins[b, k]`` / ``totals[b, k]``: weighted wins of tier ``i_k`` over ``j_k`` and weighted comparisons,
    for the pairs of :func:`tier_pairs`. A Gaussian prior ``prior·‖ξ‖²/2`` keeps the fit finite.
    Newton's method on the concave log-likelihood; returns ``ξ`` of shape ``(B, n_tiers)``.
    """
    ii, jj = tier_pairs(n_tiers)
    b = wins.shape[0]
    xi = np.zeros((b, n_tiers))
    eye = np.eye(n_tiers)
    d = eye[ii] - eye[jj]  # (P, T): the pair's difference vector
    dd = np.einsum("pt,pu->ptu", d, d).reshape(ii.size, n_tiers * n_tiers)  # Hessian as one matmul
    for _ in range(iters):
        diff = xi[:, ii] - xi[:, jj]  # (B, P)
        p = 1.0 / (1.0 + np.exp(-diff))
        grad = (wins - totals * p) @ d - prior * xi  # (B, T)
        curv = totals * p * (1.0 - p)  # (B, P)
        hess = (curv @ dd).reshape(b, n_tiers, n_tiers) + prior * eye  # negative Hessian, PD
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        xi = xi + step
        if np.abs(step).max() < 1e-6:
            break
    return xi


def sw_scores(query_emb: np.ndarray, train_emb: np.ndarray, wins: np.ndarray, totals: np.ndarray,
              n_tiers: int, tier_strong: int, tier_weak: int, *, gamma: float, top_k: int = 0,
              prior: float = 1.0, chunk: int = 256) -> np.ndarray:
    """P(strong tier beats weak tier) for each query embedding (the whole algorithm, batch-first)."""
    out = np.empty(query_emb.shape[0], dtype=np.float64)
    if tier_strong == tier_weak:
        out.fill(0.5)
        return out
    train = np.asarray(train_emb, dtype=np.float32)
    for start in range(0, query_emb.shape[0], chunk):
        q = np.asarray(query_emb[start:start + chunk], dtype=np.float32)
        w = similarity_weights(q @ train.T, gamma, top_k)  # (b, N)
        xi = fit_bt_batched(w @ wins, w @ totals, n_tiers, prior)
        out[start:start + chunk] = 1.0 / (1.0 + np.exp(-(xi[:, tier_strong] - xi[:, tier_weak])))
    return out


class SWRankingRouter(EmbeddingRouter):
    """Similarity-weighted Bradley–Terry over model tiers, for one (strong, weak) pair."""

    name: ClassVar[str] = "sw_ranking"

    def __init__(self, artifact: Artifact, embedder: Embedder, strong_model: str | None = None,
                 weak_model: str | None = None, model_aliases: Mapping[str, str] | None = None,
                 gamma: float | None = None, top_k: int | None = None, prior: float | None = None):
        cfg = artifact.config
        self.artifact = artifact
        self.embedder = embedder
        self.model_tiers: dict[str, int] = {str(k): int(v) for k, v in cfg["model_tiers"].items()}
        self.n_tiers = int(cfg["n_tiers"])
        aliases = dict(cfg.get("model_aliases", {}))
        aliases.update(model_aliases or {})
        resolver = ModelResolver(list(self.model_tiers), aliases)
        self.strong_model = strong_model or cfg["strong_model"]
        self.weak_model = weak_model or cfg["weak_model"]
        self.tier_strong = self.model_tiers[resolver.resolve(self.strong_model, cfg["strong_model"])]
        self.tier_weak = self.model_tiers[resolver.resolve(self.weak_model, cfg["weak_model"])]
        if self.tier_strong == self.tier_weak:
            log.warning("%s and %s share tier %d: sw_ranking scores every prompt 0.5",
                        self.strong_model, self.weak_model, self.tier_strong)
        self.gamma = float(gamma if gamma is not None else cfg["gamma"])
        self.top_k = int(top_k if top_k is not None else cfg.get("top_k", 0))
        self.prior = float(prior if prior is not None else cfg.get("prior", 1.0))
        t = artifact.tensors
        self._train_emb = t["prompt_emb"].astype(np.float32)
        self._wins = t["wins"].astype(np.float64)
        self._totals = t["totals"].astype(np.float64)
        n_pairs = self.n_tiers * (self.n_tiers - 1) // 2
        if self._wins.shape != (self._train_emb.shape[0], n_pairs) or self._totals.shape != self._wins.shape:
            raise ArtifactError(f"{artifact.path}: sw_ranking tensors do not match {self.n_tiers} tiers")
        self._fingerprint = f"sw_ranking-{artifact.fingerprint}-{self.strong_model}-{self.weak_model}-" \
                            f"{self.gamma}-{self.top_k}-{self.prior}"

    @classmethod
    def load(cls, artifact_dir: Path | None, **overrides: Any) -> SWRankingRouter:
        """Overrides: ``strong_model``, ``weak_model``, ``model_aliases``, ``gamma``, ``top_k``, ``prior``,
        ``embedder`` (an Embedder), ``embedder_options`` (for :func:`make_embedder`)."""
        if artifact_dir is None:
            raise ArtifactError("the sw_ranking router needs a trained artifact")
        artifact = load_artifact(artifact_dir, expect_router=cls.name)
        embedder = embedder_for_artifact(artifact, overrides)
        return cls(artifact, embedder, strong_model=overrides.get("strong_model"),
                   weak_model=overrides.get("weak_model"), model_aliases=overrides.get("model_aliases"),
                   gamma=overrides.get("gamma"), top_k=overrides.get("top_k"), prior=overrides.get("prior"))

    def score_embeddings(self, emb: np.ndarray, prompts: Sequence[str] | None = None) -> np.ndarray:
        """P(strong wins) (the prompts are not needed) from precomputed prompt embeddings ``(n, D)``."""
        return sw_scores(emb, self._train_emb, self._wins, self._totals, self.n_tiers, self.tier_strong,
                         self.tier_weak, gamma=self.gamma, top_k=self.top_k, prior=self.prior)

    def training_embeddings(self) -> np.ndarray | None:
        """Unit embeddings of the training prompts the router weighs (for decontamination)."""
        return self._train_emb
