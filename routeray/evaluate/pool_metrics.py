"""Cost–quality curves for routing among N models, and the figures read off them.

A curve is a list of operating points ``(US$ per 1,000 prompts, mean quality)``, one per threshold. What
a curve *offers* at a budget ``x`` is its frontier: the best quality among its points costing at most
``x``, with straight lines between neighbouring frontier points (splitting traffic between two thresholds
gets any mix of the two); below the curve's cheapest point the cheapest pool model answers alone.

- **Area** (APGR over the cost axis): the mean of PGR(x) = (quality − q_cheapest) / (q_best − q_cheapest)
  for budgets x from the cheapest model's cost to the best single model's cost, on a linear US$ axis
  (``q_best``: the single model with the highest quality; ``q_cheapest``: the cheapest model's quality).
  Routing at random between the cheapest and the best model scores 0.5.
- **Share of the best model's quality at a spend**: frontier quality / q_best at x = 10, 25, 50, 100 % of the
  best model's cost.
- **Cost to reach 95 %**: the smallest budget whose frontier quality is ≥ 0.95 · q_best.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from routeray.routers.pool import choose, choose_by_cost, switch_points

SPEND_SHARES = (10, 25, 50, 100)  # % of the best single model's cost
QUALITY_TARGET = 0.95
MAX_THRESHOLDS = 512
MAX_CURVE_POINTS = 200  # kept in the JSON (the figures use every point)


@dataclass
class Reference:
    """The anchors every curve is measured against."""

    cheapest_cost: float  # US$ per 1,000 prompts
    cheapest_quality: float
    best_cost: float
    best_quality: float


def operating_point(choice: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> tuple[float, float]:
    """``(US$ per 1,000 prompts, mean quality)`` when prompt ``i`` goes to pool model ``choice[i]``."""
    rows = np.arange(quality.shape[0])
    return float(1000 * cost[rows, choice].mean()), float(quality[rows, choice].mean())


def _grid(values: np.ndarray, extra: Sequence[float]) -> np.ndarray:
    """At most MAX_THRESHOLDS distinct finite values spread over ``values``' quantiles, plus ``extra``."""
    v = np.unique(values[np.isfinite(values)])
    if v.size > MAX_THRESHOLDS:
        v = np.unique(np.quantile(v, np.linspace(0, 1, MAX_THRESHOLDS)))
    return np.unique(np.concatenate([v, np.asarray(extra, dtype=np.float64)]))


def threshold_curve(predicted: np.ndarray, prices: np.ndarray, quality: np.ndarray,
                    cost: np.ndarray) -> list[dict[str, Any]]:
    """Operating points of the threshold rule as the threshold sweeps every value where a decision changes
    (sampled at most MAX_THRESHOLDS times), from the priciest model everywhere to the cheapest."""
    points = switch_points(predicted, prices)
    grid = _grid(points, [0.0, 1.0 + 1e-9])
    grid = np.concatenate([grid, np.nextafter(grid, np.inf)])  # each side of every switch
    return [_point(choose(predicted, prices, float(t), rule="threshold"), quality, cost, threshold=float(t))
            for t in np.unique(grid)]


