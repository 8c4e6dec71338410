"""Matrix-factorisation router (RouteLLM paper, section 4.1.2), trained on per-model correctness.

A model ``m`` answering prompt ``q`` gets the paper's score ``s(m, q) = w2ᵀ (v_m ⊙ (W1ᵀ e_q + b))`` with a
learned unit vector ``v_m`` per model, a projection ``W1, b`` of the frozen prompt embedding ``e_q`` and a
classifier ``w2``. The trainer (:mod:`routeray.train.mf`) fits ``P(m answers q correctly) = σ(s(m, q) + b_m)``
on every model's golden labels, and pairwise judgments as Bradley–Terry on ``s`` differences.

The router scores ``P(strong wins) + ½ P(tie) = (1 + p_s − p_w) / 2`` with ``p_m = σ(s(m, q) + b_m)``
(``route_on: correctness``, the default), or ``σ(s(strong, q) − s(weak, q))`` (``route_on: score``, the
paper's rule). On the 12 leave-one-source-out folds (docs/evaluation.md) the two rank equally with the final
recipe (mean APGR 0.558 vs 0.560, the same 5 folds above random) and the correctness rule ranked better with
every AdamW variant tried (0.527–0.537 vs 0.507–0.517); it is the default because it is a probability of
the event routed on, with ties counted half. ``s(m, q)`` is linear in ``e_q`` for a fixed model, so scoring
a batch is one ``(n, D) @ (D, 2)`` product after the embedding.

An artifact may also read the prompt's structure (:mod:`routeray.routers.prompt_features`): as input
dimensions beside the embedding (``prompt_features``, ``feature_scale``) and as a shift of the routing score
on the logit scale (``route_boost``, :class:`~routeray.routers.prompt_features.ScoreBoost`), both selected on
held-out folds by the trainer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routeray.artifacts import Artifact, load_artifact
from routeray.data.models import canonical_model
from routeray.encoders.base import Embedder
from routeray.encoders.registry import embedder_for_artifact
from routeray.errors import ArtifactError, RouterayError
from routeray.routers.base import EmbeddingRouter, sigmoid
from routeray.routers.pool import PoolScoring
from routeray.routers.prompt_features import FeatureInput, ScoreBoost, structure_features

log = logging.getLogger(__name__)

# config["mf_format"] of artifacts this code reads: 2 = per-model correctness (tensor ``model_bias``, key
# ``route_on``). Format 1 artifacts (no key) learned only "strong beats weak" and are refused.
MF_FORMAT = 2
ROUTING_RULES = ("correctness", "score")


class ModelResolver:
    """Maps any model name to one the artifact knows, by configuration, never raising a KeyError.

    Order: the name itself, its canonical spelling, ``model_aliases`` (artifact config, then overrides),
    a case-insensitive match, and finally the artifact's trained strong or weak model (with a warning),
    so an unseen strong model is treated like the strongest trained one and likewise for weak.
    """

    def __init__(self, known: Sequence[str], aliases: Mapping[str, str] | None = None):
        self.known = list(known)
        self._pos = {m: i for i, m in enumerate(self.known)}
        self._lower = {m.lower(): m for m in self.known}
        self.aliases = {str(k): str(v) for k, v in (aliases or {}).items()}

    def find(self, name: str) -> str | None:
        """The known model ``name`` maps to (itself, canonical spelling, alias, case-insensitive), or None."""
        for candidate in self._candidates(name):
            if candidate in self._pos:
                return candidate
            if candidate.lower() in self._lower:
                return self._lower[candidate.lower()]
        return None

    def resolve(self, name: str, fallback: str) -> str:
        found = self.find(name)
        if found is not None:
            return found
        log.warning("model %r is unknown to this router and has no alias; treating it as %r", name, fallback)
        return fallback

    def _candidates(self, name: str) -> list[str]:
        out = [name, canonical_model(name)]
        for c in list(out):
            if c in self.aliases:
                target = self.aliases[c]
                out.extend([target, canonical_model(target)])
        return out

    def index(self, name: str, fallback: str) -> int:
        return self._pos[self.resolve(name, fallback)]


def quantise_unit_rows(emb: np.ndarray) -> np.ndarray:
    """Unit rows as int8 (x127): cosine error about 0.005, a quarter of float32's size."""
    return np.clip(np.rint(np.asarray(emb, dtype=np.float32) * 127.0), -127, 127).astype(np.int8)


