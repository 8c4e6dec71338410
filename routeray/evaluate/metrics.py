"""The RouteLLM paper's routing metrics (arXiv 2406.18665, section 5): the call–performance curve, PGR,
APGR, CPT(x%), the random baseline with its interval, and the oracle.

Conventions:

- ``scores[i]`` is a router's P(strong wins) for prompt ``i``; the prompt goes to the strong model when
  ``score >= threshold``. Sweeping the threshold from above the highest score down to the lowest moves
  the share of strong calls from 0 % to 100 %.
- ``strong_quality[i]`` / ``weak_quality[i]`` are what each model scores on prompt ``i`` (1/0 for right/
  wrong, or a judge's grade). A benchmark's quality is the mean over prompts of the routed model's value.
- Prompts with equal scores cannot be separated by any threshold. Between the two thresholds that bound
  a tie group the curve is the straight line joining them: the *expected* quality when the tie is broken
  at random, which makes the curve deterministic and independent of the prompts' order.
- The curve is therefore piecewise linear with breakpoints at the tie-group boundaries; APGR is its exact
  area (``n_points=None``) or, like RouteLLM's ``evals`` (trapezoids over ten quantile thresholds), the
  trapezoid rule on a fixed grid of strong-call percentages.
- Percentages (``strong_pct``, CPT) are 0–100; PGR and APGR are fractions (1.0 = the strong model's
  quality gain in full).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_N_POINTS = 101  # 0, 1, …, 100 % strong calls
CI_LEVEL = 0.95

ArrayLike = Sequence[float] | np.ndarray


def _as_arrays(scores: ArrayLike | None, strong_quality: ArrayLike,
               weak_quality: ArrayLike) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    sq = np.asarray(strong_quality, dtype=np.float64).reshape(-1)
    wq = np.asarray(weak_quality, dtype=np.float64).reshape(-1)
    if sq.shape != wq.shape:
        raise ValueError(f"strong_quality has {sq.size} values but weak_quality has {wq.size}")
    if sq.size == 0:
        raise ValueError("no prompts to evaluate")
    if not (np.isfinite(sq).all() and np.isfinite(wq).all()):
        raise ValueError("quality values must be finite numbers")
    if scores is None:
        return None, sq, wq
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.shape != sq.shape:
        raise ValueError(f"{s.size} scores for {sq.size} prompts")
    if not np.isfinite(s).all():
        raise ValueError("router scores must be finite numbers")
    return s, sq, wq


def curve_breakpoints(scores: ArrayLike, strong_quality: ArrayLike,
                      weak_quality: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The exact curve: strong-call percentages (0–100) and qualities at every tie-group boundary.

    Point ``j`` is what the threshold equal to the ``j``-th highest distinct score gives; point 0 routes
    nothing to the strong model. The curve between points is linear (see the module docstring).
    """
    s, sq, wq = _as_arrays(scores, strong_quality, weak_quality)
    assert s is not None
    n = s.size
    gap = sq - wq
    # Distinct scores, highest first, and how much each tie group adds when it switches to strong.
    uniq, inverse = np.unique(-s, return_inverse=True)
    group_gain = np.bincount(inverse, weights=gap, minlength=uniq.size)
    group_size = np.bincount(inverse, minlength=uniq.size)
    calls = np.concatenate([[0], np.cumsum(group_size)])
    quality = (wq.sum() + np.concatenate([[0.0], np.cumsum(group_gain)])) / n
    return calls * 100.0 / n, quality


def call_performance_curve(scores: ArrayLike, strong_quality: ArrayLike, weak_quality: ArrayLike,
                           n_points: int | None = DEFAULT_N_POINTS) -> list[tuple[float, float]]:
    """``(strong_pct, quality)`` pairs as the threshold sweeps from routing nothing to the strong model
    (0 %) to routing everything (100 %).

    With ``n_points`` the curve is sampled on an even grid of strong-call percentages (0 to 100 inclusive),
    so curves of different routers share their x values; with ``None`` the exact breakpoints are returned.
    """
    pct, quality = curve_breakpoints(scores, strong_quality, weak_quality)
    if n_points is None:
        return [(float(x), float(y)) for x, y in zip(pct, quality, strict=True)]
    if n_points < 2:
        raise ValueError(f"n_points must be at least 2, got {n_points}")
    grid = np.linspace(0.0, 100.0, n_points)
    return [(float(x), float(y)) for x, y in zip(grid, np.interp(grid, pct, quality), strict=True)]


