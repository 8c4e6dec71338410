"""Routing decisions, shared by the gateway and the SDK: model-name parsing, thresholds, percentage
routing over a live score window, and the live strong-call share."""

from __future__ import annotations

import math
import random
import re
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from routeray.config import Tier
from routeray.gateway.protocol import APIError
from routeray.routers.base import goes_strong
from routeray.routers.pool import DEFAULT_RULE, choose, pool_score

_ROUTER_NAME = re.compile(r"^router-(?P<router>[A-Za-z0-9_.]+?)-(?P<value>.+?)(?P<pct>%)?$")


@dataclass(frozen=True)
class Target:
    """What a request's ``model`` asks for: a fixed tier, or a router with a threshold or a strong share."""

    tier: Tier | None = None
    router: str | None = None
    threshold: float | None = None
    strong_percent: float | None = None

    @property
    def routed(self) -> bool:
        return self.router is not None


def parse_model_name(model: str, routers: Iterable[str], tier_names: dict[str, Tier]) -> Target:
    """Parse ``router-<router>-<threshold>``, ``router-<router>-<p>%`` or a tier name.

    ``tier_names`` maps accepted tier aliases (``strong``, ``weak`` and the backends' names) to tiers.
    Raises :class:`APIError` (400, param ``model``) naming what is accepted.
    """
    if model in tier_names:
        return Target(tier=tier_names[model])
    known = sorted(routers)
    m = _ROUTER_NAME.match(model)
    if not m:
        raise APIError(
            f"unknown model {model!r}: use router-<router>-<threshold> (routers: {', '.join(known)}), "
            f"router-<router>-<percent>%, or one of the tiers {', '.join(sorted(tier_names))}",
            param="model", code="model_not_found",
        )
    router, raw, pct = m.group("router"), m.group("value"), m.group("pct")
    if router not in known:
        raise APIError(f"unknown router {router!r} in model {model!r}; routers served: {', '.join(known)}",
                       param="model", code="model_not_found")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if pct:
        if not (math.isfinite(value) and 0.0 <= value <= 100.0):
            raise APIError(f"strong-call percentage {raw!r} in model {model!r} must be within [0, 100]",
                           param="model", code="invalid_threshold")
        return Target(router=router, strong_percent=value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise APIError(f"threshold {raw!r} in model {model!r} must be a number within [0, 1]",
                       param="model", code="invalid_threshold")
    return Target(router=router, threshold=value)


def decide(score: float, threshold: float) -> Tier:
    """The tier for one score: :func:`routeray.routers.base.goes_strong` decides."""
    return "strong" if goes_strong(score, threshold) else "weak"


class ScoreWindow:
    """Recent scores of one router; turns a target strong share p into the threshold that sends a share
    p of the recent traffic to the strong model (the (1 - p) quantile), so the share holds as traffic drifts."""

    def __init__(self, size: int, min_samples: int, seed: int = 0):
        self._scores: deque[float] = deque(maxlen=size)
        self._min = min_samples
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def add(self, score: float) -> None:
        with self._lock:
            self._scores.append(float(score))

    def __len__(self) -> int:
        return len(self._scores)

    def threshold(self, percent: float) -> float | None:
        """The threshold a strong share of ``percent`` % gets now (None while the window is too short)."""
        p = percent / 100.0
        with self._lock:
            if len(self._scores) < self._min:
                return None if 0.0 < p < 1.0 else (0.0 if p >= 1.0 else math.inf)
            window = np.fromiter(self._scores, dtype=np.float64)
        return 0.0 if p >= 1.0 else math.inf if p <= 0.0 else float(np.quantile(window, 1.0 - p, method="higher"))

    def decide(self, score: float, percent: float) -> tuple[Tier, float | None]:
        """Tier for ``score`` at a strong share of ``percent`` %, and the threshold used (None while the
        window is too short to trust: then a seeded draw at p keeps the share right)."""
        p = percent / 100.0
        with self._lock:
            enough = len(self._scores) >= self._min
            window = np.fromiter(self._scores, dtype=np.float64) if enough else None
        if p >= 1.0:
            return "strong", 0.0
        if p <= 0.0:
            return "weak", math.inf
        if window is None:
            return ("strong" if self._rng.random() < p else "weak"), None
        threshold = float(np.quantile(window, 1.0 - p, method="higher"))
        # ties at the quantile would send every tied score strong; strictly above keeps the share at p
        tier: Tier = "strong" if score > threshold or (score == threshold and self._rng.random() < p) else "weak"
        return tier, threshold


class ShareTracker:
    """Live share of strong decisions (with a pool: of models other than the cheapest) over the last N
    decisions of one router."""

    def __init__(self, size: int):
        self._window: deque[int] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, up: bool) -> float:
        with self._lock:
            self._window.append(1 if up else 0)
            return sum(self._window) / len(self._window)

    def share(self) -> tuple[float | None, int]:
        """The strong share now (None before any decision) and how many decisions it covers."""
        with self._lock:
            n = len(self._window)
            return (sum(self._window) / n if n else None), n


class PoolDecider:
    """Decisions among a pool of priced models (``routeray.routers.pool``): ``keys`` cheapest first, each
    model's price per typical call, and the pool rule."""

    def __init__(self, keys: list[Tier], call_prices: list[float], rule: str = DEFAULT_RULE):
        self.keys = keys
        self.prices = np.asarray(call_prices, dtype=np.float64)
        self.rule = rule

    def score(self, quality: Sequence[float]) -> float:
        """The prompt's pool score: a threshold at or below it sends it past the cheapest model."""
        return float(pool_score(self._row(quality), self.prices, rule=self.rule)[0])

    def pick(self, quality: Sequence[float], threshold: float) -> Tier:
        """The model the rule picks at ``threshold``."""
        return self.keys[int(choose(self._row(quality), self.prices, threshold, rule=self.rule)[0])]

    def by_percent(self, quality: Sequence[float], window: ScoreWindow, percent: float) -> tuple[Tier, float | None]:
        """``router-<name>-<p>%``: p % of traffic past the cheapest model. The window turns p into the
        threshold on pool scores; a prompt sent past the cheapest goes where the rule puts it at that
        threshold (0 while the window is short: then never the cheapest)."""
        up, threshold = window.decide(self.score(quality), percent)
        if up == "weak":
            return self.keys[0], threshold
        return self.pick(quality, 0.0 if threshold is None else threshold), threshold

    def _row(self, quality: Sequence[float]) -> np.ndarray:
        q = np.asarray(quality, dtype=np.float64).reshape(1, -1)
        if q.shape[1] != len(self.keys) or not np.isfinite(q).all() or (q < 0).any() or (q > 1).any():
            raise ValueError(f"expected {len(self.keys)} qualities in [0, 1], got {list(quality)!r}")
        return q
