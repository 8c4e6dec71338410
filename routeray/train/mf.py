"""Train the matrix-factorisation router on per-model correctness; select hyper-parameters on
leave-one-source-out folds.

Golden labels (RouterBench, arena-bench grades, MMLU-Pro) are learned as each model's own correctness,
``P(m right on q) = σ(s(m, q) + b_m)`` with the paper's MF score ``s``, by masked binary cross-entropy with
graded scores as soft targets. Turning them into "strong beat weak" pairs instead threw away every
both-right / both-wrong prompt and ranked MMLU subjects backwards (bench/quality_probe.md). Pairwise
judgments (AlpacaEval, Arena) enter as Bradley–Terry on ``s(a, q) − s(b, q)`` with a small total weight
``pair_weight`` relative to the golden loss: the judge rewards style more than correctness.

Model selection (grid, routing rule) uses leave-one-source-out folds, never a random prompt split, which
rewards the source-identity shortcut. The routing rule itself is documented in :mod:`routeray.routers.mf`.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routeray.artifacts import Artifact, fingerprint_texts, save_artifact
from routeray.data.schema import PreferenceData
from routeray.encoders.registry import INT8_SPEC
from routeray.errors import DataError, RouterayError
from routeray.routers.prompt_features import (
    INPUT_FEATURES,
    FeatureInput,
    ScoreBoost,
    boost_columns,
    structure_features,
)
from routeray.train.common import (
    PAIR_DEFAULTS,
    Fold,
    ScoreFn,
    build_table,
    config_key,
    embedded_rows,
    seed_everything,
    select_on_folds,
    training_config,
)

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    **PAIR_DEFAULTS,
    # total weight of the pairwise judgments' Bradley–Terry loss relative to the golden-label loss
    "pair_weight": 0.05,
    # how the pairwise sources are weighed against each other (see common.build_table)
    "balance": "prompt",
    "source_weights": {},
    "route_on": "correctness",
    "dim": 16,
    "lr": 1e-2,
    # "adam": weight_decay is an L2 term in the gradient; "adamw": decoupled decay. Mean held-out-source APGR
    # on the 12 folds: adam 0.558, adamw 0.532 (docs/evaluation.md)
    "optimizer": "adam",
    # all-19 mean APGR on the 16 selection folds over training seeds 0-4: 0.001 0.5554, 0.002 0.5567, 0.003 0.5576,
    # 0.004 0.5579 (above 0.001 on every seed, +0.0016 to +0.0033), 0.006 0.5562; less than 0.001 is worse
    # (bench/results/mf_decay_seeds.json, docs/evaluation.md "fifth round")
    "weight_decay": 4e-3,
    "dropout": 0.0,
    "steps": 300,
    # the prompt's structure (routeray.routers.prompt_features) as extra input dimensions beside the
    # embedding, standardised and scaled by feature_scale (0: the embedding alone). Held-out-source mean
    # APGR on the 12 folds: 0.565 with 0.1 against 0.559 without (docs/evaluation.md)
    "prompt_features": list(INPUT_FEATURES),
    "feature_scale": 0.1,
    # a bias per (golden source, model) learned beside the prompt's score and dropped when routing, so the
    # prompt's score explains only differences within a source. Off: held-out-source mean APGR 0.504 with it
    # against 0.566 without; what carries to an unseen source is what mf learns between sources (docs/evaluation.md)
    "source_effects": False,
    # the routing score moved on the logit scale by standardised structure features, {feature: weight}
    # (routeray.routers.prompt_features.ScoreBoost; {}: none). Selected in the grid; it changes no fit
    "route_boost": {},
    # leave-one-source-out folds for selection: "auto" (every source with enough golden prompts) or a list
    "selection_holdouts": "auto",
    "min_holdout_prompts": 200,
    # and one fold per family of sources held out at once (routeray.data.SOURCE_FAMILIES): "all" or a list
    "selection_families": "all",
    # every combination is scored on the folds; the best mean held-out APGR wins. feature_scale stays at the
    # 0.1 the 12 source folds chose (docs/evaluation.md): with a boost, 0.0 and 0.1 tie on these folds (0.557
    # vs 0.556) and 0.0 scored the eval-sample MMLU 0.557 against 0.590 without a boost
    # The word-problem terms: "word_problem" moves every word problem up (0.25: by 0.78 logits against the other
    # prompts), "log_words|word_problem" orders word problems by length (1 logit per standard deviation). On the 16
    # folds word_problem 0.5 with log_words|word_problem 1.0 beat the boost before by +0.0014 / +0.0015 (all 19,
    # seeds 0 / 1; bench/results/mf_word_problem_boost.json, docs/evaluation.md "sixth round")
    "grid": {"feature_scale": [0.1],
             "route_boost": [{}, {"log_numbers": 0.5}, {"log_numbers": 1.0}, {"log_words": 0.05, "log_numbers": 0.5},
                             {"log_words": 0.05, "log_numbers": 1.0},
                             *({"log_words": 0.05, "log_numbers": 1.0, **wp} for wp in (
                                 {"log_words|word_problem": 1.0}, {"log_words|word_problem": 2.0},
                                 {"word_problem": 0.25}, {"word_problem": 0.5},
                                 {"word_problem": 0.25, "log_words|word_problem": 1.0},
                                 {"word_problem": 0.25, "log_words|word_problem": 2.0},
                                 {"word_problem": 0.5, "log_words|word_problem": 1.0},
                                 {"word_problem": 0.5, "log_words|word_problem": 2.0}))]},
    # MiniLM with int8 weights (ONNX Runtime): held-out-source mean APGR 0.565 against 0.566 on float32 MiniLM,
    # at less CPU per prompt (docs/evaluation.md, "int8 MiniLM")
    "embedder": INT8_SPEC,
}


@dataclass
class Targets:
    """Training targets over one list of prompts and one list of models."""

    prompts: list[str]
    models: list[str]
    cell_prompt: np.ndarray  # int64 (L,): one golden label (mean of duplicates) per labelled cell
    cell_model: np.ndarray  # int64 (L,)
    cell_y: np.ndarray  # float32 (L,) in [0, 1]
    cell_source: np.ndarray  # int64 (L,): index into ``sources`` of the cell's golden source
    pair_prompt: np.ndarray  # int64 (J,): pairwise judgments
    pair_a: np.ndarray
    pair_b: np.ndarray
    pair_p: np.ndarray  # float32 (J,) P(a wins)
    pair_w: np.ndarray  # float32 (J,) weights from build_table
    sources: list[str]


def all_models(data: PreferenceData) -> list[str]:
    """Every model with a golden label or a judgment, sorted."""
    return sorted({g.model for g in data.golden} | {j.model_a for j in data.judgments}
                  | {j.model_b for j in data.judgments})


def build_targets(data: PreferenceData, models: list[str], cfg: dict[str, Any]) -> Targets:
    """Golden labels as (prompt, model, mean score) cells; judgments as weighted pairs on the same axes."""
    pos = {m: i for i, m in enumerate(models)}
    prompt_pos: dict[str, int] = {}
    sums: dict[tuple[int, int], list[float]] = {}
    source_of: dict[tuple[int, int], str] = {}
    for g in data.golden:
        if g.model in pos:
            key = (prompt_pos.setdefault(g.prompt, len(prompt_pos)), pos[g.model])
            sums.setdefault(key, []).append(g.score)
            source_of.setdefault(key, g.source)
    cells = np.asarray(list(sums), dtype=np.int64).reshape(-1, 2)
    cell_y = np.asarray([np.mean(v) for v in sums.values()], dtype=np.float32)
    sources = sorted(set(source_of.values()))
    source_pos = {s: i for i, s in enumerate(sources)}
    cell_source = np.asarray([source_pos[source_of[k]] for k in sums], dtype=np.int64)
    empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    pair = (empty_i, empty_i, empty_i, empty_f, empty_f)
    if data.judgments:
        table = build_table(data.judgments, models=models, balance=cfg["balance"],
                            source_weights=cfg["source_weights"])
        remap = np.asarray([prompt_pos.setdefault(p, len(prompt_pos)) for p in table.prompts], dtype=np.int64)
        pair = (remap[table.prompt_idx], table.a_idx, table.b_idx, table.p_a, table.weight)
    if not len(cell_y) and not len(pair[0]):
        raise DataError("no golden labels or judgments to train mf on")
    prompts = [""] * len(prompt_pos)
    for p, i in prompt_pos.items():
        prompts[i] = p
    return Targets(prompts, models, cells[:, 0], cells[:, 1], cell_y, cell_source, *pair, sources)


class _MFNet:
    """The torch model behind :class:`routeray.routers.mf.MFRouter` (same tensors, same formula)."""

    def __init__(self, n_models: int, text_dim: int, dim: int, dropout: float, n_sources: int = 0):
        import torch

        self.torch = torch
        self.model_emb = torch.nn.Parameter(torch.randn(n_models, dim) * 0.1)
        self.model_bias = torch.nn.Parameter(torch.zeros(n_models))
        # training only (cfg "source_effects"); not part of the artifact
        self.source_bias = torch.nn.Parameter(torch.zeros(n_sources, n_models)) if n_sources else None
        self.proj = torch.nn.Linear(text_dim, dim)
        self.classifier = torch.nn.Parameter(torch.randn(dim) * 0.1)
        self.dropout = torch.nn.Dropout(dropout)

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray]) -> _MFNet:
        """A net holding an artifact's tensors (the inverse of :meth:`state`), in eval mode."""
        import torch

        n_models, dim = tensors["model_emb"].shape
        net = cls(n_models, tensors["proj_weight"].shape[0], dim, 0.0)
        with torch.no_grad():
            net.model_emb.copy_(torch.from_numpy(tensors["model_emb"]))
            net.model_bias.copy_(torch.from_numpy(tensors["model_bias"]))
            net.proj.weight.copy_(torch.from_numpy(tensors["proj_weight"].T.copy()))
            net.proj.bias.copy_(torch.from_numpy(tensors["proj_bias"]))
            net.classifier.copy_(torch.from_numpy(tensors["classifier"]))
        net.train(False)
        return net

    def parameters(self) -> list[Any]:
        """The artifact's parameters (the training-only source biases are separate)."""
        return [self.model_emb, self.model_bias, self.classifier, *self.proj.parameters()]

    def train(self, mode: bool = True) -> None:
        self.dropout.train(mode)

    def scores(self, emb: Any) -> Any:
        """``(n_prompts, n_models)`` MF scores s(m, q): the router's formula on these parameters."""
        from routeray.routers.mf import mf_linear

        v = self.torch.nn.functional.normalize(self.model_emb, dim=1)
        u, c = mf_linear(self.proj.weight.T, self.proj.bias, v, self.classifier)
        return self.dropout(emb) @ u + c

    def state(self) -> dict[str, np.ndarray]:
        f = self.torch.nn.functional
        with self.torch.no_grad():
            return {
                "model_emb": f.normalize(self.model_emb, dim=1).numpy().astype(np.float32).copy(),
                "model_bias": self.model_bias.numpy().astype(np.float32).copy(),
                "proj_weight": self.proj.weight.T.numpy().astype(np.float32).copy(),  # (D, d)
                "proj_bias": self.proj.bias.numpy().astype(np.float32).copy(),
                "classifier": self.classifier.numpy().astype(np.float32).copy(),
            }


