"""Held-out routing quality: leave one source out, or one whole family of sources, train on the rest, evaluate
on what was held out. Every router beside the zero-training baselines ``length`` and ``knn`` (knn is rebuilt
without the held-out sources too) and the random router's 95 % interval.

Holdouts: a source or prefix (``arena_bench``, ``mmlu_pro/math``, ``routerbench``); ``auto`` for the folds the
trainers select on (every source labelling the weak model with >= 200 golden prompts); ``family:<name>`` for
``routeray.data.SOURCE_FAMILIES`` (math, multiple_choice, open_chat, code) or ``family:all`` for all four.
Held-out prompts within cosine 0.95 of a training prompt are dropped first and counted.

    .venv/bin/python bench/quality.py --routers mf --holdouts auto family:all \
        --set 'mf.grid={}' --set 'mf.selection_holdouts=[]' --set 'mf.selection_families=[]' \
        --output bench/results/quality_heldout.json

The trainers select their own hyper-parameters on leave-one-source-out folds of the data they get, so by
default this is nested (honest, slow: 16 inner folds per grid point for mf); ``--set 'mf.grid={}' --set
'mf.selection_holdouts=[]' --set 'mf.selection_families=[]'`` measures the trainer's default setting instead
(likewise ``knn.``, ``sw_ranking.``; the boost of the default artifact is ``--set 'mf.route_boost={...}'``).
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from result_file import write_result  # bench/ is on the path when a script runs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from routeray.data import SOURCE_FAMILIES, leave_sources_out, load_data_dir  # noqa: E402
from routeray.data.schema import PreferenceData  # noqa: E402
from routeray.routers.registry import load_router  # noqa: E402
from routeray.train.cli import get_trainer  # noqa: E402
from routeray.train.common import (  # noqa: E402
    EvalSet,
    embed_texts,
    evaluate_router_dir,
    evaluate_sets,
    golden_eval_sets,
    load_config,
    source_folds,
)

log = logging.getLogger("bench.quality")
CONTAMINATION_COS = 0.95
DEFAULT_MF_ARTIFACT = REPO / "routeray" / "default_artifacts" / "mf"


def max_cosine(rows: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Each unit row's highest cosine to any of ``others`` (unit rows), in chunks of 4,096."""
    best = np.full(len(rows), -1.0)
    for start in range(0, others.shape[0], 4096):
        best = np.maximum(best, (rows @ others[start:start + 4096].T).max(axis=1))
    return best


