"""Build the similarity-weighted ranking router: model tiers from Bradley–Terry ratings, per-prompt tier-pair
statistics, and γ / top-k chosen on leave-one-source-out folds.

Selection on held-out sources, not on a random prompt split (which rewards knowing a prompt's source,
bench/quality_probe.md), is what moved this router: it picks a smooth similarity weighting (γ ≈ 3–30, no
top-k) where the mixed validation split had picked γ = 1000 with the 200 nearest prompts.

``golden_as`` says how golden labels enter. ``pairs`` (default): every pair of models labelled on a prompt
is a game (ties when both are right or both wrong). ``reference``: each label is a game of its model
against an answer key of its own tier, won with probability ``score``, so each tier's coefficient is its
similarity-weighted correctness on the log-odds scale (the analogue of mf's per-model correctness);
``both``: the two together. Measured on the 12 leave-one-source-out folds of ../shared/data (docs/evaluation.md):
``pairs`` 0.552 mean APGR, ``both`` 0.549, ``reference`` 0.541 at γ = 3 — the ties do not hurt here.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routeray.artifacts import Artifact, fingerprint_texts, save_artifact
from routeray.data.schema import Judgment, PreferenceData
from routeray.errors import DataError, RouterayError
from routeray.train import common
from routeray.train.common import JudgmentTable, ScoreFn, all_judgments, build_table

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    **common.PAIR_DEFAULTS,
    "balance": "prompt",
    "source_weights": {},
    "n_tiers": 10,
    "gamma": 10.0,
    "top_k": 0,
    "prior": 1.0,
    "golden_as": "pairs",
    # keeps the artifact small: at most this many training prompts per source group (0: all)
    "max_prompts_per_source": 1500,
    # leave-one-source-out folds for selection: "auto" (every source with enough golden prompts) or a list
    "selection_holdouts": "auto",
    "min_holdout_prompts": 200,
    "grid": {"gamma": [3.0, 10.0, 30.0]},
}

GOLDEN_MODES = ("reference", "pairs", "both")
REFERENCE = "<answer key>"  # the pseudo-model golden labels are games against (golden_as: reference)


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


def reference_games(data: PreferenceData) -> list[Judgment]:
    """Each golden label as a game of its model against the answer key, won with probability ``score``."""
    return [Judgment(prompt=g.prompt, model_a=g.model, model_b=REFERENCE, p_a=g.score, source=g.source,
                     prompt_id=g.prompt_id) for g in data.golden]


def _build(data: PreferenceData, cfg: dict[str, Any]) -> dict[str, Any]:
    """Tiers and per-prompt statistics of one training set."""
    from routeray.data.tiers import assign_tiers, fit_ratings

    if cfg["golden_as"] not in GOLDEN_MODES:
        raise RouterayError(f"golden_as must be one of {GOLDEN_MODES}, got {cfg['golden_as']!r}")
    judgments = all_judgments(data)
    ratings = fit_ratings(judgments)
    model_tiers = assign_tiers(ratings, int(cfg["n_tiers"]))
    n_tiers = max(model_tiers.values()) + 1
    games, tiers = judgments, model_tiers
    if cfg["golden_as"] in ("reference", "both"):
        games = (judgments if cfg["golden_as"] == "both" else list(data.judgments)) + reference_games(data)
        tiers = {**model_tiers, REFERENCE: n_tiers}  # the answer key gets a tier of its own, after the rest
    if not games:
        raise DataError("no judgments or golden labels to build sw_ranking from")
    table = build_table(games, balance=cfg["balance"], source_weights=cfg["source_weights"])
    n_stat_tiers = max(tiers.values()) + 1
    wins, totals = tier_statistics(table, tiers, n_stat_tiers)
    used = totals.sum(axis=1) > 0
    prompts = [p for p, u in zip(table.prompts, used, strict=True) if u]
    return {"ratings": ratings, "model_tiers": model_tiers, "n_tiers": n_stat_tiers, "prompts": prompts,
            "wins": wins[used], "totals": totals[used], "n_judgments": len(table)}


def train(data: PreferenceData, out_dir: Path, *, seed: int = 0, config: dict[str, Any] | None = None,
          progress: bool = True) -> Artifact:
    """Select γ, top-k (and the golden mode, if in the grid) on leave-one-source-out folds, build the
    statistics on all data, write the artifact to ``out_dir`` and return it."""
    from routeray.routers.mf import ModelResolver
    from routeray.routers.sw_ranking import sw_scores

    t0 = time.perf_counter()
    cfg = common.training_config(DEFAULTS, config, "sw_ranking", seed)
    cap = int(cfg["max_prompts_per_source"])
    rows, spec = common.embedded_rows(data.prompts, cfg["embedder"], progress=progress)

    def scorer(built: dict[str, Any], params: dict[str, Any]) -> ScoreFn:
        train_emb = rows(built["prompts"]).astype(np.float16).astype(np.float32)  # what the artifact keeps
        resolver = ModelResolver(list(built["model_tiers"]), cfg["model_aliases"])

        def score(prompts: Sequence[str], strong: str, weak: str) -> np.ndarray:
            ts = built["model_tiers"][resolver.resolve(strong, cfg["strong_model"])]
            tw = built["model_tiers"][resolver.resolve(weak, cfg["weak_model"])]
            return sw_scores(rows(prompts), train_emb, built["wins"], built["totals"], built["n_tiers"], ts, tw,
                             gamma=float(params["gamma"]), top_k=int(params["top_k"]),
                             prior=float(params["prior"]))
        return score

    # combinations that differ only in how the statistics are weighed at scoring time share a build
    build_keys = ("golden_as", "n_tiers", "balance", "source_weights", "max_prompts_per_source")
    selection = common.select_on_folds(
        "sw_ranking", data, cfg, lambda run_cfg: common.config_key(run_cfg, build_keys),
        lambda fold, run_cfg: _build(cap_per_source(fold.train, cap, seed), run_cfg), scorer, progress)
    final_cfg = {**cfg, **selection.combo}
    final = _build(cap_per_source(data, cap, seed), final_cfg)

    artifact_cfg = {k: v for k, v in final_cfg.items() if k not in ("grid", "embedder")}
    artifact_cfg.update({"model_tiers": final["model_tiers"], "n_tiers": final["n_tiers"],
                         "ratings": final["ratings"], "sources": data.sources})
    tensors = {
        "prompt_emb": rows(final["prompts"]).astype(np.float16),
        "wins": final["wins"].astype(np.float32),
        "totals": final["totals"].astype(np.float32),
    }
    report = selection.report("sw_ranking", seed, t0, n_train_prompts=len(final["prompts"]),
                              n_train_judgments=final["n_judgments"], n_artifact_prompts=len(final["prompts"]),
                              n_tiers=final["n_tiers"])
    artifact = Artifact(router="sw_ranking", config=artifact_cfg, tensors=tensors, embedder=spec,
                        data_fingerprint=fingerprint_texts(final["prompts"], {"n_judgments": final["n_judgments"]}),
                        report=copy.deepcopy(report))
    save_artifact(artifact, out_dir)
    return artifact
