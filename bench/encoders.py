"""Prompt encoders for the routers, speed against quality: MiniLM and the static table (an int8 MiniLM was
measured here too and retired: see bench/encoders.md).

Speed: prompts/s of ``Embedder.embed`` at batch 1/8/32/128 on training prompts sampled from every source
(2 torch threads). The encoders take turns within each round and each cell keeps its best of ``--rounds``
rounds, so they are compared under the same load on a shared machine.
Fidelity to MiniLM on 2,000 such prompts: for the static table (another vector space) the rank correlation of pairwise cosines and the overlap of the ten
nearest neighbours.
Quality (``--work DIR``, with ``--run-quality`` to produce what is missing): the mf router trained with
each encoder by the project's trainer, the same recipe for all, evaluated on

* ``eval_sample`` (mmlu, gsm8k, mt-bench; trained on all of ../shared/data with the trainer's defaults),
  the routers in one call of ``routeray eval``'s function (``evaluate_benchmark``), so all are judged on
  the same prompts (those no router's training data contaminates, each in its own vector space), and
* held-out sources with ``bench/quality.py`` (arena_bench, routerbench, mmlu_pro; mf defaults, no grid, no
  inner selection folds, as in bench/results/quality_loso_after.json).

    .venv/bin/python bench/encoders.py --work /tmp/encoders --run-quality

Prints a table and writes ``bench/results/encoders.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from result_file import write_result  # bench/ is on the path when a script runs

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from routeray.encoders.base import Embedder  # noqa: E402
from routeray.encoders.registry import DEFAULT_SPEC, make_embedder  # noqa: E402

ENCODERS: dict[str, dict[str, Any]] = {
    "minilm": dict(DEFAULT_SPEC),
    "static": {"kind": "static", "model": "minilm-static-256"},
}
BENCHMARKS = ["mmlu", "gsm8k", "mt-bench"]
HOLDOUTS = ["arena_bench", "routerbench", "mmlu_pro"]
HOLDOUT_SETTINGS = ["mf.grid={}", "mf.selection_holdouts=[]"]


def sample_prompts(data_dir: str, n: int, seed: int) -> list[str]:
    from routeray.data import load_data_dir

    prompts = load_data_dir(data_dir).prompts
    return [prompts[i] for i in np.random.default_rng(seed).permutation(len(prompts))[:n]]


def prompts_per_s(embedder: Embedder, prompts: list[str], batch: int, seconds: float, offset: int) -> float:
    """Embed consecutive batches for about ``seconds``; distinct prompts, so no cache can help."""
    done, spent = 0, 0.0
    while done == 0 or spent < seconds:
        start = offset + done
        chunk = [prompts[(start + i) % len(prompts)] for i in range(batch)]
        t0 = time.perf_counter()
        embedder.embed(chunk)
        spent += time.perf_counter() - t0
        done += batch
    return done / spent


def measure_speed(embedders: dict[str, Embedder], prompts: list[str], batches: list[int], seconds: float,
                  rounds: int) -> dict[str, dict[int, float]]:
    best: dict[str, dict[int, float]] = {name: {} for name in embedders}
    for r in range(rounds):
        for batch in batches:
            for name, emb in embedders.items():
                rate = prompts_per_s(emb, prompts, batch, seconds, offset=r * 997)
                best[name][batch] = max(best[name].get(batch, 0.0), rate)
                print(f"round {r + 1} {name:<12} batch {batch:>4}: {rate:9.1f} prompts/s", file=sys.stderr, flush=True)
    return best


def rank(x: np.ndarray) -> np.ndarray:
    out = np.empty(len(x))
    out[np.argsort(x, kind="stable")] = np.arange(len(x))
    return out


def fidelity(embedders: dict[str, Embedder], prompts: list[str], seed: int) -> dict[str, dict[str, float]]:
    """How close each encoder's geometry is to float MiniLM's on ``prompts`` (training prompts: their vectors
    come from the on-disk embedding cache that training filled, so this costs no encoder time)."""
    from routeray.encoders.cache import EmbeddingCache

    ref = EmbeddingCache(embedders["minilm"]).embed(prompts)
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(prompts), 20000), rng.integers(0, len(prompts), 20000)
    keep = a != b
    a, b = a[keep], b[keep]
    ref_pairs = (ref[a] * ref[b]).sum(axis=1)
    ref_nn = np.argsort(-(ref @ ref.T), axis=1)[:, 1:11]
    out: dict[str, dict[str, float]] = {}
    for name, emb in embedders.items():
        vec = ref if name == "minilm" else EmbeddingCache(emb).embed(prompts)
        pairs = (vec[a] * vec[b]).sum(axis=1)
        nn = np.argsort(-(vec @ vec.T), axis=1)[:, 1:11]
        row = {"pairwise_cos_spearman": float(np.corrcoef(rank(ref_pairs), rank(pairs))[0, 1]),
               "knn10_overlap": float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(ref_nn, nn, strict=True)]))}
        if vec.shape == ref.shape:
            cos = (vec * ref).sum(axis=1)
            row.update(cos_to_minilm_mean=float(cos.mean()), cos_to_minilm_min=float(cos.min()))
        out[name] = row
    return out


def run_quality(work: Path, data: str) -> None:
    """Train and evaluate mf with each encoder into ``work`` (steps whose output exists are skipped)."""
    py = sys.executable
    for name, spec in ENCODERS.items():
        art = work / f"art_{name}"
        if not (art / "mf" / "config.json").is_file():
            subprocess.run([py, "-m", "routeray", "train", "mf", "--data", data, "--out", str(art / "mf"),
                            "--set", f"embedder={json.dumps(spec)}"], check=True, cwd=REPO)
        if not (work / f"quality_{name}.json").is_file():
            sets = [x for s in [f"mf.embedder={json.dumps(spec)}", *HOLDOUT_SETTINGS] for x in ("--set", s)]
            subprocess.run([py, str(REPO / "bench" / "quality.py"), "--data", data, "--routers", "mf",
                            "--holdouts", *HOLDOUTS, *sets, "--output", str(work / f"quality_{name}.json")],
                           check=True, cwd=REPO)
    evaluate_sample(work, data)


def evaluate_sample(work: Path, data: str) -> None:
    """The three mf routers on each eval_sample benchmark, in one evaluation (same prompts for all)."""
    from routeray import load_router
    from routeray.evaluate.benchmarks import load_benchmark
    from routeray.evaluate.cache import ScoreCache
    from routeray.evaluate.runner import evaluate_benchmark

    for bench_name in BENCHMARKS:
        if (work / "eval_sample" / f"{bench_name}.json").is_file():
            continue
        bench = load_benchmark(bench_name, Path(data) / "eval_sample")
        routers = {f"mf_{name}": load_router("mf", work / f"art_{name}" / "mf", strong_model=bench.strong_model,
                                             weak_model=bench.weak_model) for name in ENCODERS}
        evaluate_benchmark(bench, routers, output=work / "eval_sample", cache=ScoreCache())


def collect_quality(work: Path) -> dict[str, Any]:
    """APGR of mf per encoder from the outputs in ``work``, beside the random router's 95 % interval."""
    out: dict[str, Any] = {}
    for name in ENCODERS:
        row: dict[str, Any] = {}
        cfg = work / f"art_{name}" / "mf" / "config.json"
        if cfg.is_file():
            meta = json.loads(cfg.read_text())
            row["embedder"] = meta["embedder"]
            row["validation_mean_apgr"] = meta["report"].get("validation", {}).get("mean_apgr")
        for bench in BENCHMARKS:
            f = work / "eval_sample" / f"{bench}.json"
            if f.is_file():
                res = json.loads(f.read_text())
                row[f"eval_sample/{bench}"] = {"apgr": res["routers"][f"mf_{name}"]["apgr"],
                                               "random_ci": res["routers"]["random"]["apgr_ci"],
                                               "n_prompts": res["n_prompts"], "n_contaminated": res["n_contaminated"]}
        q = work / f"quality_{name}.json"
        if q.is_file():
            for r in json.loads(q.read_text())["rows"]:
                row[f"heldout/{r['holdout']}"] = {"apgr": r["apgr"], "random_ci": r["random_apgr_ci"],
                                                  "n_prompts": r["n_prompts"]}
        heldout = [v["apgr"] for k, v in row.items() if k.startswith("heldout/")]
        sample = [v["apgr"] for k, v in row.items() if k.startswith("eval_sample/")]
        row["heldout_mean_apgr"] = float(np.mean(heldout)) if heldout else None
        row["eval_sample_mean_apgr"] = float(np.mean(sample)) if sample else None
        out[name] = row
    return out


