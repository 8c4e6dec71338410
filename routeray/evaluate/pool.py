"""``routeray eval --benchmark pool``: routing among N models, judged by its cost–quality curve against
every single model, random mixing of single models, the best two-model router and an oracle.

Each router predicts every pool model's correctness (:class:`~routeray.routers.pool.PoolScoring`); its
decision rule sees each model's *mean* cost per call over the evaluated prompts, standing in for the price
list a deployment knows (the threshold rule uses only their order); the curve's x is what the routed calls
actually cost (recorded, or priced). Figures are defined in :mod:`routeray.evaluate.pool_metrics`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routeray.errors import RouterayError
from routeray.evaluate.cache import ScoreCache, in_batches
from routeray.evaluate.contamination import THRESHOLD, Contamination, contaminated_mask, router_contamination
from routeray.evaluate.pool_data import PoolBenchmark, describe
from routeray.evaluate.pool_metrics import (
    Reference,
    best_pair,
    cost_rule_curve,
    mixing_points,
    summarise,
    threshold_curve,
)
from routeray.evaluate.runner import EmbeddingPass
from routeray.routers.base import Router
from routeray.routers.pool import DEFAULT_RULE, RULES, PoolScoring, as_pool_scorer

log = logging.getLogger(__name__)

CURVES = {"threshold": threshold_curve, "cost": cost_rule_curve}


def cached_quality(router: PoolScoring, bench: str, prompts: Sequence[str], models: Sequence[str],
                   cache: ScoreCache | None, label: str = "", progress: bool = True,
                   embeddings: Callable[[], np.ndarray] | None = None) -> np.ndarray:
    """``(n, N)`` predicted quality, one cache file per (router, trained model the pool model maps to).
    ``embeddings`` gives the prompts' embeddings in the router's space, for routers that score those."""
    cols = router.model_columns(models)
    base = getattr(router, "fingerprint", router.name)
    keys = [f"{base}|quality|{router.known_models[c]}" for c in cols]
    out = np.empty((len(prompts), len(models)))
    todo = []
    for j, key in enumerate(keys):
        hit = cache.get(key, bench, prompts) if cache is not None else None
        if hit is None:
            todo.append(j)
        else:
            out[:, j] = hit
    if todo:
        wanted = [models[j] for j in todo]
        from_embeddings = getattr(router, "quality_embeddings", None) if embeddings is not None else None
        emb = embeddings() if from_embeddings is not None and embeddings is not None else None

        def quality(start: int, chunk: list[str]) -> np.ndarray:
            if from_embeddings is not None:
                return from_embeddings(emb[start:start + len(chunk)], wanted, chunk)  # type: ignore[index]
            return router.model_quality(chunk, wanted)

        got = in_batches(quality, prompts, label or router.name, width=len(todo), progress=progress)
        for k, j in enumerate(todo):
            out[:, j] = got[:, k]
            if cache is not None:
                cache.put(keys[j], bench, prompts, got[:, k])
    return out


def evaluate_pool(bench: PoolBenchmark, routers: Mapping[str, Router], output: str | Path | None = None,
                  rule: str = DEFAULT_RULE, cache: ScoreCache | None = None, decontaminate: bool = True,
                  contamination_threshold: float = THRESHOLD, progress: bool = True) -> dict[str, Any]:
    """Evaluate each router on ``bench``'s pool; returns (and with ``output`` writes) the result."""
    if rule not in RULES:
        raise RouterayError(f"unknown pool decision rule {rule!r}; known: {', '.join(RULES)}")
    scorers = {name: as_pool_scorer(r, name) for name, r in routers.items() if name != "random"}
    if not scorers:
        raise RouterayError("pool evaluation needs at least one router that predicts each model's quality")
    embeddings = EmbeddingPass(bench.prompts, progress)
    predicted = {name: cached_quality(r, bench.name, bench.prompts, bench.models, cache, label=name,
                                      progress=progress, embeddings=lambda r=r: embeddings.of(r))  # type: ignore[misc]
                 for name, r in scorers.items()}
    found: list[Contamination] = []
    if decontaminate:
        for name in scorers:
            r = routers[name]
            c = router_contamination(r, bench.prompts, label=name, threshold=contamination_threshold,
                                     progress=progress, queries=embeddings.lazy(r))
            if c is not None:
                found.append(c)
    dropped = contaminated_mask(found, len(bench), bench.name)
    kept = bench.subset(~dropped)
    singles = describe(kept)
    prices = kept.cost.mean(axis=0)  # what each router's rule sees: mean US$ per call, the "price list"
    best_j = max(range(len(kept.models)), key=lambda j: (singles[kept.models[j]]["quality"], -prices[j]))
    cheap_j = int(np.argmin(prices))
    best, cheap = singles[kept.models[best_j]], singles[kept.models[cheap_j]]
    ref = Reference(cheap["usd_per_1k"], cheap["quality"], best["usd_per_1k"], best["quality"])
    curve = CURVES[rule]

    def run(pred: np.ndarray) -> dict[str, Any]:
        return summarise(curve(pred, prices, kept.quality, kept.cost), ref, kept.models)

    results: dict[str, Any] = {}
    for name, pred in predicted.items():
        pred = pred[~dropped]
        results[name] = {**run(pred), "two_model": best_pair(pred, prices, kept.quality, kept.cost, kept.models,
                                                             ref, curve)}
    result: dict[str, Any] = {
        "benchmark": bench.name,
        "mode": "pool",
        "rule": rule,
        "models": kept.models,
        "n_prompts": len(kept),
        "n_contaminated": int(dropped.sum()),
        "n_incomplete": bench.n_incomplete,
        "quality_unit": kept.quality_unit,
        "cost_source": kept.cost_source,
        "single_models": singles,
        "best_model": kept.models[best_j],
        "cheapest_model": kept.models[cheap_j],
        "routers": results,
        "random_mix": summarise(mixing_points(singles), ref, kept.models),
        "oracle": run(kept.quality),
        "contamination": {"threshold": contamination_threshold,
                          "by_router": {c.router: c.to_json() for c in found}},
        "sources": bench.sources,
    }
    if output is not None:
        write_pool_outputs(result, Path(output))
    return result


