"""Train the matrix-factorisation router on every pairwise judgment (all model pairs, model identity kept)
plus golden labels turned into judgments; pick hyper-parameters on validation APGR."""

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
    "embedder": None,  # None: the default local MiniLM
    "model_aliases": {"gpt-4o": "gpt-4o-2024-05-13", "gpt-4": "gpt-4-0314", "gpt-3.5": "gpt-3.5-turbo-1106"},
    "val_fraction": 0.1,
    "balance": "prompt",
    # AlpacaEval's judge rewards style more than the strong model's real edge (see QUALITY.md): held-out
    # APGR (bench/quality.py) rose as its weight fell from 1 to 0.1 to 0; a little weight still places the
    # 70 models only it compares
    "source_weights": {"alpaca_eval": 0.02},
    "dim": 128,
    "lr": 1e-2,
    "weight_decay": 1e-4,
    "dropout": 0.1,
    "max_steps": 400,
    "eval_every": 10,
    "patience": 5,
    "refit_full": True,
    # every combination is trained; the best validation APGR wins
    "grid": {"dim": [32, 128]},
}


class _MFNet:
    """The torch model behind :class:`routeray.routers.mf.MFRouter` (same tensors, same formula)."""

    def __init__(self, n_models: int, text_dim: int, dim: int, dropout: float):
        import torch

        self.torch = torch
        self.model_emb = torch.nn.Parameter(torch.randn(n_models, dim) * 0.1)
        self.proj = torch.nn.Linear(text_dim, dim)
        self.classifier = torch.nn.Parameter(torch.randn(dim) * 0.1)
        self.dropout = torch.nn.Dropout(dropout)

    def parameters(self) -> list[Any]:
        return [self.model_emb, self.classifier, *self.proj.parameters()]

    def train(self, mode: bool = True) -> None:
        self.dropout.train(mode)

    def scores(self, emb: Any) -> Any:
        """``(n_prompts, n_models)`` scores s(m, q)."""
        f = self.torch.nn.functional
        p = self.proj(self.dropout(emb))
        v = f.normalize(self.model_emb, dim=1)
        return p @ (v * self.classifier).T

    def state(self) -> dict[str, np.ndarray]:
        f = self.torch.nn.functional
        with self.torch.no_grad():
            return {
                "model_emb": f.normalize(self.model_emb, dim=1).numpy().astype(np.float32).copy(),
                "proj_weight": self.proj.weight.T.numpy().astype(np.float32).copy(),  # (D, d)
                "proj_bias": self.proj.bias.numpy().astype(np.float32).copy(),
                "classifier": self.classifier.numpy().astype(np.float32).copy(),
            }


def _loss(net: _MFNet, emb: Any, table: dict[str, Any]) -> Any:
    torch = net.torch
    s = net.scores(emb)
    logit = s[table["pi"], table["a"]] - s[table["pi"], table["b"]]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, table["p"], reduction="none")
    return (bce * table["w"]).sum() / table["w"].sum()


def _to_torch(table: JudgmentTable) -> dict[str, Any]:
    import torch

    return {"pi": torch.from_numpy(table.prompt_idx), "a": torch.from_numpy(table.a_idx),
            "b": torch.from_numpy(table.b_idx), "p": torch.from_numpy(table.p_a),
            "w": torch.from_numpy(table.weight)}


