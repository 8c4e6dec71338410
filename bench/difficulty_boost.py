"""Does a difficulty signal move the default `mf`'s routing score the right way on held-out sources?

QUALITY.md's hint: what small open models fail is what a weak model tends to fail, but a strong model's advantage
sits on *medium-hard* prompts. `mf` already predicts every training model's correctness, including RouterDC's
seven 7-8B models (their pass rates on GSM8K-train and ARC are a training source), so the signal costs nothing
at serving time: one more matrix product on the embedding `mf` computes anyway. This probe adds, to the shipped
routing score's logit (the route boost included), ``beta x feature / its spread`` for four features of those
seven heads' predictions p_1..p_7 (m = their mean; beta from -0.5 to 1.0) and for a solution-length estimate
(beta from 0.1 to 4.0):

- ``medium``: m (1 - m), largest where the small models are split or unsure (QUALITY.md's medium-hard);
- ``fail``: 1 - m, the small models' predicted failure (monotone difficulty);
- ``spread``: the standard deviation of p_1..p_7 (the small models disagree);
- ``centre``: -|m - 0.5|, medium-hard without the variance's curvature;
- ``steps``: the predicted length of a worked solution, log(1 + lines before "####" in GSM8K's reference
  answers): a ridge regression from `mf`'s input row (embedding and structure features) fitted on the unlabeled
  GSM8K train split (``unlabeled/gsm8k_train.jsonl``, no model labels), leaving out every question within cosine
  0.95 of a prompt this probe evaluates (the RouterDC GSM8K-train fold included); ridge's lambda by 5-fold CV;
- ``steps_gated``: the same, only on prompts with numbers and neither answer options nor code (word problems).

The fits are out of fold: for each of the 12 source folds and the 4 family folds `routeray train mf` runs on the
rest with the default recipe and the shipped boost (no selection grid), and the held-out golden sets are scored
(near-copies within cosine 0.95 dropped). Fits are cached in ``--work``. Feature scales come from the pooled
held-out prompts of the 12 source folds (a scale only; APGR ranks within a set, so the centre does not matter).
The eval sample is scored with the shipped artifact and printed for information only: selection reads the folds.

    .venv/bin/python bench/difficulty_boost.py --work /tmp/difficulty_boost \
        --output bench/results/difficulty_boost.json
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from quality import (  # bench/ is on the path when a script runs
    DEFAULT_MF_ARTIFACT,
    gsm8k_worked_solutions,
    heldout_folds,
    shipped_mf_recipe,
)
from result_file import write_result

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from routeray.artifacts import load_artifact  # noqa: E402
from routeray.data import load_data_dir  # noqa: E402
from routeray.evaluate.benchmarks import load_benchmark  # noqa: E402
from routeray.evaluate.metrics import apgr  # noqa: E402
from routeray.routers.base import logit  # noqa: E402
from routeray.routers.registry import load_router  # noqa: E402
from routeray.train.cli import get_trainer  # noqa: E402
from routeray.train.common import cached_embedder  # noqa: E402

FEATURES = ("medium", "fail", "spread", "centre", "steps", "steps_gated")
SMALL_HEAD_FEATURES = FEATURES[:4]
BETAS = (-0.5, -0.25, -0.1, 0.1, 0.25, 0.5, 1.0)
STEPS_BETAS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


def heads(router: Any, prompts: list[str], models: list[str]) -> np.ndarray:
    """P(correct) of each of ``models`` (those the router knows) for every prompt, ``(n, k)``."""
    known = [m for m in models if m in router.models]
    return router._quality(list(prompts), [router.models.index(m) for m in known])


def small_head_feature(kind: str, p: np.ndarray) -> np.ndarray:
    m = p.mean(axis=1)
    return {"medium": m * (1 - m), "fail": 1 - m, "spread": p.std(axis=1), "centre": -np.abs(m - 0.5)}[kind]


def word_problems(prompts: list[str]) -> np.ndarray:
    """1 for a prompt with numbers and neither answer options nor code, else 0."""
    from routeray.routers.prompt_features import STRUCTURE_FEATURES, structure_features

    return structure_features(prompts)[:, STRUCTURE_FEATURES.index("word_problem")]


def add_features(row: dict[str, Any], steps: Any) -> None:
    row["feature"] = {k: small_head_feature(k, row["small"]) for k in SMALL_HEAD_FEATURES}
    row["feature"]["steps"] = steps(row["prompts"])
    row["gate"] = word_problems(row["prompts"])


def scored(router: Any, prompts: list[str], small: list[str]) -> dict[str, Any]:
    return {"prompts": list(prompts), "score": np.asarray(router.score(list(prompts))),
            "small": heads(router, prompts, small)}


def solution_length_model(data_dir: Path, embedder: Any, evaluated: list[str]) -> Any:
    """A predictor of log(1 + worked-solution lines) fitted on GSM8K train (near-copies of ``evaluated`` out)."""
    from routeray.routers.prompt_features import structure_features

    questions, e_q, lines, keep = gsm8k_worked_solutions(data_dir, embedder, evaluated)
    y = np.log1p(lines)
    f = structure_features(questions)
    mu, sd = f.mean(axis=0), f.std(axis=0) + 1e-9

    def rows_of(prompts: list[str], e: np.ndarray | None = None) -> np.ndarray:
        e = embedder.embed(prompts) if e is None else e
        return np.hstack([e, (structure_features(prompts) - mu) / sd, np.ones((len(prompts), 1))])

    x, y = rows_of(questions, e_q)[keep], y[keep]
    folds = np.random.default_rng(0).integers(0, 5, len(y))

    def ridge(a: np.ndarray, b: np.ndarray, lam: float) -> np.ndarray:
        return np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ b)

    def cv_r2(lam: float) -> float:
        err = [np.mean((x[folds == k] @ ridge(x[folds != k], y[folds != k], lam) - y[folds == k]) ** 2) for k in range(5)]
        return float(1 - np.mean(err) / y.var())

    r2 = {lam: cv_r2(lam) for lam in (1.0, 3.0, 10.0, 30.0)}
    lam = max(r2, key=r2.__getitem__)
    w = ridge(x, y, lam)
    print(f"solution-length model: {int(keep.sum())} of {len(questions)} GSM8K train questions, lambda {lam:g}, "
          f"cv R2 {r2[lam]:.3f}", flush=True)
    return lambda prompts: rows_of(list(prompts)) @ w


def out_of_fold(data: Any, small: list[str], work: Path) -> list[dict[str, Any]]:
    cache = work / "folds.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    rows: list[dict[str, Any]] = []
    recipe = shipped_mf_recipe()
    for label, train, sets, dropped in heldout_folds(data, ["auto", "family:all"]):
        t0 = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            get_trainer("mf")(train, Path(tmp), seed=0, config=recipe, progress=False)
            spec = load_artifact(tmp).embedder
            for es in sets:
                r = load_router("mf", tmp, strong_model=es.strong, weak_model=es.weak, embedder=cached_embedder(spec))
                rows.append({"holdout": label, "group": es.group, "n": len(es.prompts), "sq": es.strong_q,
                             "wq": es.weak_q, **scored(r, list(es.prompts), small)})
        print(f"{label}: {time.time() - t0:.0f} s ({dropped} near-copies dropped)", flush=True)
    work.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(rows))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/difficulty_boost", help="folder caching the out-of-fold fits")
    ap.add_argument("--output", default="bench/results/difficulty_boost.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_before = os.getloadavg()[0]
    data = load_data_dir(args.data_dir)
    small = sorted({g.model for g in data.golden if g.source.startswith("routerdc/")})
    rows = out_of_fold(data, small, Path(args.work))
    shipped = load_router("mf", DEFAULT_MF_ARTIFACT)
    evals = {}
    for b in ("mmlu", "gsm8k", "mt-bench"):
        bench = load_benchmark(b, Path(args.data_dir) / "eval_sample")
        evals[b] = {"sq": np.asarray(bench.strong_quality), "wq": np.asarray(bench.weak_quality),
                    **scored(shipped, list(bench.prompts), small)}
    evaluated = sorted({p for r in rows for p in r["prompts"]} | {p for e in evals.values() for p in e["prompts"]})
    steps = solution_length_model(Path(args.data_dir), cached_embedder(load_artifact(DEFAULT_MF_ARTIFACT).embedder),
                                  evaluated)
    for r in [*rows, *evals.values()]:
        add_features(r, steps)
    source_rows = [r for r in rows if not r["holdout"].startswith("family:")]
    pooled = {k: np.concatenate([r["feature"][k] for r in source_rows]) for k in FEATURES[:-1]}
    centre = {k: float(v.mean()) for k, v in pooled.items()}
    scale = {k: float(v.std()) or 1.0 for k, v in pooled.items()}

    def term(r: dict[str, Any], kind: str) -> np.ndarray:
        if kind == "steps_gated":  # centred, so a gated prompt moves up or down against the ungated ones
            return r["gate"] * (r["feature"]["steps"] - centre["steps"]) / scale["steps"]
        return r["feature"][kind] / scale[kind]

    def apgr_of(r: dict[str, Any], kind: str | None, beta: float) -> float:
        s = logit(r["score"])
        if kind is not None:
            s = s + beta * term(r, kind)
        return float(apgr(s, r["sq"], r["wq"]))

    variants: list[dict[str, Any]] = []
    alone = {f"{r['holdout']}|{r['group']}": round(float(apgr(r["feature"]["steps"], r["sq"], r["wq"])), 4)
             for r in rows}
    alone_eval = {b: round(float(apgr(e["feature"]["steps"], e["sq"], e["wq"])), 4) for b, e in evals.items()}
    print(f"predicted solution length alone: 12 sources "
          f"{np.mean([a for k, a in alone.items() if not k.startswith('family:')]):.4f}, 7 family sets "
          f"{np.mean([a for k, a in alone.items() if k.startswith('family:')]):.4f} | eval sample "
          + " ".join(f"{b} {a:.3f}" for b, a in alone_eval.items()), flush=True)
    for kind, betas in [(None, (0.0,)), *[(k, STEPS_BETAS if k.startswith("steps") else BETAS) for k in FEATURES]]:
        for beta in betas:
            src = [apgr_of(r, kind, beta) for r in source_rows]
            fam = [apgr_of(r, kind, beta) for r in rows if r["holdout"].startswith("family:")]
            v = {"feature": kind or "none (shipped)", "beta": beta, "source_mean": round(float(np.mean(src)), 4),
                 "family_mean": round(float(np.mean(fam)), 4), "all_mean": round(float(np.mean(src + fam)), 4),
                 "per_set": {f"{r['holdout']}|{r['group']}": round(a, 4) for r, a in zip(rows, src + fam, strict=True)},
                 "eval_sample": {b: round(apgr_of(e, kind, beta), 4) for b, e in evals.items()}}
            variants.append(v)
            print(f"{v['feature']:>16} beta {beta:<4}  12 sources {v['source_mean']:.4f}  7 family sets "
                  f"{v['family_mean']:.4f}  all 19 {v['all_mean']:.4f}  | eval sample (information only) "
                  + " ".join(f"{b} {a:.3f}" for b, a in v["eval_sample"].items()), flush=True)
    write_result(args.output, {"small_models": small, "feature_scale": scale, "variants": variants,
                               "solution_length_alone": {"sets": alone, "eval_sample": alone_eval},
                               "command": " ".join(sys.argv)}, load_before=load_before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
