"""Model strength: Bradley-Terry ratings on the Elo scale, and tiers that group models of like strength.

SW ranking and matrix factorisation route between *tiers*, so models that are never compared directly
(e.g. gpt-4o on MMLU-Pro vs gpt-4-1106-preview on AlpacaEval) still get a place on one scale.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from routeray.data.models import canonical_model
from routeray.data.schema import Judgment

logger = logging.getLogger(__name__)

ELO_SCALE = 400.0 / math.log(10.0)  # rating points per logit: P(A wins) = 1 / (1 + 10^((R_B - R_A) / 400))
ELO_CENTER = 1000.0


def fit_ratings(judgments: Iterable[Judgment], l2: float = 1e-2, max_iter: int = 100,
                tol: float = 1e-6) -> dict[str, float]:
    """Bradley-Terry maximum likelihood ratings on the Elo scale (mean 1000).

    Each judgment counts ``weight`` times, as ``p_a`` of a win for A and ``1 - p_a`` for B (so ties are
    half-wins and soft preferences count fractionally). A small L2 penalty (``l2``, in logit units)
    keeps ratings finite for models that always win or always lose. Solved by Newton's method.
    """
    index: dict[str, int] = {}
    rows: list[tuple[int, int, float, float]] = []
    for j in judgments:
        if j.weight <= 0:
            continue
        a = index.setdefault(j.model_a, len(index))
        b = index.setdefault(j.model_b, len(index))
        if a != b:
            rows.append((a, b, j.weight * j.p_a, j.weight))
    n = len(index)
    if n == 0:
        return {}
    wins = np.zeros((n, n))  # wins[i, j]: weighted wins of i over j
    games = np.zeros((n, n))
    for a, b, w_a, w in rows:
        wins[a, b] += w_a
        wins[b, a] += w - w_a
        games[a, b] += w
        games[b, a] += w
    r = _newton(wins, games, l2, max_iter, tol)
    r = r * ELO_SCALE
    r += ELO_CENTER - r.mean()
    names = sorted(index, key=lambda m: index[m])
    return {name: float(r[i]) for i, name in enumerate(names)}


def _newton(wins: np.ndarray, games: np.ndarray, l2: float, max_iter: int, tol: float) -> np.ndarray:
    n = wins.shape[0]
    r = np.zeros(n)
    for it in range(max_iter):
        p = 1.0 / (1.0 + np.exp(r[None, :] - r[:, None]))  # p[i, j] = P(i beats j)
        grad = (wins - games * p).sum(axis=1) - l2 * r  # d log-likelihood / d r
        v = games * p * (1.0 - p)
        # The likelihood ignores a common shift of all ratings; a tiny ridge keeps the system solvable
        # when l2 is 0, and re-centring pins the shift.
        ridge = max(l2, 1e-9 * (1.0 + float(v.sum(axis=1).max())))
        hess = -np.diag(v.sum(axis=1)) + v - ridge * np.eye(n)
        step = np.linalg.solve(hess, grad)
        r = r - step
        r -= r.mean()
        if np.max(np.abs(step)) < tol:
            logger.debug("Bradley-Terry converged in %d Newton steps", it + 1)
            break
    else:
        logger.warning("Bradley-Terry did not converge in %d Newton steps", max_iter)
    return r


def assign_tiers(ratings: Mapping[str, float], n_tiers: int) -> dict[str, int]:
    """Partition models into ``n_tiers`` contiguous rating groups with the least within-tier variance
    (sum of squared deviations), by dynamic programming. Tier 0 holds the strongest models."""
    if n_tiers < 1:
        raise ValueError(f"n_tiers must be at least 1, got {n_tiers}")
    names = sorted(ratings, key=lambda m: (-ratings[m], m))
    if not names:
        return {}
    x = np.array([ratings[m] for m in names], dtype=float)
    n, k = len(x), min(n_tiers, len(names))
    c1 = np.concatenate([[0.0], np.cumsum(x)])
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])

    def sse(i: int, j: int) -> float:  # cost of x[i:j] as one tier
        s, m = c1[j] - c1[i], j - i
        return float(c2[j] - c2[i] - s * s / m)

    cost = np.full((k + 1, n + 1), np.inf)
    cut = np.zeros((k + 1, n + 1), dtype=int)
    cost[0, 0] = 0.0
    for t in range(1, k + 1):
        for j in range(t, n + 1):
            for i in range(t - 1, j):
                c = cost[t - 1, i] + sse(i, j)
                if c < cost[t, j] - 1e-12:
                    cost[t, j], cut[t, j] = c, i
    tiers: dict[str, int] = {}
    j = n
    for t in range(k, 0, -1):
        i = cut[t, j]
        for m in names[i:j]:
            tiers[m] = t - 1
        j = i
    return tiers


@dataclass
class TierMap:
    """Which tier each model is in, with a configured answer for models never seen in training.

    ``aliases`` maps an unseen model to a known one (``{"gpt-4o": "gpt-4-1106-preview"}``);
    otherwise an unseen model gets ``default_tier`` (by default the middle tier). Never raises KeyError.
    """

    tiers: dict[str, int]
    ratings: dict[str, float] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    default_tier: int | None = None

    @property
    def n_tiers(self) -> int:
        return max(self.tiers.values(), default=-1) + 1

    def resolve(self, model: str) -> str | None:
        """The known model that stands for ``model`` (itself, its canonical name, or its alias)."""
        for name in (model, canonical_model(model)):
            if name in self.tiers:
                return name
            target = self.aliases.get(name)
            if target is not None:
                target = canonical_model(target)
                if target in self.tiers:
                    return target
        return None

    def tier_of(self, model: str) -> int:
        """The tier of ``model``; an unknown model falls back to its alias or to ``default_tier``."""
        known = self.resolve(model)
        if known is not None:
            return self.tiers[known]
        tier = self.default_tier if self.default_tier is not None else self.n_tiers // 2
        logger.warning("model %r is not in the tier map and has no alias; using tier %d", model, tier)
        return tier

    def models_in(self, tier: int) -> list[str]:
        """Known models in one tier, strongest first."""
        members = [m for m, t in self.tiers.items() if t == tier]
        return sorted(members, key=lambda m: (-self.ratings.get(m, 0.0), m))

    def to_dict(self) -> dict[str, Any]:
        return {"tiers": dict(self.tiers), "ratings": dict(self.ratings), "aliases": dict(self.aliases),
                "default_tier": self.default_tier}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TierMap:
        return cls(tiers={k: int(v) for k, v in d["tiers"].items()},
                   ratings={k: float(v) for k, v in d.get("ratings", {}).items()},
                   aliases=dict(d.get("aliases", {})), default_tier=d.get("default_tier"))


def fit_tier_map(judgments: Iterable[Judgment], n_tiers: int, aliases: Mapping[str, str] | None = None,
                 default_tier: int | None = None) -> TierMap:
    """Ratings by :func:`fit_ratings`, tiers by :func:`assign_tiers`, bundled as a :class:`TierMap`."""
    ratings = fit_ratings(judgments)
    return TierMap(tiers=assign_tiers(ratings, n_tiers), ratings=ratings, aliases=dict(aliases or {}),
                   default_tier=default_tier)
