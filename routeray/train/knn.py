"""Build the knn router: index every golden-labelled prompt and choose ``k`` on leave-one-source-out folds.

Nothing is fitted: the artifact is the training prompts' embeddings and each model's score on them. ``k``
is the value of the grid with the best mean APGR over the held-out sources (the same folds ``mf`` selects
on), each fold indexing only the other sources' prompts.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from routeray.artifacts import Artifact, fingerprint_texts, save_artifact
from routeray.data.schema import GoldenLabel, PreferenceData
from routeray.errors import DataError
from routeray.train.common import (
    DEFAULT_STRONG,
    PAIR_DEFAULTS,
    best_grid_point,
    embed_texts,
    evaluate_sets,
    grid_point,
    merge_config,
    source_folds,
)

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    **PAIR_DEFAULTS,  # the strong/weak pair, the embedder (None: the local MiniLM), model aliases
    # a source that lacks a model lends these in its place (MMLU-Pro has gpt-4o, not gpt-4-1106-preview)
    "stand_ins": {DEFAULT_STRONG: ["gpt-4o-2024-05-13"]},
    "k": 100,
    "selection_holdouts": "auto",
    "min_holdout_prompts": 200,
    "grid": {"k": [10, 25, 50, 100, 200, 400]},
}


def label_matrix(golden: list[GoldenLabel]) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """``(prompts, sources, models, labels)``: one row per prompt, one column per model, the mean score of
    duplicates, ``NaN`` where a model has no label."""
    cells: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    source: dict[str, str] = {}
    for g in golden:
        cells[g.prompt][g.model].append(g.score)
        source.setdefault(g.prompt, g.source)
    prompts = sorted(cells)
    models = sorted({m for d in cells.values() for m in d})
    col = {m: i for i, m in enumerate(models)}
    labels = np.full((len(prompts), len(models)), np.nan, dtype=np.float32)
    for r, p in enumerate(prompts):
        for m, v in cells[p].items():
            labels[r, col[m]] = float(np.mean(v))
    return prompts, [source[p] for p in prompts], models, labels


def train(data: PreferenceData, out_dir: Path, *, seed: int = 0, config: dict[str, Any] | None = None,
          progress: bool = True) -> Artifact:
    """Index ``data``'s golden labels, choose k on held-out sources, write the artifact to ``out_dir``."""
    from tqdm.auto import tqdm

    from routeray.routers.knn import knn_mean, pair_gaps
    from routeray.routers.mf import ModelResolver, quantise_unit_rows

    t0 = time.perf_counter()
    cfg = merge_config(DEFAULTS, config, "knn")
    if not data.golden:
        raise DataError("knn needs golden labels (per-model correctness); the data has none")
    prompts, sources, models, labels = label_matrix(data.golden)
    emb, spec = embed_texts(prompts, cfg["embedder"], progress=progress)
    row = {p: i for i, p in enumerate(prompts)}
    resolver = ModelResolver(models, cfg["model_aliases"])
    stand_ins = cfg["stand_ins"]
    folds = source_folds(data, cfg["selection_holdouts"], cfg["strong_model"], cfg["weak_model"],
                         int(cfg["min_holdout_prompts"]))
    ks = [int(k) for k in (cfg.get("grid") or {}).get("k", [cfg["k"]])]
    per_k: dict[int, dict[str, Any]] = {k: {} for k in ks}
    for fold in tqdm(folds, desc="knn selection folds", disable=not progress):
        train_rows = np.asarray(sorted({row[g.prompt] for g in fold.train.golden}), dtype=np.int64)

        def score_for(k: int, rows: np.ndarray = train_rows) -> Any:
            def score(texts: list[str], strong: str, weak: str) -> np.ndarray:
                s, w = resolver.resolve(strong, cfg["strong_model"]), resolver.resolve(weak, cfg["weak_model"])
                sub, gaps = pair_gaps(labels[rows], models, [s, *stand_ins.get(s, [])], [w, *stand_ins.get(w, [])])
                return (1.0 + knn_mean(emb[[row[t] for t in texts]], emb[rows][sub], gaps, k)) / 2.0
            return score

        for k in ks:
            per_k[k][fold.holdout] = evaluate_sets(score_for(k), fold.eval_sets)
    points = [grid_point("knn", {"k": k}, per_k[k]) for k in ks]
    best = best_grid_point(points)
    final_cfg = {**cfg, **best["combo"]}
    artifact_cfg = {k: v for k, v in final_cfg.items() if k not in ("grid", "embedder")}
    artifact_cfg.update({"models": models, "sources": sorted(set(sources))})
    report = {
        "router": "knn",
        "n_train_prompts": len(prompts),
        "n_val_prompts": sum(len(es.prompts) for f in folds for es in f.eval_sets),
        "n_golden_cells": int(np.isfinite(labels).sum()),
        "n_models": len(models),
        "selection": "leave-one-source-out",
        "folds": [f.holdout for f in folds],
        "chosen": best["combo"],
        "grid": [p["row"] for p in points],
        "validation": best["summary"],
        "seed": seed,
        "seconds": time.perf_counter() - t0,
    }
    artifact = Artifact(router="knn", config=artifact_cfg,
                        tensors={"prompt_emb_q8": quantise_unit_rows(emb), "labels": labels.astype(np.float16)},
                        embedder=spec, data_fingerprint=fingerprint_texts(prompts, {"n_golden": len(data.golden)}),
                        report=copy.deepcopy(report))
    save_artifact(artifact, out_dir)
    return artifact
