"""Does `mf` route better when it also learns how long a worked solution is?

GSM8K's train split (``unlabeled/gsm8k_train.jsonl``) has reference solutions and no model labels. The length of
a solution, lines before ``####``, is a difficulty label nobody paid a model for; alone, a ridge model of it ranks
the held-out sources above ``length`` and ``knn`` (bench/difficulty_boost.py), but added to `mf`'s score afterwards
it tied. Here it goes into `mf`'s training instead, as golden labels (score = 1 - the solution's length
percentile), so the shared projection has to represent it:

- ``head``: the labels belong to a model of their own (``gsm8k-reference/short-solution``); the routing pair's
  heads may use the direction or not;
- ``weak``: the labels are imputed to the weak model (Mixtral-8x7B-Instruct-v0.1), with the strong model
  (gpt-4-1106-preview) right on every question: "the weak model fails the long ones";
- ``weak_half``: the same imputation, with half the weight (scores pulled halfway to 0.5).

Questions within cosine 0.95 of any prompt this probe evaluates (every golden prompt, the eval sample) are left
out first. For each of the 12 source folds and the 4 family folds, the default recipe (shipped boost, no
selection grid, seed 0) is trained on the rest without and with each variant's labels; the held-out golden sets
(near-copies dropped) are scored. The eval sample is scored by full-data trainings for information only.

    .venv/bin/python bench/solution_head.py --output bench/results/solution_head.json
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from quality import DEFAULT_MF_ARTIFACT, gsm8k_worked_solutions, heldout_folds, shipped_mf_recipe
from result_file import write_result

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from routeray.artifacts import load_artifact  # noqa: E402
from routeray.data import GoldenLabel, PreferenceData, load_data_dir  # noqa: E402
from routeray.evaluate.benchmarks import load_benchmark  # noqa: E402
from routeray.evaluate.metrics import apgr  # noqa: E402
from routeray.routers.registry import load_router  # noqa: E402
from routeray.train.cli import get_trainer  # noqa: E402
from routeray.train.common import cached_embedder  # noqa: E402

SOURCE = "gsm8k_solutions"
STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
VARIANTS = ("none", "head", "weak", "weak_half")


def solution_labels(data_dir: Path, embedder: Any, evaluated: list[str]) -> tuple[list[str], np.ndarray]:
    """GSM8K train questions far from every evaluated prompt, and 1 - their solution length's percentile."""
    questions, _, lines, keep = gsm8k_worked_solutions(data_dir, embedder, evaluated)
    lines = lines[keep]
    pct = (np.argsort(np.argsort(lines, kind="stable"), kind="stable") + 0.5) / len(lines)
    kept = [q for q, k in zip(questions, keep, strict=True) if k]
    print(f"solution labels: {len(kept)} of {len(questions)} GSM8K train questions kept", flush=True)
    return kept, 1.0 - pct


def pseudo(variant: str, questions: list[str], short: np.ndarray) -> PreferenceData:
    if variant == "none":
        return PreferenceData()
    if variant == "head":
        golden = [GoldenLabel(q, "gsm8k-reference/short-solution", float(s), SOURCE) for q, s in zip(questions, short, strict=True)]
    else:
        weak = short if variant == "weak" else 0.5 + (short - 0.5) / 2
        strong = 1.0 if variant == "weak" else 0.75
        golden = [g for q, s in zip(questions, weak, strict=True) for g in (GoldenLabel(q, WEAK, float(s), SOURCE),
                                                               GoldenLabel(q, STRONG, strong, SOURCE))]
    return PreferenceData(golden=golden)


def train_into(out: Path, train: PreferenceData, extra: PreferenceData, recipe: dict[str, Any]) -> None:
    """The default recipe (seed 0) trained on ``train`` plus ``extra``'s golden labels, written to ``out``."""
    data = PreferenceData(judgments=list(train.judgments), golden=list(train.golden) + list(extra.golden))
    get_trainer("mf")(data, out, seed=0, config=recipe, progress=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--output", default="bench/results/solution_head.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_before = os.getloadavg()[0]
    data_dir = Path(args.data_dir)
    data = load_data_dir(data_dir)
    recipe = shipped_mf_recipe()
    embedder = cached_embedder(load_artifact(DEFAULT_MF_ARTIFACT).embedder)
    benches = {b: load_benchmark(b, data_dir / "eval_sample") for b in ("mmlu", "gsm8k", "mt-bench")}
    evaluated = sorted({g.prompt for g in data.golden} | {p for b in benches.values() for p in b.prompts})
    questions, short = solution_labels(data_dir, embedder, evaluated)
    extras = {v: pseudo(v, questions, short) for v in args.variants}

    per_set: dict[str, dict[str, float]] = {v: {} for v in args.variants}
    for label, train, sets, _ in heldout_folds(data, ["auto", "family:all"]):
        t0 = time.time()
        for v in args.variants:
            with tempfile.TemporaryDirectory() as tmp:
                train_into(Path(tmp), train, extras[v], recipe)
                for es in sets:
                    r = load_router("mf", tmp, strong_model=es.strong, weak_model=es.weak, embedder=embedder)
                    per_set[v][f"{label}|{es.group}"] = float(apgr(np.asarray(r.score(list(es.prompts))),
                                                                   es.strong_q, es.weak_q))
        print(f"{label}: {time.time() - t0:.0f} s  " + "  ".join(
            f"{v} {np.mean([a for k, a in per_set[v].items() if k.startswith(label + '|')]):.3f}"
            for v in args.variants), flush=True)

    results = []
    for v in args.variants:
        with tempfile.TemporaryDirectory() as tmp:
            train_into(Path(tmp), data, extras[v], recipe)
            r = load_router("mf", tmp, embedder=embedder)
            ev = {b: round(float(apgr(np.asarray(r.score(list(bench.prompts))), np.asarray(bench.strong_quality),
                                      np.asarray(bench.weak_quality))), 4) for b, bench in benches.items()}
        src = [a for k, a in per_set[v].items() if not k.startswith("family:")]
        fam = [a for k, a in per_set[v].items() if k.startswith("family:")]
        row = {"variant": v, "source_mean": round(float(np.mean(src)), 4), "family_mean": round(float(np.mean(fam)), 4),
               "all_mean": round(float(np.mean(src + fam)), 4),
               "per_set": {k: round(a, 4) for k, a in per_set[v].items()}, "eval_sample": ev}
        results.append(row)
        print(f"{v:>10}  12 sources {row['source_mean']:.4f}  7 family sets {row['family_mean']:.4f}  all 19 "
              f"{row['all_mean']:.4f}  | eval sample (information only) "
              + " ".join(f"{b} {a:.3f}" for b, a in ev.items()), flush=True)
    write_result(args.output, {"n_questions": len(questions), "variants": results, "command": " ".join(sys.argv)},
                 load_before=load_before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
