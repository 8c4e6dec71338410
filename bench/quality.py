"""Leave-one-source-out routing quality of the trainable embedding routers (mf, sw_ranking).

For each held-out source (arena_bench, routerbench, mmlu_pro, or finer: routerbench/mbpp, mmlu_pro/math…)
the router is trained on every other source with the project's own trainer, then evaluated on the held-out
golden labels: APGR beside the random router's mean and 95 % interval (100 seeds). Held-out prompts with
cosine >= 0.95 to any training prompt are dropped first and counted (decontamination).

    .venv/bin/python bench/quality.py --data ../shared/data --routers mf sw_ranking \
        --holdouts arena_bench routerbench mmlu_pro --output bench/results/quality.json

Prints a table and writes JSON. Training runs are small but not instant (minutes each on 2 cores). The
trainers select their own hyper-parameters on leave-one-source-out folds of the data they get, so by default
this is nested (honest, slow: 12 inner folds per grid point); to measure one fixed setting, skip the inner
folds: ``--set 'mf.grid={}' --set 'mf.selection_holdouts=[]'`` (likewise ``sw_ranking.``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from routeray.data import leave_source_out, load_data_dir  # noqa: E402
from routeray.data.schema import PreferenceData  # noqa: E402
from routeray.train.cli import get_trainer  # noqa: E402
from routeray.train.common import embed_texts, evaluate_router_dir, load_config  # noqa: E402

log = logging.getLogger("bench.quality")
CONTAMINATION_COS = 0.95


def decontaminate(train: PreferenceData, heldout: PreferenceData) -> tuple[PreferenceData, int]:
    """Drop held-out prompts whose embedding is within cosine 0.95 of a training prompt."""
    held = heldout.prompts
    if not held:
        return heldout, 0
    e_held, _ = embed_texts(held, None, desc="embedding held-out prompts")
    e_train, _ = embed_texts(train.prompts, None, desc="embedding training prompts")
    max_cos = np.full(len(held), -1.0)
    for start in range(0, e_train.shape[0], 4096):
        max_cos = np.maximum(max_cos, (e_held @ e_train[start:start + 4096].T).max(axis=1))
    bad = {p for p, c in zip(held, max_cos, strict=True) if c >= CONTAMINATION_COS}
    clean = PreferenceData(judgments=[j for j in heldout.judgments if j.prompt not in bad],
                           golden=[g for g in heldout.golden if g.prompt not in bad])
    return clean, len(bad)


def run(args: argparse.Namespace) -> dict:
    data = load_data_dir(args.data)
    config = load_config(None, args.set)
    rows = []
    for holdout in args.holdouts:
        train_data, heldout = leave_source_out(data, holdout)
        if not heldout.golden:
            log.warning("%s has no golden labels: no APGR to measure, skipped", holdout)
            continue
        heldout, n_contaminated = decontaminate(train_data, heldout)
        for router in args.routers:
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                cfg = {k.split(".", 1)[1]: v for k, v in config.items() if k.startswith(router + ".")}
                get_trainer(router)(train_data, Path(tmp), seed=args.seed, config=cfg, progress=True)
                result = evaluate_router_dir(router, tmp, heldout.golden, n_seeds=args.num_random_seeds)
            for group, v in result["per_source"].items():
                rows.append({"holdout": holdout, "router": router, "eval_set": group, **v,
                             "n_contaminated": n_contaminated, "train_sources": train_data.sources,
                             "seconds": time.perf_counter() - t0})
    return {"config": config, "seed": args.seed, "rows": rows}


def print_table(result: dict) -> None:
    head = f"{'held out':<22}{'router':<12}{'pair (strong vs weak)':<48}{'n':>6}{'APGR':>8}  random [95% interval]"
    print(head)
    print("-" * len(head))
    for r in result["rows"]:
        lo, hi = r["random_apgr_ci"]
        verdict = "above" if r["apgr"] > hi else "below" if r["apgr"] < lo else "inside"
        pair = f"{r['strong']} vs {r['weak'].split('/')[-1]}"
        print(f"{r['holdout']:<22}{r['router']:<12}{pair:<48}{r['n_prompts']:>6}{r['apgr']:>8.3f}  "
              f"{r['random_apgr']:.3f} [{lo:.3f}, {hi:.3f}] {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--routers", nargs="+", default=["mf", "sw_ranking"])
    parser.add_argument("--holdouts", nargs="+", default=["arena_bench", "routerbench", "mmlu_pro"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="trainer hyper-parameter as ROUTER.KEY=VALUE, e.g. mf.dim=64 (repeatable)")
    parser.add_argument("--num-random-seeds", type=int, default=100)
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "quality.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run(args)
    print_table(result)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