def cost_rule_curve(predicted: np.ndarray, prices: np.ndarray, quality: np.ndarray,
                    cost: np.ndarray) -> list[dict[str, Any]]:
    """Operating points of the quality-minus-λ·cost rule over λ at every pairwise switch value (sampled)."""
    c = np.asarray(prices, dtype=np.float64)
    span = float(c.max() - c.min()) or 1.0
    scaled = (c - c.min()) / span
    dq = predicted[:, :, None] - predicted[:, None, :]
    dc = scaled[:, None] - scaled[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        switches = np.where(dc[None] > 0, dq / dc[None], np.nan)
    lams = _grid(switches.reshape(-1), [-1e9, 0.0, 1e9])
    lams = np.concatenate([lams, np.nextafter(lams, np.inf)])
    return [_point(choose_by_cost(predicted, prices, float(lam)), quality, cost, lam=float(lam))
            for lam in np.unique(lams)]


def _point(choice: np.ndarray, quality: np.ndarray, cost: np.ndarray, **param: float) -> dict[str, Any]:
    usd, q = operating_point(choice, quality, cost)
    counts = np.bincount(choice, minlength=quality.shape[1])
    return {"usd_per_1k": usd, "quality": q, **param, "shares": (counts / choice.size).tolist()}


def frontier(points: Sequence[tuple[float, float]], ref: Reference) -> tuple[np.ndarray, np.ndarray]:
    """The best quality at each spend: cost-sorted points (plus the cheapest model alone) with a running max."""
    pts = sorted([(ref.cheapest_cost, ref.cheapest_quality), *points])
    xs = np.asarray([p[0] for p in pts])
    ys = np.maximum.accumulate(np.asarray([p[1] for p in pts]))
    keep = np.concatenate([[True], ys[1:] > ys[:-1]])  # drop points a cheaper one already matches
    return xs[keep], ys[keep]


def quality_at(front: tuple[np.ndarray, np.ndarray], spend: float | np.ndarray) -> float | np.ndarray:
    """Frontier quality at ``spend`` (US$ per 1,000 prompts; below the first point, the cheapest model's)."""
    xs, ys = front
    out = np.interp(spend, xs, ys)
    return float(out) if np.ndim(out) == 0 else out


def cost_to_reach(front: tuple[np.ndarray, np.ndarray], target: float) -> float:
    """The smallest spend at which the frontier reaches quality ``target`` (inf when it never does)."""
    xs, ys = front
    hit = np.flatnonzero(ys >= target - 1e-12)
    if hit.size == 0:
        return math.inf
    i = int(hit[0])
    if i == 0:
        return float(xs[0])
    return float(xs[i - 1] + (target - ys[i - 1]) / (ys[i] - ys[i - 1]) * (xs[i] - xs[i - 1]))


def area(front: tuple[np.ndarray, np.ndarray], ref: Reference, n: int = 2001) -> float | None:
    """Mean PGR over budgets from the cheapest model's cost to the best model's (see the module docstring)."""
    gap = ref.best_quality - ref.cheapest_quality
    if gap <= 0 or ref.best_cost <= ref.cheapest_cost:
        return None  # the cheapest model is also the best (or costs as much): nothing to route
    xs = np.linspace(ref.cheapest_cost, ref.best_cost, n)
    ys = np.asarray(quality_at(front, xs))
    return float(np.trapezoid((ys - ref.cheapest_quality) / gap, xs) / (ref.best_cost - ref.cheapest_cost))


def summarise(points: list[dict[str, Any]], ref: Reference, models: list[str]) -> dict[str, Any]:
    """Area, share of the best model's quality at set spends, cost to reach 95 %, and the curve."""
    front = frontier([(p["usd_per_1k"], p["quality"]) for p in points], ref)
    at_spend = {}
    for pct in SPEND_SHARES:
        x = ref.best_cost * pct / 100
        q = float(quality_at(front, x))
        at_spend[str(pct)] = {"usd_per_1k": x, "quality": q, "share_of_best": q / ref.best_quality}
    target = QUALITY_TARGET * ref.best_quality
    need = cost_to_reach(front, target)
    reach: dict[str, Any] = {"quality": target, "usd_per_1k": None, "pct_of_best_cost": None, "shares": None}
    if math.isfinite(need):
        reach.update(usd_per_1k=need, pct_of_best_cost=100 * need / ref.best_cost)
        # the traffic split of the cheapest operating point that reaches the target
        ok = [p for p in points if p["quality"] >= target - 1e-12 and "shares" in p]
        if ok:
            best = min(ok, key=lambda p: p["usd_per_1k"])
            reach["shares"] = {m: s for m, s in zip(models, best["shares"], strict=True) if s > 0}
    return {"area": area(front, ref), "quality_at_spend": at_spend, "cost_to_95pct": reach,
            "curve": pareto(points)}


def pareto(points: list[dict[str, Any]], limit: int = MAX_CURVE_POINTS) -> list[dict[str, Any]]:
    """The points no cheaper-or-equal point beats on quality, cheapest first (what the frontier joins),
    thinned evenly to at most ``limit`` (both ends kept)."""
    out: list[dict[str, Any]] = []
    for p in sorted(points, key=lambda p: (p["usd_per_1k"], -p["quality"])):
        if not out or p["quality"] > out[-1]["quality"]:
            out.append(p)
    if len(out) > limit:
        out = [out[i] for i in np.unique(np.linspace(0, len(out) - 1, limit).round().astype(int))]
    return out


def mixing_points(singles: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Random routing among single models: every model alone (the frontier joins them, i.e. any mix)."""
    return [{"usd_per_1k": v["usd_per_1k"], "quality": v["quality"], "model": m} for m, v in singles.items()]


def best_pair(predicted: np.ndarray, prices: np.ndarray, quality: np.ndarray, cost: np.ndarray,
              models: list[str], ref: Reference,
              curve: Callable[..., list[dict[str, Any]]] = threshold_curve) -> dict[str, Any]:
    """The two-model router (the same predictions, restricted to two pool models) with the largest area,
    over every pair; also each pair's area."""
    areas: dict[str, float | None] = {}
    best: tuple[float, dict[str, Any], tuple[int, int]] | None = None
    for a in range(len(models)):
        for b in range(a + 1, len(models)):
            cols = [a, b]
            pts = curve(predicted[:, cols], prices[cols], quality[:, cols], cost[:, cols])
            for p in pts:  # shares over the whole pool, for a uniform JSON
                full = [0.0] * len(models)
                full[a], full[b] = p["shares"]
                p["shares"] = full
            summary = summarise(pts, ref, models)
            areas[f"{models[a]} | {models[b]}"] = summary["area"]
            score = summary["area"] if summary["area"] is not None else -math.inf
            if best is None or score > best[0]:
                best = (score, summary, (a, b))
    assert best is not None
    _, summary, (a, b) = best
    return {"pair": [models[a], models[b]], **summary, "pair_areas": areas}
