"""One evaluation: score every router on a benchmark, decontaminate, compute the paper's metrics against
the random baseline and the oracle, and write ``<output>/<benchmark>.json`` and ``.png``."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from routeray.evaluate.benchmarks import Benchmark
from routeray.evaluate.cache import ScoreCache, cached_scores
from routeray.evaluate.contamination import (
    THRESHOLD,
    Contamination,
    contaminated_mask,
    query_embedder,
    reference_contamination,
    router_contamination,
    training_embeddings,
    write_contaminated,
)
from routeray.evaluate.cost import Prices, cost_table
from routeray.evaluate.metrics import DEFAULT_N_POINTS, evaluate_scores, oracle_scores, random_baseline
from routeray.routers.base import Router
from routeray.routers.random import RandomRouter

log = logging.getLogger(__name__)

# Zero-training baselines every evaluation adds beside ``random``: a learned router that does not beat them
# has not earned its cost (QUALITY.md). Each router's result says whether it does (``vs_length``, ``vs_knn``).
BASELINES = ("length", "knn")


def evaluate_benchmark(bench: Benchmark, routers: Mapping[str, Router], output: str | Path | None = None,
                       num_random_seeds: int = 100, prices: Prices | None = None,
                       cache: ScoreCache | None = None, decontaminate: bool = True,
                       contamination_threshold: float = THRESHOLD, n_points: int = DEFAULT_N_POINTS,
                       train_prompts: list[str] | None = None, progress: bool = True,
                       auto_baselines: tuple[str, ...] = ()) -> dict[str, Any]:
    """Evaluate ``routers`` (name → router; ``random`` is always added as the baseline) on ``bench``.

    Every router is judged on the same prompts: those no router's training data contaminates. A router's
    training prompts come from its :meth:`Router.training_embeddings`; ``train_prompts`` stands in for
    routers that do not say (e.g. the data folder they are known to be trained on). Returns the result
    dictionary of the output contract, and writes it (plus the plot) when ``output`` is given.
    ``auto_baselines``: routers added by the evaluation rather than asked for; one trained on most of the
    benchmark's prompts is left out (listed in ``baselines_skipped``) instead of contaminating them all.
    """
    learned = {name: r for name, r in routers.items() if name != "random"}
    embeddings = EmbeddingPass(bench.prompts, progress)
    scores = benchmark_scores(bench, learned, cache, embeddings, progress)

    found: list[Contamination] = []
    skipped: dict[str, str] = {}
    if decontaminate:
        for name, r in list(learned.items()):
            c = router_contamination(r, bench.prompts, label=name, threshold=contamination_threshold,
                                     progress=progress, queries=embeddings.lazy(r))
            if c is not None and name in auto_baselines and c.n_contaminated > len(bench) // 2:
                # a baseline the user did not ask for, trained on this very benchmark: leave it out rather
                # than drop most of the benchmark for every router
                skipped[name] = f"trained on {c.n_contaminated} of the {len(bench)} prompts"
                log.warning("baseline %s left out: %s", name, skipped[name])
                del learned[name], scores[name]
            elif c is not None:
                found.append(c)
        if train_prompts is not None:
            found.append(reference_contamination(bench.prompts, train_prompts, threshold=contamination_threshold,
                                                 label="given training prompts", progress=progress))
    dropped = contaminated_mask(found, len(bench), bench.name)
    kept = bench.subset(~dropped)
    kept_scores = {name: s[~dropped] for name, s in scores.items()}
    sq, wq = kept.strong_quality, kept.weak_quality

    results: dict[str, Any] = {}
    for name, s in kept_scores.items():
        results[name] = evaluate_scores(s, sq, wq, n_points=n_points).to_json()
    baseline = random_baseline(sq, wq, n_seeds=num_random_seeds, n_points=n_points,
                               scores_for_seed=lambda seed: RandomRouter(seed=seed).score(kept.prompts))
    results["random"] = baseline.to_json()
    for name, r in results.items():
        if name != "random" and r["apgr"] is not None and baseline.apgr_ci[0] is not None:
            lo, hi = baseline.apgr_ci
            r["vs_random"] = "above" if r["apgr"] > hi else "below" if r["apgr"] < lo else "within"
    for base in BASELINES:
        b = results.get(base, {}).get("apgr")
        for name, r in results.items():
            if name not in (base, "random") and b is not None and r["apgr"] is not None:
                r[f"vs_{base}"] = "above" if r["apgr"] > b else "below" if r["apgr"] < b else "equal"
    oracle = evaluate_scores(oracle_scores(sq, wq), sq, wq, n_points=n_points).to_json()

    cpts = {name: {50: r["cpt50"], 80: r["cpt80"]} for name, r in results.items()}
    result: dict[str, Any] = {
        "benchmark": bench.name,
        "strong_model": bench.strong_model,
        "weak_model": bench.weak_model,
        "strong_score": kept.strong_score,
        "weak_score": kept.weak_score,
        "n_prompts": len(kept),
        "n_contaminated": int(bench.n_listed_contaminated + dropped.sum()),
        "routers": results,
        "quality_unit": bench.quality_unit,
        "oracle": oracle,
        "contamination": {
            "threshold": contamination_threshold,
            "listed_in_data": bench.n_listed_contaminated,
            "by_router": {c.router: c.to_json() for c in found},
            "unknown_for": [] if train_prompts is not None else sorted(set(learned) - {c.router for c in found}),
            "given_training_prompts": None if train_prompts is None else len(set(train_prompts)),
        },
        "cost": cost_table(kept, cpts, prices),
        "sources": bench.sources,
        "baselines_skipped": skipped,
    }
    if output is not None:
        write_outputs(result, Path(output), bench, found)
    return result


class EmbeddingPass:
    """The benchmark's prompts embedded once per embedder, through the on-disk embedding cache, and shared:
    a router that scores embeddings (mf, sw_ranking) scores these, and decontamination compares the same
    vectors with the router's training prompts."""

    def __init__(self, prompts: list[str], progress: bool = True):
        self.prompts = prompts
        self.progress = progress
        self._done: dict[str, np.ndarray] = {}

    def of(self, router: Router) -> np.ndarray:
        """The prompts' embeddings in ``router``'s space (its embedder, else MiniLM)."""
        from routeray.encoders.cache import EmbeddingCache

        embedder = query_embedder(router)
        key = json.dumps(embedder.spec, sort_keys=True)
        if key not in self._done:
            self._done[key] = EmbeddingCache(embedder).embed(self.prompts, progress=self.progress,
                                                             desc=f"embedding with {embedder.spec.get('model')}")
        return self._done[key]

    def lazy(self, router: Router) -> np.ndarray | None:
        """The embeddings when the router has training embeddings to compare with (else nothing to embed)."""
        return self.of(router) if training_embeddings(router) is not None else None


