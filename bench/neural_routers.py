"""Throughput and held-out quality of the trained neural routers (bert, causal_llm).

Prints, per router: prompts/s at a given batch size over real prompts from ../shared/data, and the APGR of
the router against the random router's mean and 95 % interval on the validation prompts the trainer held
out (as recorded in the artifact's report) and on the RouteLLM-layout eval sample's MMLU and GSM8K files.

    .venv/bin/python bench/neural_routers.py --routers bert causal_llm --batch-size 32 --n 256
"""

from __future__ import annotations

import argparse
import csv
import time

import numpy as np

import routeray
from routeray.evaluate.metrics import apgr, random_baseline
from routeray.paths import shared_data_dir

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


def sample_prompts(n: int) -> list[str]:
    """The first ``n`` GSM8K-train questions (unlabelled, never used for training)."""
    import json

    path = shared_data_dir() / "unlabeled" / "gsm8k_train.jsonl"
    with path.open() as f:
        return [json.loads(line)["question"] for _, line in zip(range(n), f, strict=False)]


def eval_sample() -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """RouteLLM-layout sample: prompts with the strong and weak models' correctness."""
    root = shared_data_dir() / "eval_sample"
    sets: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
    files = {"mmlu": sorted((root / "mmlu" / "responses").glob("mmlu_*.csv")),
             "gsm8k": [root / "gsm8k" / "gsm8k_responses.csv"]}
    for name, paths in files.items():
        prompts, sq, wq = [], [], []
        for path in paths:
            with path.open(newline="") as f:
                for row in csv.DictReader(f):
                    prompts.append(row["prompt"])
                    sq.append(row[STRONG] == "True")
                    wq.append(row[WEAK] == "True")
        sets[name] = (prompts, np.asarray(sq, float), np.asarray(wq, float))
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", nargs="+", default=["bert", "causal_llm"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n", type=int, default=256, help="prompts for the throughput run")
    parser.add_argument("--no-eval", action="store_true", help="throughput only")
    args = parser.parse_args()
    prompts = sample_prompts(args.n)
    samples = {} if args.no_eval else eval_sample()
    for name in args.routers:
        t0 = time.perf_counter()
        router = routeray.load_router(name, batch_size=args.batch_size)
        load_s = time.perf_counter() - t0
        router.score(prompts[: args.batch_size])  # warm-up
        t0 = time.perf_counter()
        router.score(prompts)
        dt = time.perf_counter() - t0
        report = router.artifact.report
        val = report.get("validation", {})
        print(f"{name}: load {load_s:.1f} s; {len(prompts) / dt:.1f} prompts/s at batch {args.batch_size} "
              f"({len(prompts)} GSM8K prompts, {dt:.1f} s); training took {report.get('seconds')} s")
        print(f"  validation APGR {val.get('apgr')} (random {val.get('random_apgr')}, 95% {val.get('random_ci')}, "
              f"n={val.get('n')})")
        for fam, r in sorted(val.get("by_source", {}).items()):
            print(f"    {fam}: APGR {r.get('apgr')} (random {r.get('random_apgr')} {r.get('random_ci')}, n={r['n']})")
        for bench, (ps, sq, wq) in samples.items():
            scores = router.score(ps)
            base = random_baseline(sq, wq, n_seeds=200, n_points=None)
            print(f"  eval_sample/{bench}: APGR {apgr(scores, sq, wq):.3f} (random {base.apgr:.3f}, "
                  f"95% [{base.apgr_ci[0]:.3f}, {base.apgr_ci[1]:.3f}], n={len(ps)})")


if __name__ == "__main__":
    main()