def print_table(result: dict[str, Any]) -> None:
    batches = result["batches"]
    print(f"encoder prompts/s ({result['threads']} torch threads, best of {result['rounds']} rounds; "
          f"1-min load {result['load_avg_1min_start']:.1f} -> {result['load_avg_1min_end']:.1f})")
    head = f"{'encoder':<13}" + "".join(f"{'b=' + str(b):>9}" for b in batches)
    head += f"{'rho':>7}{'knn10':>7}{'val':>7}{'held-out':>9}{'sample':>8}"
    print(head)
    for name in ENCODERS:
        speed, fid = result["speed"][name], result["fidelity"][name]
        q = result.get("quality", {}).get(name, {})

        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        print(f"{name:<13}" + "".join(f"{speed[b]:>9.0f}" for b in batches)
              + f"{fid['pairwise_cos_spearman']:>7.3f}{fid['knn10_overlap']:>7.3f}"
              + f"{f(q.get('validation_mean_apgr')):>7}{f(q.get('heldout_mean_apgr')):>9}"
              + f"{f(q.get('eval_sample_mean_apgr')):>8}")
    for name, q in result.get("quality", {}).items():
        cells = [f"{k}={v['apgr']:.3f} [{v['random_ci'][0]:.3f}, {v['random_ci'][1]:.3f}]"
                 for k, v in q.items() if isinstance(v, dict) and "apgr" in v]
        print(f"  {name}: " + "; ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32, 128])
    ap.add_argument("--seconds", type=float, default=1.5, help="time per cell per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-prompts", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--work", default=None, help="folder with (or for) the quality runs")
    ap.add_argument("--run-quality", action="store_true", help="train and evaluate what --work lacks")
    ap.add_argument("--output", default=str(REPO / "bench" / "results" / "encoders.json"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.run_quality:
        if not args.work:
            raise SystemExit("--run-quality needs --work")
        run_quality(Path(args.work), args.data)
    prompts = sample_prompts(args.data, args.n_prompts, args.seed)
    embedders = {name: make_embedder(spec) for name, spec in ENCODERS.items()}
    for emb in embedders.values():
        emb.embed(["warm-up"])
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu_count": os.cpu_count(),
        "threads": args.threads, "rounds": args.rounds, "seconds_per_cell": args.seconds, "batches": args.batches,
        "load_avg_1min_start": os.getloadavg()[0],
        "specs": {name: emb.spec for name, emb in embedders.items()},
        "prompts": {"n": len(prompts), "chars_median": float(np.median([len(p) for p in prompts])),
                    "source": args.data},
    }
    result["speed"] = measure_speed(embedders, prompts, args.batches, args.seconds, args.rounds)
    result["load_avg_1min_end"] = os.getloadavg()[0]
    result["fidelity"] = fidelity(embedders, prompts, args.seed)
    if args.work:
        result["quality"] = collect_quality(Path(args.work))
        result["quality_settings"] = {"eval_sample": "mf trainer defaults, all of --data",
                                      "heldout": HOLDOUT_SETTINGS, "holdouts": HOLDOUTS}
    print_table(result)
    write_result(args.output, result)


if __name__ == "__main__":
    main()