def benchmark_scores(bench: Benchmark, routers: Mapping[str, Router], cache: ScoreCache | None,
                     embeddings: EmbeddingPass, progress: bool = True) -> dict[str, np.ndarray]:
    """Every router's scores on the benchmark (from the score cache when there), through the evaluation's
    one embedding pass for routers that score embeddings."""
    pair = (bench.strong_model, bench.weak_model)
    return {name: cached_scores(r, bench.name, bench.prompts, cache, label=name, progress=progress, pair=pair,
                                embeddings=lambda r=r: embeddings.of(r))  # type: ignore[misc]
            for name, r in routers.items()}


def write_outputs(result: dict[str, Any], output: Path, bench: Benchmark | None = None,
                  found: list[Contamination] | None = None) -> tuple[Path, Path]:
    """Write ``<output>/<benchmark>.json`` and the plot beside it (plus the contaminated prompts found)."""
    from routeray.evaluate.plot import plot_result

    output.mkdir(parents=True, exist_ok=True)
    json_path = output / f"{result['benchmark']}.json"
    json_path.write_text(json.dumps(result, indent=2, default=_json_default, allow_nan=False) + "\n")
    png_path = plot_result(result, output / f"{result['benchmark']}.png")
    if bench is not None and found and any(c.n_contaminated for c in found):
        n = write_contaminated(output / f"{result['benchmark']}_contaminated_prompts.jsonl",
                               bench.prompts, bench.ids, found)
        log.info("%d contaminated prompts listed in %s", n, output)
    log.info("results written to %s and %s", json_path, png_path)
    return json_path, png_path


def summary_table(result: dict[str, Any]) -> str:
    """A plain-text table of APGR / CPT(50%) / CPT(80%) per router, for the terminal."""
    rnd = result["routers"]["random"]
    lines = [f"{result['benchmark']}: {result['n_prompts']} prompts ({result['n_contaminated']} dropped), "
             f"{result['strong_model']} {result['strong_score']:.3f} vs {result['weak_model']} "
             f"{result['weak_score']:.3f}",
             f"{'router':<14}{'APGR':>8}{'CPT(50%)':>10}{'CPT(80%)':>10}  beats random / length / knn"]

    def fmt(v: float | None, pct: bool = False) -> str:
        return "n/a" if v is None else (f"{v:.1f}%" if pct else f"{v:.3f}")

    for name, r in result["routers"].items():
        verdict = " / ".join(_beats(r.get(k)) for k in ("vs_random", "vs_length", "vs_knn"))
        lines.append(f"{name:<14}{fmt(r['apgr']):>8}{fmt(r['cpt50'], True):>10}{fmt(r['cpt80'], True):>10}  "
                     f"{verdict if name != 'random' else ''}")
    lo, hi = rnd.get("apgr_ci", [None, None])
    if lo is not None:
        lines.append(f"random APGR 95% interval over {rnd['n_seeds']} seeds: [{lo:.3f}, {hi:.3f}]")
    o = result["oracle"]
    lines.append(f"{'oracle':<14}{fmt(o['apgr']):>8}{fmt(o['cpt50'], True):>10}{fmt(o['cpt80'], True):>10}")
    return "\n".join(lines)


def _beats(verdict: str | None) -> str:
    """``above`` -> ``yes``; ``within``/``equal`` -> ``tie``; ``below`` -> ``no``; missing -> ``-``."""
    return {"above": "yes", "below": "no", "within": "tie", "equal": "tie"}.get(verdict or "", "-")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        value = obj.item()
        return None if isinstance(value, float) and not math.isfinite(value) else value
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