def gsm8k_worked_solutions(data_dir: Path, embedder: Any, evaluated: list[str]
                           ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """The GSM8K train split (``unlabeled/gsm8k_train.jsonl``, no model labels): its questions, their embeddings,
    each reference solution's length in lines (before ``####``), and which questions are not within cosine
    CONTAMINATION_COS of any of ``evaluated`` (the ones a probe may learn from)."""
    rows = [json.loads(line) for line in (data_dir / "unlabeled" / "gsm8k_train.jsonl").open(encoding="utf-8")]
    questions = [r["question"] for r in rows]
    lines = np.array([r["answer"].split("####")[0].strip().count("\n") + 1 for r in rows], dtype=float)
    e_q = embedder.embed(questions)
    keep = max_cosine(e_q, embedder.embed(evaluated)) < CONTAMINATION_COS
    return questions, e_q, lines, keep


def decontaminate(train: PreferenceData, heldout: PreferenceData) -> tuple[PreferenceData, int]:
    """Drop held-out prompts whose embedding is within cosine 0.95 of a training prompt."""
    held = heldout.prompts
    if not held:
        return heldout, 0
    e_held, _ = embed_texts(held, None, desc="embedding held-out prompts")
    e_train, _ = embed_texts(train.prompts, None, desc="embedding training prompts")
    max_cos = max_cosine(e_held, e_train)
    bad = {p for p, c in zip(held, max_cos, strict=True) if c >= CONTAMINATION_COS}
    clean = PreferenceData(judgments=[j for j in heldout.judgments if j.prompt not in bad],
                           golden=[g for g in heldout.golden if g.prompt not in bad])
    return clean, len(bad)


def expand_holdouts(data: PreferenceData, names: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """``(label, source prefixes)`` for each holdout name (see the module docstring)."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for name in names:
        if name == "auto":
            out += [(f.holdout, (f.holdout,)) for f in source_folds(data, "auto")]
        elif name == "family:all":
            out += [(f"family:{k}", v) for k, v in SOURCE_FAMILIES.items()]
        elif name.startswith("family:"):
            out.append((name, SOURCE_FAMILIES[name.split(":", 1)[1]]))
        else:
            out.append((name, (name,)))
    return out


def heldout_folds(data: PreferenceData, names: list[str]) -> Iterator[tuple[str, PreferenceData, list[EvalSet], int]]:
    """Per holdout name: its label, the training data without it, its golden eval sets (near-copies of a training
    prompt dropped) and how many prompts were dropped."""
    for label, prefixes in expand_holdouts(data, names):
        train, held = leave_sources_out(data, prefixes)
        held, dropped = decontaminate(train, held)
        yield label, train, golden_eval_sets(held.golden), dropped


def shipped_mf_recipe() -> dict[str, Any]:
    """`routeray train mf` settings for the default artifact's recipe without selection: no grid, no selection
    folds, the shipped artifact's route boost."""
    from routeray.artifacts import load_artifact

    boost = load_artifact(DEFAULT_MF_ARTIFACT).config.get("route_boost") or {}
    return {"grid": {}, "selection_holdouts": [], "selection_families": [], "route_boost": boost}


def evaluate(label: str, train_data: PreferenceData, heldout: PreferenceData, config: dict, args: argparse.Namespace,
             trainable: bool) -> dict:
    """Train router ``label`` (``name`` or ``label=name``) on ``train_data`` (when it learns) and evaluate it on
    the held-out golden labels; its settings are the ``--set label.KEY=VALUE`` ones."""
    router = label.split("=", 1)[-1]
    label = label.split("=", 1)[0]
    if not trainable:
        r = load_router(router)
        return evaluate_sets(lambda prompts, _s, _w: r.score(list(prompts)), golden_eval_sets(heldout.golden),
                             n_seeds=args.num_random_seeds)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {k.split(".", 1)[1]: v for k, v in config.items() if k.startswith(label + ".")}
        get_trainer(router)(train_data, Path(tmp), seed=args.seed, config=cfg, progress=True)
        return evaluate_router_dir(router, tmp, heldout.golden, n_seeds=args.num_random_seeds)


def run(args: argparse.Namespace) -> dict:
    from routeray.train import TRAINERS

    data = load_data_dir(args.data)
    config = load_config(None, args.set)
    routers = list(dict.fromkeys([*args.routers, "length", "knn"]))
    rows = []
    for label, prefixes in expand_holdouts(data, args.holdouts):
        train_data, heldout = leave_sources_out(data, prefixes)
        if not heldout.golden:
            log.warning("%s has no golden labels: no APGR to measure, skipped", label)
            continue
        heldout, n_contaminated = decontaminate(train_data, heldout)
        for router in routers:
            t0 = time.perf_counter()
            result = evaluate(router, train_data, heldout, config, args, router.split("=", 1)[-1] in TRAINERS)
            for group, v in result["per_source"].items():
                rows.append({"holdout": label, "router": router.split("=", 1)[0], "eval_set": group, **v,
                             "n_contaminated": n_contaminated, "train_sources": train_data.sources,
                             "seconds": time.perf_counter() - t0})
    return {"config": config, "seed": args.seed, "routers": [r.split("=", 1)[0] for r in routers], "rows": rows}


def random_mean_interval(rows: list[dict]) -> tuple[float, float]:
    """Random's 95 % interval for the mean APGR over ``rows`` (one per held-out set), from each set's random
    mean and interval: the sets' random routers draw independently, so the mean's spread is the root of the
    summed per-set variances over the count, each variance read off its interval as a normal one's
    (half-width / 1.96)."""
    centre = float(np.mean([r["random_apgr"] for r in rows]))
    sd = float(np.sqrt(sum(((r["random_apgr_ci"][1] - r["random_apgr_ci"][0]) / (2 * 1.96)) ** 2 for r in rows)))
    half = 1.96 * sd / len(rows)
    return centre - half, centre + half


def print_table(result: dict) -> None:
    """One line per (holdout, eval set): each router's APGR (+/- outside random's interval), then the means
    and, per router, on how many lines it beats length and knn."""
    routers = result["routers"]
    cells: dict[tuple[str, str], dict[str, dict]] = {}
    for r in result["rows"]:
        cells.setdefault((r["holdout"], r["eval_set"]), {})[r["router"]] = r
    head = f"{'held out':<26}{'eval set':<13}{'n':>6}  {'random 95%':<14}" + "".join(f"{n:>12}" for n in routers)
    print(head)
    print("-" * len(head))
    for (holdout, group), by in cells.items():
        any_r = next(iter(by.values()))
        lo, hi = any_r["random_apgr_ci"]
        line = f"{holdout:<26}{group:<13}{any_r['n_prompts']:>6}  [{lo:.3f},{hi:.3f}] "
        for name in routers:
            v = by.get(name)
            mark = "" if v is None else "+" if v["apgr"] > hi else "-" if v["apgr"] < lo else " "
            line += f"{'':>12}" if v is None else f"{v['apgr']:>11.3f}{mark}"
        print(line)
    for kind in ("source", "family"):
        keys = [k for k in cells if k[0].startswith("family:") == (kind == "family")]
        if not keys:
            continue
        means = {n: np.mean([cells[k][n]["apgr"] for k in keys if n in cells[k]]) for n in routers}
        lo, hi = random_mean_interval([next(iter(cells[k].values())) for k in keys])
        print(f"{'mean over held-out ' + ('sources' if kind == 'source' else 'family sets'):<44}[{lo:.3f},{hi:.3f}] "
              + "".join(f"{means[n]:>11.3f}{'+' if means[n] > hi else '-' if means[n] < lo else ' '}"
                        for n in routers))
        for base in ("length", "knn"):
            wins = {n: sum(cells[k][n]["apgr"] > cells[k][base]["apgr"] for k in keys if n in cells[k])
                    for n in routers}
            print(f"{'  beats ' + base + ' on (of ' + str(len(keys)) + ')':<59}"
                  + "".join(f"{wins[n] if n != base else '-':>12}" for n in routers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--routers", nargs="+", default=["mf", "sw_ranking"],
                        help="routers to compare, as NAME or LABEL=NAME (the same router with other --set LABEL.KEY=VALUE "
                             "settings); length and knn are always added")
    parser.add_argument("--holdouts", nargs="+", default=["auto", "family:all"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="trainer hyper-parameter as ROUTER.KEY=VALUE, e.g. mf.dim=64 (repeatable)")
    parser.add_argument("--num-random-seeds", type=int, default=100)
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "quality.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run(args)
    print_table(result)
    write_result(args.output, result)


if __name__ == "__main__":
    main()