def write_pool_outputs(result: dict[str, Any], output: Path) -> tuple[Path, Path]:
    """``<output>/<name>.json`` and the plot ``<output>/<name>.png``."""
    from routeray.evaluate.plot import plot_pool
    from routeray.evaluate.runner import _json_default

    output.mkdir(parents=True, exist_ok=True)
    json_path = output / f"{result['benchmark']}.json"
    json_path.write_text(json.dumps(result, indent=2, default=_json_default, allow_nan=False) + "\n")
    png_path = plot_pool(result, output / f"{result['benchmark']}.png")
    log.info("results written to %s and %s", json_path, png_path)
    return json_path, png_path


def pool_summary(result: dict[str, Any]) -> str:
    """A plain-text table for the terminal."""
    best = result["best_model"]
    b = result["single_models"][best]
    lines = [f"{result['benchmark']}: {result['n_prompts']} prompts ({result['n_contaminated']} dropped as "
             f"contaminated), {len(result['models'])} models, rule {result['rule']}; best single model {best} "
             f"{b['quality']:.3f} at ${b['usd_per_1k']:.3f} per 1k prompts",
             f"{'router':<34}{'area':>7}{'q@10%':>8}{'q@25%':>8}{'q@50%':>8}{'q@100%':>8}{'cost to 95%':>13}"]

    def row(name: str, r: dict[str, Any]) -> str:
        at = r["quality_at_spend"]
        reach = r["cost_to_95pct"]["pct_of_best_cost"]
        area = "n/a" if r["area"] is None else f"{r['area']:.3f}"
        return (f"{name:<34}{area:>7}" + "".join(f"{100 * at[k]['share_of_best']:>7.1f}%" for k in ("10", "25", "50", "100"))
                + f"{'never' if reach is None else f'{reach:.1f}%':>13}")

    for name, r in result["routers"].items():
        lines.append(row(f"{name} (N-way)", r))
        pair = r["two_model"]
        lines.append(row(f"{name} best pair", pair) + f"  [{' | '.join(pair['pair'])}]")
    lines.append(row("random mix of single models", result["random_mix"]))
    lines.append(row("oracle (answer key, same rule)", result["oracle"]))
    lines.append("q@x%: share of the best model's quality at x % of its cost; cost to 95%: spend, in % of the "
                 "best model's cost, to reach 95 % of its quality")
    return "\n".join(lines)