def pgr(quality: float | np.ndarray, strong_score: float, weak_score: float) -> float | np.ndarray:
    """Performance gap recovered: ``(quality - weak) / (strong - weak)``; NaN when the two models tie."""
    gap = float(strong_score) - float(weak_score)
    if gap == 0.0:
        log.warning("strong and weak models score the same (%.4g): PGR is undefined", strong_score)
        return np.full_like(np.asarray(quality, dtype=np.float64), np.nan) if np.ndim(quality) else math.nan
    out = (np.asarray(quality, dtype=np.float64) - float(weak_score)) / gap
    return out if np.ndim(quality) else float(out)


def _pgr_curve(scores: ArrayLike, strong_quality: ArrayLike, weak_quality: ArrayLike,
               n_points: int | None) -> tuple[np.ndarray, np.ndarray]:
    _, sq, wq = _as_arrays(None, strong_quality, weak_quality)
    points = np.asarray(call_performance_curve(scores, sq, wq, n_points=n_points))
    return points[:, 0], np.asarray(pgr(points[:, 1], sq.mean(), wq.mean()))


def apgr(scores: ArrayLike, strong_quality: ArrayLike, weak_quality: ArrayLike,
         n_points: int | None = None) -> float:
    """Average performance gap recovered: the area under PGR against the strong-call share (0 to 1).

    ``n_points=None`` integrates the piecewise-linear curve exactly; an integer uses the trapezoid rule on
    that many evenly spaced strong-call percentages (RouteLLM's evals use 11 points, from deciles).
    """
    pct, p = _pgr_curve(scores, strong_quality, weak_quality, n_points)
    return float(np.trapezoid(p, pct / 100.0))


def cpt(scores: ArrayLike, strong_quality: ArrayLike, weak_quality: ArrayLike, pgr_target: float) -> float:
    """Call-performance threshold: the smallest strong-call percentage (0–100) at which PGR reaches
    ``pgr_target`` (e.g. 0.5 for CPT(50%)), on the exact piecewise-linear curve. NaN if PGR is undefined."""
    if not 0.0 <= pgr_target <= 1.0:
        raise ValueError(f"pgr_target must be in [0, 1], got {pgr_target}")
    pct, p = _pgr_curve(scores, strong_quality, weak_quality, None)
    if np.isnan(p).any():
        return math.nan
    reached = np.flatnonzero(p >= pgr_target - 1e-12)
    i = int(reached[0])  # PGR is exactly 1 at 100 %, so some point reaches any target <= 1
    if i == 0:
        return 0.0
    x0, x1, p0, p1 = pct[i - 1], pct[i], p[i - 1], p[i]
    return float(min(x1, x0 + (pgr_target - p0) / (p1 - p0) * (x1 - x0)))


def oracle_scores(strong_quality: ArrayLike, weak_quality: ArrayLike) -> np.ndarray:
    """Scores of the optimal router: the true per-prompt gain of the strong model (not in [0, 1])."""
    _, sq, wq = _as_arrays(None, strong_quality, weak_quality)
    return sq - wq


def oracle_curve(strong_quality: ArrayLike, weak_quality: ArrayLike,
                 n_points: int | None = DEFAULT_N_POINTS) -> list[tuple[float, float]]:
    """The best quality reachable with each share of strong calls: send the prompts the strong model
    gains most on first. No router's curve lies above it."""
    return call_performance_curve(oracle_scores(strong_quality, weak_quality), strong_quality, weak_quality,
                                  n_points=n_points)


@dataclass
class RouterResult:
    """A router's metrics on one benchmark, in the units of the output contract."""

    apgr: float
    cpt50: float
    cpt80: float
    curve: list[tuple[float, float]]

    def to_json(self) -> dict[str, Any]:
        return {"apgr": _finite(self.apgr), "cpt50": _finite(self.cpt50), "cpt80": _finite(self.cpt80),
                "curve": [{"strong_pct": x, "score": y} for x, y in self.curve]}


