"""The Router contract every router implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from routeray.encoders.base import Embedder


def sigmoid(z: Any) -> np.ndarray:
    """``1 / (1 + e^-z)`` in float64, ``z`` clipped to ±50 so it never overflows."""
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(z, dtype=np.float64), -50, 50)))


def logit(p: Any) -> np.ndarray:
    """The inverse of :func:`sigmoid` for scores in [0, 1], clipped to [1e-9, 1 − 1e-9] so 0 and 1 stay finite."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1.0 - 1e-9)
    return np.log(p / (1.0 - p))


def goes_strong(scores: Any, threshold: float) -> Any:
    """The decision rule, in one place: a score at or above the threshold goes to the strong model.
    Elementwise on arrays (a bool array), a bool for one score."""
    return np.asarray(scores) >= threshold


class Router(ABC):
    """Predicts, for each prompt, the probability that the strong model's answer beats the weak one's.

    Implementers:
    - set ``name`` (the registry key, e.g. ``"mf"``);
    - implement :meth:`score` batch-first: one call scores a whole list, returning a float array of the
      same length with every value in [0, 1], deterministic for a fixed artifact;
    - implement :meth:`load` to build the router from an artifact directory (safetensors + JSON, see
      :mod:`routeray.artifacts`); routers without learned state may ignore the path;
    - do no network I/O and no heavy work at import time or in ``__init__`` beyond what ``load`` asks.

    The threshold decision is shared by every path (:func:`goes_strong`): ``score >= threshold`` routes
    to the strong model.
    """

    name: ClassVar[str]
    # The rerouting guard load_router wraps this router in unless told otherwise (routeray.routers.guard).
    # Off: the guard is opt-in (guard= in load_router, or `guard` in a router's config overrides): the mode
    # that holds gadgets at both ends (spans) costs about twice the scoring CPU (docs/serving.md).
    guard: ClassVar[str] = "off"

    @abstractmethod
    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """Return P(strong wins) for each prompt, as a float array of shape ``(len(prompts),)`` in [0, 1]."""

    @classmethod
    @abstractmethod
    def load(cls, artifact_dir: Path | None, **overrides: Any) -> Router:
        """Build the router from an artifact directory (``None``: a router with no learned state)."""

    def route(self, prompts: Sequence[str], threshold: float) -> np.ndarray:
        """True where a prompt goes to the strong model: its score is at or above ``threshold``."""
        return np.asarray(goes_strong(self.score(prompts), threshold))

    def training_embeddings(self) -> np.ndarray | None:
        """Optional: unit-length embeddings ``(n, dim)`` of the prompts this router was trained on, in the
        space of ``self.embedder`` (MiniLM when a router has none), so evaluations can drop benchmark
        prompts that are near-copies of training prompts. ``None`` (the default) means unknown."""
        return None

    @property
    def fingerprint(self) -> str:
        """Identifies the learned state (used to key score caches); routers with an artifact override it."""
        return self.name


class EmbeddingRouter(Router):
    """A router that scores prompt embeddings (mf, sw_ranking, knn). Implementers set ``self.embedder`` and
    ``self._fingerprint`` when built and implement :meth:`score_embeddings`; :meth:`score` embeds each batch
    with one ``embedder.embed`` call and scores the embeddings, and evaluation can score cached embeddings
    directly."""

    embedder: Embedder
    _fingerprint: str

    @abstractmethod
    def score_embeddings(self, emb: np.ndarray, prompts: Sequence[str] | None = None) -> np.ndarray:
        """P(strong wins) from precomputed prompt embeddings ``(n, D)`` in ``self.embedder``'s space; ``prompts``
        (the same ``n`` texts) for routers that also read the text, ignored by the others."""

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        if len(prompts) == 0:
            return np.zeros(0, dtype=np.float64)
        return self.score_embeddings(self.embedder.embed(list(prompts)), prompts)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint
