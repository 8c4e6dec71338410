"""Which decision rule should route among N models? Measured on a validation split of RouterBench's
*training* files, so the choice never sees the test files the README's figures come from.

mf is trained (the project's own trainer, default hyper-parameters without selection folds) on a training view minus a random quarter of the
RouterBench train prompts; both pool rules of :mod:`routeray.routers.pool` then route those held-back
prompts among RouterBench's 11 models, judged by :func:`routeray.evaluate.pool.evaluate_pool` (recorded
cost per call, decontaminated against the router's training prompts):

    bench/make_heldout_view.sh /tmp/heldout_data
    .venv/bin/python bench/pool_rules.py --data /tmp/heldout_data --work /tmp/pool_rules \
        --output bench/results/pool_rules.json

Prints both rules' figures and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from routeray.data import load_data_dir  # noqa: E402
from routeray.data.schema import PreferenceData  # noqa: E402
from routeray.evaluate.cache import ScoreCache  # noqa: E402
from routeray.evaluate.pool import evaluate_pool, pool_summary  # noqa: E402
from routeray.evaluate.pool_data import load_pool  # noqa: E402
from routeray.routers.pool import RULES  # noqa: E402
from routeray.routers.registry import load_router  # noqa: E402

log = logging.getLogger("bench.pool_rules")
# the trainer's default hyper-parameters, no selection folds: the recipe of the README's held-out router
FIXED = {"grid": {}, "selection_holdouts": []}


def split(data: PreferenceData, fraction: float, seed: int) -> tuple[PreferenceData, set[str]]:
    """The data without a random ``fraction`` of the RouterBench prompts, and those prompts."""
    rb = sorted({g.prompt for g in data.golden if g.source.startswith("routerbench")})
    rng = np.random.default_rng(seed)
    held = {rb[i] for i in rng.permutation(len(rb))[: int(round(fraction * len(rb)))]}
    train = PreferenceData(judgments=[j for j in data.judgments if j.prompt not in held],
                           golden=[g for g in data.golden if g.prompt not in held])
    return train, held


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="training view (bench/make_heldout_view.sh)")
    ap.add_argument("--work", required=True, help="folder for the validation-split mf artifact (reused)")
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    data = load_data_dir(args.data)
    train, held = split(data, args.fraction, args.seed)
    artifact = Path(args.work) / "mf"
    if not (artifact / "config.json").is_file():
        from routeray.train.mf import train as train_mf

        log.info("training mf on %d prompts (%d RouterBench prompts held back)", len(train.prompts), len(held))
        train_mf(train, artifact, seed=args.seed, config=FIXED)
    router = load_router("mf", artifact)
    files = sorted((Path(args.data) / "golden" / "routerbench").glob("*_train.csv"))
    bench = load_pool(files, name="routerbench-train-validation")
    bench = bench.subset(np.asarray([p in held for p in bench.prompts]))
    out = {}
    for rule in RULES:
        res = evaluate_pool(bench, {"mf": router}, rule=rule, cache=ScoreCache())
        sys.stdout.write(pool_summary(res) + "\n\n")
        out[rule] = {k: res[k] for k in ("n_prompts", "n_contaminated", "best_model", "single_models")}
        out[rule]["mf"] = {k: v for k, v in res["routers"]["mf"].items() if k != "curve"}
        out[rule]["mf"]["two_model"].pop("curve")
        out[rule]["random_mix"] = {k: v for k, v in res["random_mix"].items() if k != "curve"}
    if args.output:
        Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