def evaluate_scores(scores: ArrayLike, strong_quality: ArrayLike, weak_quality: ArrayLike,
                    n_points: int | None = DEFAULT_N_POINTS) -> RouterResult:
    """APGR, CPT(50%), CPT(80%) and the sampled curve of one router."""
    return RouterResult(
        apgr=apgr(scores, strong_quality, weak_quality),
        cpt50=cpt(scores, strong_quality, weak_quality, 0.5),
        cpt80=cpt(scores, strong_quality, weak_quality, 0.8),
        curve=call_performance_curve(scores, strong_quality, weak_quality, n_points=n_points),
    )


@dataclass
class RandomBaseline:
    """The random router over many seeds: the mean of each metric and its central 95 % interval (the
    spread of a single random router's result, i.e. where a router that learned nothing lands)."""

    n_seeds: int
    apgr: float
    apgr_ci: tuple[float, float]
    cpt50: float
    cpt50_ci: tuple[float, float]
    cpt80: float
    cpt80_ci: tuple[float, float]
    curve: list[tuple[float, float]]
    curve_lo: list[float] = field(default_factory=list)
    curve_hi: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = RouterResult(self.apgr, self.cpt50, self.cpt80, self.curve).to_json()
        out.update({"n_seeds": self.n_seeds, "ci_level": CI_LEVEL,
                    "apgr_ci": [_finite(v) for v in self.apgr_ci],
                    "cpt50_ci": [_finite(v) for v in self.cpt50_ci],
                    "cpt80_ci": [_finite(v) for v in self.cpt80_ci],
                    "curve_lo": self.curve_lo, "curve_hi": self.curve_hi})
        return out


def random_baseline(strong_quality: ArrayLike, weak_quality: ArrayLike, n_seeds: int = 100,
                    scores_for_seed: Callable[[int], np.ndarray] | None = None,
                    n_points: int | None = DEFAULT_N_POINTS) -> RandomBaseline:
    """Evaluate the random router with seeds ``0 … n_seeds-1`` and summarise.

    ``scores_for_seed(seed)`` gives that seed's scores (e.g. ``RandomRouter(seed).score(prompts)``);
    by default independent uniform draws from NumPy's generator seeded with ``seed``.
    """
    if n_seeds < 1:
        raise ValueError(f"n_seeds must be at least 1, got {n_seeds}")
    _, sq, wq = _as_arrays(None, strong_quality, weak_quality)
    if scores_for_seed is None:
        def scores_for_seed(seed: int) -> np.ndarray:
            return np.random.default_rng(seed).random(sq.size)
    results = [evaluate_scores(scores_for_seed(seed), sq, wq, n_points=n_points) for seed in range(n_seeds)]
    lo_q, hi_q = 100 * (1 - CI_LEVEL) / 2, 100 * (1 + CI_LEVEL) / 2

    def summary(values: list[float]) -> tuple[float, tuple[float, float]]:
        arr = np.asarray(values, dtype=np.float64)
        if np.isnan(arr).all():
            return math.nan, (math.nan, math.nan)
        return float(np.nanmean(arr)), (float(np.nanpercentile(arr, lo_q)), float(np.nanpercentile(arr, hi_q)))

    curves = np.asarray([[y for _, y in r.curve] for r in results])
    xs = [x for x, _ in results[0].curve]
    a, a_ci = summary([r.apgr for r in results])
    c5, c5_ci = summary([r.cpt50 for r in results])
    c8, c8_ci = summary([r.cpt80 for r in results])
    if n_points is None:  # exact breakpoints differ per seed: no pointwise band
        mean_curve, lo, hi = results[0].curve, [], []
    else:
        mean_curve = [(x, float(y)) for x, y in zip(xs, curves.mean(axis=0), strict=True)]
        lo = [float(v) for v in np.percentile(curves, lo_q, axis=0)]
        hi = [float(v) for v in np.percentile(curves, hi_q, axis=0)]
    return RandomBaseline(n_seeds, a, a_ci, c5, c5_ci, c8, c8_ci, mean_curve, lo, hi)


def _finite(value: float) -> float | None:
    """JSON has no NaN: undefined metrics become null."""
    return None if value is None or not math.isfinite(value) else float(value)
