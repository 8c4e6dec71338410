"""Build the similarity-weighted ranking router: model tiers from Bradley–Terry ratings, per-prompt tier-pair
statistics, and γ / top-k chosen on validation APGR."""

from __future__ import annotations

import copy
import itertools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from routeray.artifacts import Artifact, fingerprint_texts, save_artifact
from routeray.data.schema import PreferenceData
from routeray.train.common import (
    DEFAULT_STRONG,
    DEFAULT_WEAK,
    JudgmentTable,
    all_judgments,
    build_table,
    embed_texts,
    evaluate_sets,
    golden_eval_sets,
    merge_config,
    seed_everything,
)

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "strong_model": DEFAULT_STRONG,
    "weak_model": DEFAULT_WEAK,
    "embedder": None,
    "model_aliases": {"gpt-4o": "gpt-4o-2024-05-13", "gpt-4": "gpt-4-0314", "gpt-3.5": "gpt-3.5-turbo-1106"},
    "val_fraction": 0.1,
    "balance": "prompt",
    "source_weights": {},
    "n_tiers": 10,
    "gamma": 10.0,
    "top_k": 0,
    "prior": 1.0,
    # keeps the artifact small: at most this many training prompts per source group (0: all)
    "max_prompts_per_source": 1500,
    "refit_full": True,
    "grid": {"gamma": [10.0, 1e3, 1e6], "top_k": [0, 200]},
}


def tier_statistics(table: JudgmentTable, model_tiers: dict[str, int], n_tiers: int) -> tuple[np.ndarray,
                                                                                               np.ndarray]:
    """Per prompt and tier pair ``(i < j)``: weighted wins of tier i over j, and weighted comparisons."""
    from routeray.routers.sw_ranking import tier_pairs

    ii, jj = tier_pairs(n_tiers)
    column = np.full((n_tiers, n_tiers), -1, dtype=np.int64)
    column[ii, jj] = np.arange(ii.size)
    tiers = np.asarray([model_tiers[m] for m in table.models], dtype=np.int64)
    ta, tb = tiers[table.a_idx], tiers[table.b_idx]
    keep = ta != tb  # a comparison inside one tier says nothing about tiers
    lo, hi = np.minimum(ta, tb)[keep], np.maximum(ta, tb)[keep]
    p_lo = np.where(ta[keep] < tb[keep], table.p_a[keep], 1.0 - table.p_a[keep]).astype(np.float64)
    w = table.weight[keep].astype(np.float64)
    rows, cols = table.prompt_idx[keep], column[lo, hi]
    wins = np.zeros((len(table.prompts), ii.size))
    totals = np.zeros_like(wins)
    np.add.at(wins, (rows, cols), w * p_lo)
    np.add.at(totals, (rows, cols), w)
    return wins, totals


def cap_per_source(data: PreferenceData, cap: int, seed: int) -> PreferenceData:
    """At most ``cap`` prompts per source group (all records of a kept prompt stay)."""
    from routeray.train.common import source_group

    if cap <= 0:
        return data
    by_group: dict[str, set[str]] = {}
    for source, prompt in [(r.source, r.prompt) for r in data.judgments] + [(g.source, g.prompt)
                                                                            for g in data.golden]:
        by_group.setdefault(source_group(source), set()).add(prompt)
    rng = np.random.default_rng(seed)
    keep: set[str] = set()
    for group in sorted(by_group):
        prompts = sorted(by_group[group])
        if len(prompts) > cap:
            prompts = [prompts[i] for i in rng.choice(len(prompts), cap, replace=False)]
        keep.update(prompts)
    return PreferenceData(judgments=[j for j in data.judgments if j.prompt in keep],
                          golden=[g for g in data.golden if g.prompt in keep])


def _build(data: PreferenceData, cfg: dict[str, Any]) -> dict[str, Any]:
    """Tiers and per-prompt statistics of one training set."""
    from routeray.data.tiers import assign_tiers, fit_ratings

    judgments = all_judgments(data)
    ratings = fit_ratings(judgments)
    model_tiers = assign_tiers(ratings, int(cfg["n_tiers"]))
    n_tiers = max(model_tiers.values()) + 1
    table = build_table(judgments, balance=cfg["balance"], source_weights=cfg["source_weights"])
    wins, totals = tier_statistics(table, model_tiers, n_tiers)
    used = totals.sum(axis=1) > 0
    prompts = [p for p, u in zip(table.prompts, used, strict=True) if u]
    return {"ratings": ratings, "model_tiers": model_tiers, "n_tiers": n_tiers, "prompts": prompts,
            "wins": wins[used], "totals": totals[used], "n_judgments": len(table)}