def _fit(cfg: dict[str, Any], train_emb: np.ndarray, train: JudgmentTable, n_models: int,
         val_emb: np.ndarray | None, val: JudgmentTable | None, seed: int, bar: Any,
         fixed_steps: int | None = None) -> tuple[dict[str, np.ndarray], int, float]:
    """Full-batch AdamW; early stopping on validation loss. Returns (tensors, best step, best val loss)."""
    import torch

    seed_everything(seed)
    net = _MFNet(n_models, train_emb.shape[1], int(cfg["dim"]), float(cfg["dropout"]))
    opt = torch.optim.AdamW(net.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    e_train, t_train = torch.from_numpy(train_emb), _to_torch(train)
    e_val = torch.from_numpy(val_emb) if val_emb is not None else None
    t_val = _to_torch(val) if val is not None and len(val) else None
    steps = fixed_steps or int(cfg["max_steps"])
    best = (net.state(), 0, float("inf"))
    bad = 0
    for step in range(1, steps + 1):
        net.train(True)
        opt.zero_grad()
        loss = _loss(net, e_train, t_train)
        loss.backward()
        opt.step()
        bar.update(1)
        if fixed_steps is not None or t_val is None or step % int(cfg["eval_every"]):
            continue
        net.train(False)
        with torch.no_grad():
            vl = float(_loss(net, e_val, t_val))
        bar.set_postfix(train=f"{float(loss.detach()):.4f}", val=f"{vl:.4f}")
        if vl < best[2] - 1e-5:
            best, bad = (net.state(), step, vl), 0
        else:
            bad += 1
            if bad >= int(cfg["patience"]):
                bar.update(steps - step)
                break
    if fixed_steps is not None or t_val is None:
        return net.state(), steps, float("nan")
    return best


def _grid(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    grid = cfg.get("grid") or {}
    keys = sorted(grid)
    combos: list[dict[str, Any]] = [dict(zip(keys, values, strict=True))
                                    for values in itertools.product(*(grid[k] for k in keys))]
    return combos or [{}]


def train(data: PreferenceData, out_dir: Path, *, seed: int = 0, config: dict[str, Any] | None = None,
          progress: bool = True) -> Artifact:
    """Train, select on validation APGR, write the artifact to ``out_dir`` and return it."""
    from tqdm.auto import tqdm

    from routeray.data import split_by_prompt
    from routeray.routers.mf import ModelResolver, pair_direction, quantise_unit_rows

    t0 = time.perf_counter()
    cfg = merge_config(DEFAULTS, config, "mf")
    seed_everything(seed)
    train_data, val_data = split_by_prompt(data, float(cfg["val_fraction"]), seed)
    weighting = {"balance": cfg["balance"], "source_weights": cfg["source_weights"]}
    full = build_table(all_judgments(data), **weighting)
    models = full.models
    train_t = build_table(all_judgments(train_data), models=models, **weighting)
    val_judgments = all_judgments(val_data)
    val_t = build_table(val_judgments, models=models, **weighting) if val_judgments else None
    eval_sets = golden_eval_sets(val_data.golden, cfg["strong_model"], cfg["weak_model"])

    texts = list(dict.fromkeys(full.prompts + [p for es in eval_sets for p in es.prompts]))
    emb_all, spec = embed_texts(texts, cfg["embedder"], progress=progress)
    row = {t: i for i, t in enumerate(texts)}

    def rows(prompts: list[str]) -> np.ndarray:
        return emb_all[[row[p] for p in prompts]]

    train_emb = rows(train_t.prompts)
    val_emb = rows(val_t.prompts) if val_t is not None else None
    resolver = ModelResolver(models, cfg["model_aliases"])

    def scorer(tensors: dict[str, np.ndarray]) -> Any:
        def score(prompts: list[str], strong: str, weak: str) -> np.ndarray:
            u, c = pair_direction(tensors, resolver.index(strong, cfg["strong_model"]),
                                  resolver.index(weak, cfg["weak_model"]))
            return 1.0 / (1.0 + np.exp(-(rows(prompts).astype(np.float64) @ u + c)))
        return score

    combos = _grid(cfg)
    results: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any], dict[str, np.ndarray], int, dict[str, Any]] | None = None
    with tqdm(total=len(combos) * int(cfg["max_steps"]), desc="mf grid", disable=not progress) as bar:
        for combo in combos:
            run_cfg = {**cfg, **combo}
            tensors, step, vloss = _fit(run_cfg, train_emb, train_t, len(models), val_emb, val_t, seed, bar)
            val = evaluate_sets(scorer(tensors), eval_sets)
            results.append({**combo, "best_step": step, "val_loss": vloss, "val_mean_apgr": val["mean_apgr"]})
            log.info("mf %s: step %d, val loss %.4f, val APGR %.3f", combo, step, vloss, val["mean_apgr"])
            key = val["mean_apgr"] if np.isfinite(val["mean_apgr"]) else -vloss
            if best is None or key > best[0]:
                best = (key, combo, tensors, step, val)
    assert best is not None
    _, combo, tensors, step, val = best
    chosen = {**combo, "steps": step}
    if cfg["refit_full"]:
        with tqdm(total=max(step, 1), desc="mf refit on all data", disable=not progress) as bar:
            tensors, _, _ = _fit({**cfg, **combo}, rows(full.prompts), full, len(models), None, None, seed, bar,
                                 fixed_steps=max(step, 1))

    tensors["train_prompt_emb_q8"] = quantise_unit_rows(rows(full.prompts))
    artifact_cfg = {k: v for k, v in cfg.items() if k not in ("grid", "embedder")}
    artifact_cfg.update(combo)
    artifact_cfg.update({"models": models, "steps": step, "sources": data.sources})
    report = {
        "router": "mf",
        "n_train_prompts": len(train_t.prompts),
        "n_val_prompts": len(val_t.prompts) if val_t is not None else 0,
        "n_train_judgments": len(train_t),
        "n_all_judgments": len(full),
        "n_models": len(models),
        "chosen": chosen,
        "grid": results,
        "validation": val,
        "refit_full": bool(cfg["refit_full"]),
        "seed": seed,
        "seconds": time.perf_counter() - t0,
    }
    artifact = Artifact(router="mf", config=artifact_cfg, tensors=tensors, embedder=spec,
                        data_fingerprint=fingerprint_texts(full.prompts, {"n_judgments": len(full)}),
                        report=copy.deepcopy(report))
    save_artifact(artifact, out_dir)
    return artifact