def _loss(net: _MFNet, emb: Any, t: dict[str, Any], pair_weight: float) -> Any:
    """Masked BCE on golden cells + ``pair_weight`` × weighted Bradley–Terry BCE on judgments."""
    bce = net.torch.nn.functional.binary_cross_entropy_with_logits
    s = net.scores(emb)
    loss = s.new_zeros(())
    if t["cell_y"].numel():
        logit = s[t["cell_prompt"], t["cell_model"]] + net.model_bias[t["cell_model"]]
        if net.source_bias is not None:
            logit = logit + net.source_bias[t["cell_source"], t["cell_model"]]
        loss = loss + bce(logit, t["cell_y"])
    if pair_weight > 0 and t["pair_p"].numel():
        diff = s[t["pair_prompt"], t["pair_a"]] - s[t["pair_prompt"], t["pair_b"]]
        per = bce(diff, t["pair_p"], reduction="none")
        loss = loss + pair_weight * (per * t["pair_w"]).sum() / t["pair_w"].sum().clamp_min(1e-12)
    return loss


def source_logits(targets: Targets) -> np.ndarray:
    """``(n_sources, n_models)`` logit of each model's mean golden score per source (0 where none)."""
    shape = (len(targets.sources), len(targets.models))
    total, count = np.zeros(shape), np.zeros(shape)
    np.add.at(total, (targets.cell_source, targets.cell_model), targets.cell_y)
    np.add.at(count, (targets.cell_source, targets.cell_model), 1.0)
    mean = np.clip(total / np.maximum(count, 1.0), 0.02, 0.98)
    return np.where(count > 0, np.log(mean / (1.0 - mean)), 0.0).astype(np.float32)


