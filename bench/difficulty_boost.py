"""Does a difficulty signal move the default `mf`'s routing score the right way on held-out sources?

QUALITY.md's hint: what small open models fail is what a weak model tends to fail, but a strong model's advantage
sits on *medium-hard* prompts. `mf` already predicts every training model's correctness, including RouterDC's
seven 7-8B models (their pass rates on GSM8K-train and ARC are a training source), so the signal costs nothing
at serving time: one more matrix product on the embedding `mf` computes anyway. This probe adds, to the shipped
routing score's logit (the route boost included), ``beta x standardised feature`` for features of those seven
heads' predictions p_1..p_7 (m = their mean), beta from -0.5 to 1.0:

- ``medium``: m (1 - m), largest where the small models are split or unsure (QUALITY.md's medium-hard);
- ``fail``: 1 - m, the small models' predicted failure (monotone difficulty);
- ``spread``: the standard deviation of p_1..p_7 (the small models disagree);
- ``centre``: -|m - 0.5|, medium-hard without the variance's curvature.

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
from quality import decontaminate, expand_holdouts  # bench/ is on the path when a script runs
from result_file import write_result

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from routeray.artifacts import load_artifact  # noqa: E402
from routeray.data import leave_sources_out, load_data_dir  # noqa: E402
from routeray.evaluate.benchmarks import load_benchmark  # noqa: E402
from routeray.evaluate.metrics import apgr  # noqa: E402
from routeray.routers.base import logit  # noqa: E402
from routeray.routers.registry import load_router  # noqa: E402
from routeray.train.cli import get_trainer  # noqa: E402
from routeray.train.common import cached_embedder, golden_eval_sets  # noqa: E402

DEFAULT_ARTIFACT = REPO / "routeray" / "default_artifacts" / "mf"
FEATURES = ("medium", "fail", "spread", "centre")
BETAS = (-0.5, -0.25, -0.1, 0.1, 0.25, 0.5, 1.0)


def heads(router: Any, prompts: list[str], models: list[str]) -> np.ndarray:
    """P(correct) of each of ``models`` (those the router knows) for every prompt, ``(n, k)``."""
    known = [m for m in models if m in router.models]
    return router._quality(list(prompts), [router.models.index(m) for m in known])


def feature(kind: str, p: np.ndarray) -> np.ndarray:
    m = p.mean(axis=1)
    return {"medium": m * (1 - m), "fail": 1 - m, "spread": p.std(axis=1), "centre": -np.abs(m - 0.5)}[kind]


def scored(router: Any, prompts: list[str], small: list[str]) -> dict[str, np.ndarray]:
    return {"score": np.asarray(router.score(list(prompts))), "small": heads(router, prompts, small)}


def out_of_fold(data: Any, small: list[str], work: Path) -> list[dict[str, Any]]:
    cache = work / "folds.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    artifact_cfg = load_artifact(DEFAULT_ARTIFACT).config
    config = {"grid": {}, "selection_holdouts": [], "selection_families": [],
              "route_boost": artifact_cfg.get("route_boost") or {}}
    rows: list[dict[str, Any]] = []
    for label, prefixes in expand_holdouts(data, ["auto", "family:all"]):
        t0 = time.time()
        train, held = leave_sources_out(data, prefixes)
        held, dropped = decontaminate(train, held)
        with tempfile.TemporaryDirectory() as tmp:
            get_trainer("mf")(train, Path(tmp), seed=0, config=config, progress=False)
            spec = load_artifact(tmp).embedder
            for es in golden_eval_sets(held.golden):
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
    shipped = load_router("mf", DEFAULT_ARTIFACT)
    evals = {}
    for b in ("mmlu", "gsm8k", "mt-bench"):
        bench = load_benchmark(b, Path(args.data_dir) / "eval_sample")
        evals[b] = {"sq": np.asarray(bench.strong_quality), "wq": np.asarray(bench.weak_quality),
                    **scored(shipped, list(bench.prompts), small)}
    source_rows = [r for r in rows if not r["holdout"].startswith("family:")]
    scale = {k: float(np.concatenate([feature(k, r["small"]) for r in source_rows]).std()) or 1.0 for k in FEATURES}

    def apgr_of(r: dict[str, Any], kind: str | None, beta: float) -> float:
        s = logit(r["score"])
        if kind is not None:
            s = s + beta * feature(kind, r["small"]) / scale[kind]
        return float(apgr(s, r["sq"], r["wq"]))

    variants: list[dict[str, Any]] = []
    for kind, betas in [(None, (0.0,)), *[(k, BETAS) for k in FEATURES]]:
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
                               "command": " ".join(sys.argv)}, load_before=load_before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