def mf_linear(proj_weight: Any, proj_bias: Any, model_emb: Any, classifier: Any) -> tuple[Any, Any]:
    """The paper's MF score as a linear map of the prompt embedding: ``(U, C)`` with
    ``s(m, q) = e_q @ U[:, m] + C[m]`` for every model ``m``, i.e. ``w2ᵀ (v_m ⊙ (W1ᵀ e_q + b))``.

    The one place the formula is written: serving and evaluation call it on the artifact's numpy tensors,
    training on its torch parameters (both array types have ``@``, ``*`` and ``.T``). Shapes: ``proj_weight``
    ``(D, d)``, ``proj_bias`` ``(d,)``, ``model_emb`` ``(M, d)`` unit rows, ``classifier`` ``(d,)``."""
    v = model_emb * classifier  # (M, d)
    return proj_weight @ v.T, proj_bias @ v.T  # (D, M), (M,)


def pair_scorer(tensors: Mapping[str, np.ndarray], i_strong: int, i_weak: int,
                route_on: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(U, C, rule)``: ``emb @ U + C`` gives the (strong, weak) correctness logits (``correctness``) or
    their MF scores (``score``), for :func:`route_scores`."""
    if route_on not in ROUTING_RULES:
        raise ArtifactError(f"mf route_on must be one of {ROUTING_RULES}, got {route_on!r}")
    t = {k: np.asarray(tensors[k], dtype=np.float64) for k in ("proj_weight", "proj_bias", "model_emb", "classifier")}
    u, c = mf_linear(t["proj_weight"], t["proj_bias"], t["model_emb"][[i_strong, i_weak]], t["classifier"])
    if route_on == "correctness":
        c = c + np.asarray(tensors["model_bias"], dtype=np.float64)[[i_strong, i_weak]]
    return u, c, route_on


def route_scores(emb: np.ndarray, scorer: tuple[np.ndarray, np.ndarray, str]) -> np.ndarray:
    """P(strong wins) for embeddings ``(n, D)`` under one :func:`pair_scorer`."""
    u, c, rule = scorer
    z = np.asarray(emb, dtype=np.float64) @ u + c  # (n, 2)
    if rule == "correctness":
        p = sigmoid(z)
        return (1.0 + p[:, 0] - p[:, 1]) / 2.0
    return sigmoid(z[:, 0] - z[:, 1])


def quality_scorer(tensors: Mapping[str, np.ndarray], columns: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(U, C)``: ``σ(emb @ U + C)`` is each listed model's P(correct), ``(n, len(columns))``."""
    t = {k: np.asarray(tensors[k], dtype=np.float64) for k in ("proj_weight", "proj_bias", "model_emb", "classifier")}
    cols = list(columns)
    u, c = mf_linear(t["proj_weight"], t["proj_bias"], t["model_emb"][cols], t["classifier"])
    return u, c + np.asarray(tensors["model_bias"], dtype=np.float64)[cols]


class MFRouter(PoolScoring, EmbeddingRouter):
    """Scores prompts with a trained matrix-factorisation model for one (strong, weak) pair, or the
    predicted correctness of every model of a pool (:meth:`model_quality`)."""

    name: ClassVar[str] = "mf"

    def __init__(self, artifact: Artifact, embedder: Embedder, strong_model: str | None = None,
                 weak_model: str | None = None, model_aliases: Mapping[str, str] | None = None):
        cfg = artifact.config
        if cfg.get("mf_format") != MF_FORMAT:
            raise ArtifactError(
                f"{artifact.path}: mf artifact format {cfg.get('mf_format', 1)!r}, this routeray reads format "
                f"{MF_FORMAT} (per-model correctness); retrain it with `routeray train mf`")
        self.artifact = artifact
        self.embedder = embedder
        self.models: list[str] = list(cfg["models"])
        aliases = dict(cfg.get("model_aliases", {}))
        aliases.update(model_aliases or {})
        self.resolver = ModelResolver(self.models, aliases)
        trained_strong, trained_weak = cfg["strong_model"], cfg["weak_model"]
        self.strong_model = strong_model or trained_strong
        self.weak_model = weak_model or trained_weak
        i_s = self.resolver.index(self.strong_model, trained_strong)
        i_w = self.resolver.index(self.weak_model, trained_weak)
        self.route_on = str(cfg.get("route_on", "correctness"))
        self._scorer = pair_scorer(artifact.tensors, i_s, i_w, self.route_on)
        self.features = FeatureInput.from_artifact(cfg, artifact.tensors)
        self.boost = ScoreBoost.from_artifact(cfg, artifact.tensors)
        self._fingerprint = f"mf-{artifact.fingerprint}-{self.strong_model}-{self.weak_model}"

    @classmethod
    def load(cls, artifact_dir: Path | None, **overrides: Any) -> MFRouter:
        """Overrides: ``strong_model``, ``weak_model``, ``model_aliases``, ``embedder`` (an Embedder),
        ``embedder_options`` (for :func:`make_embedder`)."""
        if artifact_dir is None:
            raise ArtifactError("the mf router needs a trained artifact")
        artifact = load_artifact(artifact_dir, expect_router=cls.name)
        embedder = embedder_for_artifact(artifact, overrides)
        return cls(artifact, embedder, strong_model=overrides.get("strong_model"),
                   weak_model=overrides.get("weak_model"), model_aliases=overrides.get("model_aliases"))

    def _structure(self, prompts: Sequence[str] | None) -> np.ndarray | None:
        """The prompts' structure features when the artifact reads them (``prompt_features`` as input,
        ``route_boost`` on the score), in which case the prompts are needed; None otherwise."""
        if self.features is None and self.boost is None:
            return None
        if prompts is None:
            raise RouterayError("this mf artifact also reads each prompt's structure (prompt_features, "
                                "route_boost): score_embeddings needs the prompts too")
        return structure_features(prompts)

    def inputs(self, emb: np.ndarray, prompts: Sequence[str] | None, structure: np.ndarray | None = None
               ) -> np.ndarray:
        """The MF input rows: the embeddings, plus the prompts' structure features when the artifact was
        trained with them (``prompt_features``), in which case the prompts are needed."""
        if self.features is None:
            return emb
        if structure is None:
            structure = self._structure(prompts)
        assert prompts is not None
        return self.features.append(emb, prompts, structure)

    def score_embeddings(self, emb: np.ndarray, prompts: Sequence[str] | None = None) -> np.ndarray:
        """P(strong wins) from precomputed prompt embeddings ``(n, D)`` (and the prompts, see :meth:`inputs`),
        moved by the artifact's ``route_boost`` when it has one."""
        structure = self._structure(prompts)
        scores = route_scores(self.inputs(emb, prompts, structure), self._scorer)
        if self.boost is None:
            return scores
        assert prompts is not None and structure is not None
        return self.boost.apply(scores, prompts, structure)

    def quality_embeddings(self, emb: np.ndarray, models: Sequence[str],
                           prompts: Sequence[str] | None = None) -> np.ndarray:
        """Each pool model's P(correct) from precomputed prompt embeddings ``(n, D)`` (and the prompts)."""
        return self._quality_of(self.inputs(emb, prompts), self.model_columns(models))

    def _quality(self, prompts: list[str], columns: list[int]) -> np.ndarray:
        return self._quality_of(self.inputs(self.embedder.embed(prompts), prompts), columns)

    def _quality_of(self, emb: np.ndarray, columns: list[int]) -> np.ndarray:
        u, c = quality_scorer(self.artifact.tensors, columns)
        return sigmoid(np.asarray(emb, dtype=np.float64) @ u + c)

    def training_embeddings(self) -> np.ndarray | None:
        """Unit embeddings of the training prompts (kept int8-quantised in the artifact), for decontamination."""
        q = self.artifact.tensors.get("train_prompt_emb_q8")
        if q is None:
            return None
        emb = q.astype(np.float32)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