def fit(cfg: dict[str, Any], targets: Targets, emb: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Full-batch Adam (L2) or AdamW for ``cfg["steps"]`` steps on prompt embeddings ``emb`` (rows = targets.prompts)."""
    import torch

    seed_everything(seed)
    n_sources = len(targets.sources) if cfg.get("source_effects") else 0
    net = _MFNet(len(targets.models), emb.shape[1], int(cfg["dim"]), float(cfg["dropout"]), n_sources)
    if net.source_bias is not None:  # start from each (source, model)'s mean correctness: the prompt's score
        with torch.no_grad():      # then fits only what differs within a source
            net.source_bias.copy_(torch.from_numpy(source_logits(targets)))
    optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if cfg["optimizer"] not in optimizers:
        raise RouterayError(f"mf optimizer must be one of {sorted(optimizers)}, got {cfg['optimizer']!r}")
    groups: list[dict[str, Any]] = [{"params": net.parameters(), "weight_decay": float(cfg["weight_decay"])}]
    if net.source_bias is not None:  # decay would pull them off the source means and the prompt's score back in
        groups.append({"params": [net.source_bias], "weight_decay": 0.0})
    opt = optimizers[cfg["optimizer"]](groups, lr=float(cfg["lr"]))
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in vars(targets).items()
         if isinstance(v, np.ndarray)}
    e = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
    net.train(True)
    for _ in range(int(cfg["steps"])):
        opt.zero_grad()
        _loss(net, e, t, float(cfg["pair_weight"])).backward()
        opt.step()
    net.train(False)
    return net.state()


def selection_scorer(tensors: dict[str, np.ndarray], rows: Callable[[Sequence[str]], np.ndarray], resolver: Any,
                     trained_pair: tuple[str, str], route_on: str,
                     boost: tuple[ScoreBoost, Callable[[Sequence[str]], np.ndarray]] | None = None) -> ScoreFn:
    """How the trainer scores held-out prompts while selecting: the router's own rule
    (:func:`routeray.routers.mf.pair_scorer`) on the trainer's cached embeddings ``rows(prompts)``, then the
    ``(ScoreBoost, structure rows)`` when given."""
    from routeray.routers.mf import pair_scorer, route_scores

    def score(prompts: Sequence[str], strong: str, weak: str) -> np.ndarray:
        pair = pair_scorer(tensors, resolver.index(strong, trained_pair[0]), resolver.index(weak, trained_pair[1]),
                           route_on)
        scores = route_scores(rows(prompts), pair)
        if boost is None:
            return scores
        return boost[0].apply(scores, prompts, boost[1](prompts))

    return score


def train(data: PreferenceData, out_dir: Path, *, seed: int = 0, config: dict[str, Any] | None = None,
          progress: bool = True) -> Artifact:
    """Select on leave-one-source-out folds, refit on all data, write the artifact to ``out_dir``."""
    from routeray.routers.mf import MF_FORMAT, ModelResolver, quantise_unit_rows

    t0 = time.perf_counter()
    cfg = training_config(DEFAULTS, config, "mf", seed)
    for boost_weights in [cfg["route_boost"], *(cfg.get("grid") or {}).get("route_boost", [])]:
        try:  # before any fold is fitted
            boost_columns(list(boost_weights))
        except ValueError as exc:
            raise RouterayError(f"mf route_boost: {exc}") from None
    models = all_models(data)
    full = build_targets(data, models, cfg)
    emb_rows, spec = embedded_rows(full.prompts, cfg["embedder"], progress=progress)
    texts = list(dict.fromkeys(full.prompts))
    features = structure_features(texts)  # once; every fold and grid point reads rows of it
    feature_row = {t: i for i, t in enumerate(texts)}
    fitted: dict[tuple[tuple[str, ...], float], FeatureInput] = {}

    def feature_input(run_cfg: dict[str, Any]) -> FeatureInput | None:
        if not run_cfg["prompt_features"] or not float(run_cfg["feature_scale"]):
            return None
        key = (tuple(run_cfg["prompt_features"]), float(run_cfg["feature_scale"]))
        if key not in fitted:
            fitted[key] = FeatureInput.fit(texts, key[0], key[1], features)
        return fitted[key]

    def input_rows(run_cfg: dict[str, Any]) -> Callable[[Sequence[str]], np.ndarray]:
        fi = feature_input(run_cfg)
        if fi is None:
            return emb_rows

        def rows(prompts: Sequence[str]) -> np.ndarray:
            return fi.append(emb_rows(prompts), prompts, features[[feature_row[p] for p in prompts]])
        return rows

    resolver = ModelResolver(models, cfg["model_aliases"])
    fold_targets: dict[str, Targets] = {}

    def fit_fold(fold: Fold, run_cfg: dict[str, Any]) -> dict[str, np.ndarray]:
        if fold.holdout not in fold_targets:
            fold_targets[fold.holdout] = build_targets(fold.train, models, cfg)
        targets = fold_targets[fold.holdout]
        return fit(run_cfg, targets, input_rows(run_cfg)(targets.prompts), seed)

    def structure_rows(prompts: Sequence[str]) -> np.ndarray:
        return features[[feature_row[p] for p in prompts]]

    def scorer(tensors: dict[str, np.ndarray], run_cfg: dict[str, Any]) -> ScoreFn:
        boost = ScoreBoost.fit(run_cfg["route_boost"], features)
        return selection_scorer(tensors, input_rows(run_cfg), resolver, (cfg["strong_model"], cfg["weak_model"]),
                                str(run_cfg["route_on"]), None if boost is None else (boost, structure_rows))

    # combinations that differ only in how they score (routing rule, boost) share a fit
    selection = select_on_folds("mf", data, cfg,
                                lambda run_cfg: config_key(run_cfg, exclude=("route_on", "route_boost")),
                                fit_fold, scorer, progress)
    final_cfg = {**cfg, **selection.combo}
    fi = feature_input(final_cfg)
    boost = ScoreBoost.fit(final_cfg["route_boost"], features)
    tensors = fit(final_cfg, full, input_rows(final_cfg)(full.prompts), seed)
    tensors["train_prompt_emb_q8"] = quantise_unit_rows(emb_rows(full.prompts))

    artifact_cfg = {k: v for k, v in final_cfg.items()
                    if k not in ("grid", "embedder", "prompt_features", "feature_scale", "route_boost")}
    for part in (fi, boost):
        if part is not None:
            part_cfg, part_tensors = part.to_artifact()
            artifact_cfg.update(part_cfg)
            tensors.update(part_tensors)
    artifact_cfg.update({"models": models, "sources": data.sources, "mf_format": MF_FORMAT})
    report = selection.report("mf", seed, t0, n_train_prompts=len(full.prompts), n_golden_cells=len(full.cell_y),
                              n_train_judgments=len(full.pair_p), n_models=len(models))
    artifact = Artifact(router="mf", config=artifact_cfg, tensors=tensors, embedder=spec,
                        data_fingerprint=fingerprint_texts(full.prompts, {"n_judgments": len(full.pair_p),
                                                                          "n_golden": len(full.cell_y)}),
                        report=copy.deepcopy(report))
    save_artifact(artifact, out_dir)
    return artifact
