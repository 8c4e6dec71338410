"""Evaluate routers on the eval sample and on held-out golden sets; print a Markdown results table.

    .venv/bin/python bench/eval_table.py --routers mf sw_ranking --output bench/results/eval

Sets: the three RouteLLM-layout benchmarks in ../shared/data/eval_sample, the RouterBench test CSVs,
arena-bench v1 (GPT-4 grades of gpt-4-1106-preview and Mixtral), MMLU-Pro (gpt-4o vs Mixtral). A set is
held out only if the router was not trained on it: the table says which prompts decontamination dropped,
and `contamination.unknown_for` in each JSON names routers that do not expose their training prompts.
Writes ``<output>/<set>.json`` / ``.png`` per set and ``<output>/table.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from routeray.errors import RouterayError  # noqa: E402
from routeray.evaluate.benchmarks import load_benchmark, load_golden  # noqa: E402
from routeray.evaluate.cache import ScoreCache  # noqa: E402
from routeray.evaluate.cli import load_routers  # noqa: E402
from routeray.evaluate.runner import evaluate_benchmark  # noqa: E402
from routeray.paths import shared_data_dir  # noqa: E402

SETS = ["mmlu", "gsm8k", "mt-bench", "routerbench-arc", "routerbench-winogrande", "routerbench-mbpp",
        "arena-bench", "mmlu-pro"]


def load_set(name: str, data: Path):
    if name in ("mmlu", "gsm8k", "mt-bench"):
        return load_benchmark(name, data / "eval_sample")
    files = {"routerbench-arc": "arc_challenge_test.csv", "routerbench-winogrande": "winograde_test.csv",
             "routerbench-mbpp": "mbpp_test.csv"}
    if name in files:
        return load_golden(data / "golden/routerbench" / files[name], name=name)
    if name == "arena-bench":
        return load_golden(data / "preference/arena_bench_v1", name=name)
    if name == "mmlu-pro":
        return load_golden(data / "golden/mmlu_pro", strong_model="gpt-4o-2024-05-13", name=name)
    raise SystemExit(f"unknown set {name!r}; known: {', '.join(SETS)}")


def fmt(v, pct=False):
    return "n/a" if v is None else (f"{v:.1f}%" if pct else f"{v:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routers", nargs="+", required=True)
    ap.add_argument("--artifacts", default=None, help="folder with one artifact folder per router")
    ap.add_argument("--sets", nargs="+", default=SETS, choices=SETS)
    ap.add_argument("--output", default="bench/results/eval")
    ap.add_argument("--data", default=str(shared_data_dir()))
    ap.add_argument("--num-random-seeds", type=int, default=200)
    ap.add_argument("--train-data", default=None,
                    help="data folder the routers were trained on: decontaminate against its prompts "
                         "(cosine >= 0.95, MiniLM) and report the benchmark-dataset similarity")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.output)
    rows = ["| set | router | APGR | random APGR 95% interval | vs random | CPT(50%) | CPT(80%) | prompts "
            "(dropped) | strong / weak quality |", "|---|---|---|---|---|---|---|---|---|"]
    routers_cache: dict[tuple[str, str], dict] = {}
    train_prompts = None
    if args.train_data:
        from routeray.data import load_data_dir

        train_prompts = load_data_dir(args.train_data).prompts
    for name in args.sets:
        t0 = time.perf_counter()
        bench = load_set(name, Path(args.data))
        pair = (bench.strong_model, bench.weak_model)
        if pair not in routers_cache:
            routers_cache[pair] = load_routers(args.routers, args.artifacts, *pair)
        try:
            res = evaluate_benchmark(bench, routers_cache[pair], output=out,
                                     num_random_seeds=args.num_random_seeds, cache=ScoreCache(),
                                     train_prompts=train_prompts)
        except RouterayError as exc:  # e.g. every prompt is in a router's training data
            rows.append(f"| {name} | - | not evaluated: {exc} | | | | | {len(bench)} | |")
            print(f"{name}: {exc}", file=sys.stderr)
            continue
        rnd = res["routers"]["random"]
        lo, hi = rnd["apgr_ci"]
        for rname, r in res["routers"].items():
            rows.append(f"| {name} | {rname} | {fmt(r['apgr'])} | [{fmt(lo)}, {fmt(hi)}] | "
                        f"{r.get('vs_random', '-')} | {fmt(r['cpt50'], True)} | {fmt(r['cpt80'], True)} | "
                        f"{res['n_prompts']} ({res['n_contaminated']}) | "
                        f"{res['strong_score']:.3f} / {res['weak_score']:.3f} |")
        sim = res["contamination"]["by_router"].get("given training prompts", {}).get("similarity")
        o = res["oracle"]
        rows.append(f"| {name} | *oracle* | {fmt(o['apgr'])} | | | {fmt(o['cpt50'], True)} | "
                    f"{fmt(o['cpt80'], True)} | | |")
        print(f"{name}: done in {time.perf_counter() - t0:.1f}s "
              f"({bench.strong_model} vs {bench.weak_model}; unknown training data for "
              f"{res['contamination']['unknown_for'] or 'none'}; similarity to --train-data {sim})",
              file=sys.stderr)
    table = "\n".join(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