def train(data: PreferenceData, out_dir: Path, *, seed: int = 0, config: dict[str, Any] | None = None,
          progress: bool = True) -> Artifact:
    """Train, select γ and top-k on validation APGR, write the artifact to ``out_dir`` and return it."""
    from tqdm.auto import tqdm

    from routeray.data import split_by_prompt
    from routeray.routers.mf import ModelResolver
    from routeray.routers.sw_ranking import sw_scores

    t0 = time.perf_counter()
    cfg = merge_config(DEFAULTS, config, "sw_ranking")
    seed_everything(seed)
    train_data, val_data = split_by_prompt(data, float(cfg["val_fraction"]), seed)
    cap = int(cfg["max_prompts_per_source"])
    built = _build(cap_per_source(train_data, cap, seed), cfg)
    final = _build(cap_per_source(data, cap, seed), cfg) if cfg["refit_full"] else built
    eval_sets = golden_eval_sets(val_data.golden, cfg["strong_model"], cfg["weak_model"])

    texts = list(dict.fromkeys(final["prompts"] + built["prompts"] + [p for es in eval_sets for p in es.prompts]))
    emb_all, spec = embed_texts(texts, cfg["embedder"], progress=progress)
    row = {t: i for i, t in enumerate(texts)}

    def rows(prompts: list[str]) -> np.ndarray:
        return emb_all[[row[p] for p in prompts]]

    train_emb = rows(built["prompts"]).astype(np.float16).astype(np.float32)  # what the artifact keeps
    resolver = ModelResolver(list(built["model_tiers"]), cfg["model_aliases"])

    def scorer(params: dict[str, Any]) -> Any:
        def score(prompts: list[str], strong: str, weak: str) -> np.ndarray:
            ts = built["model_tiers"][resolver.resolve(strong, cfg["strong_model"])]
            tw = built["model_tiers"][resolver.resolve(weak, cfg["weak_model"])]
            return sw_scores(rows(prompts), train_emb, built["wins"], built["totals"], built["n_tiers"], ts, tw,
                             gamma=float(params["gamma"]), top_k=int(params["top_k"]),
                             prior=float(params["prior"]))
        return score

    grid = cfg.get("grid") or {}
    keys = sorted(grid)
    combos = [dict(zip(keys, v, strict=True)) for v in itertools.product(*(grid[k] for k in keys))] or [{}]
    results: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any], dict[str, Any]] | None = None
    for combo in tqdm(combos, desc="sw_ranking grid", disable=not progress):
        val = evaluate_sets(scorer({**cfg, **combo}), eval_sets)
        results.append({**combo, "val_mean_apgr": val["mean_apgr"]})
        log.info("sw_ranking %s: val APGR %.3f", combo, val["mean_apgr"])
        key = val["mean_apgr"] if np.isfinite(val["mean_apgr"]) else -np.inf
        if best is None or key > best[0]:
            best = (key, combo, val)
    assert best is not None
    _, combo, val = best

    artifact_cfg = {k: v for k, v in cfg.items() if k not in ("grid", "embedder")}
    artifact_cfg.update(combo)
    artifact_cfg.update({"model_tiers": final["model_tiers"], "n_tiers": final["n_tiers"],
                         "ratings": final["ratings"], "sources": data.sources})
    tensors = {
        "prompt_emb": rows(final["prompts"]).astype(np.float16),
        "wins": final["wins"].astype(np.float32),
        "totals": final["totals"].astype(np.float32),
    }
    report = {
        "router": "sw_ranking",
        "n_train_prompts": len(built["prompts"]),
        "n_val_prompts": len(val_data.prompts),
        "n_train_judgments": built["n_judgments"],
        "n_artifact_prompts": len(final["prompts"]),
        "n_tiers": final["n_tiers"],
        "chosen": combo,
        "grid": results,
        "validation": val,
        "refit_full": bool(cfg["refit_full"]),
        "seed": seed,
        "seconds": time.perf_counter() - t0,
    }
    artifact = Artifact(router="sw_ranking", config=artifact_cfg, tensors=tensors, embedder=spec,
                        data_fingerprint=fingerprint_texts(final["prompts"], {"n_judgments": final["n_judgments"]}),
                        report=copy.deepcopy(report))
    save_artifact(artifact, out_dir)
    return artifact
