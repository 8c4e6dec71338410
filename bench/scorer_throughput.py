"""Scorer throughput per router and replica: prompts/s of ``router.score`` against batch size.

One process is one replica. Prompts are sampled from the training sources in ../shared/data, so their
lengths are realistic (the embedding cost grows with length). Each (router, batch size) cell scores
batches of distinct prompts for about ``--seconds`` and reports prompts/s and the median batch time.
With ``--batcher``, the same routers are also driven through the scorer deployment's
:class:`~routeray.gateway.batching.ContinuousBatcher` (the code path of ``RouterScorer``, without Ray's
RPC): as many concurrent submitters as the batch size, ``max_batch_size`` = the batch size.

    .venv/bin/python bench/scorer_throughput.py                     # all routers with an artifact
    .venv/bin/python bench/scorer_throughput.py --routers random mf --batcher \
        --extra mf-static=mf:/path/to/mf-artifact-trained-with-the-static-embedder

Neural routers (bert, causal_llm) need their artifacts (``make artifacts``); without one they are skipped
with a message, and their sweep is short. Prints a table, writes ``bench/results/scorer_throughput.json``
and a log-log plot beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
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

from routeray.errors import RouterayError  # noqa: E402

CHEAP_BATCHES = [1, 8, 32, 128, 512]
# the neural routers take seconds per large batch on 2 cores: a short sweep keeps the run in minutes
SHORT_BATCHES = {"bert": [1, 8, 32], "causal_llm": [1, 8]}


def sample_prompts(data_dir: str, n: int, seed: int) -> list[str]:
    """``n`` distinct training prompts drawn at random from every source (realistic lengths)."""
    from routeray.data import load_data_dir

    prompts = load_data_dir(data_dir).prompts
    rng = np.random.default_rng(seed)
    return [prompts[i] for i in rng.permutation(len(prompts))[:n]]


def load_load_average() -> float:
    return os.getloadavg()[0]


def time_direct(score: Any, prompts: list[str], batch: int, seconds: float) -> dict[str, Any]:
    """Call ``score`` on consecutive batches of ``batch`` prompts for about ``seconds``."""
    times: list[float] = []
    done = start = 0
    t_end = time.perf_counter() + seconds
    while not times or time.perf_counter() < t_end:
        chunk = [prompts[(start + i) % len(prompts)] for i in range(batch)]
        start += batch
        t0 = time.perf_counter()
        out = score(chunk)
        times.append(time.perf_counter() - t0)
        if len(out) != batch:
            raise RouterayError(f"score returned {len(out)} values for {batch} prompts")
        done += batch
    return {"prompts_per_s": done / sum(times), "median_batch_ms": 1e3 * statistics.median(times),
            "n_prompts": done, "n_batches": len(times)}


def time_batcher(score: Any, prompts: list[str], batch: int, seconds: float) -> dict[str, Any]:
    """Drive ``score`` through the scorer's ContinuousBatcher with ``batch`` concurrent submitters."""
    from routeray.gateway.batching import ContinuousBatcher

    async def run() -> dict[str, Any]:
        batcher = ContinuousBatcher(score, max_batch_size=batch, wait_s=0.0, name="bench")
        sizes: list[int] = []
        t_end = time.perf_counter() + seconds
        counter = iter(range(10**9))

        async def client() -> None:
            while time.perf_counter() < t_end or not sizes:
                r = await batcher.submit(prompts[next(counter) % len(prompts)])
                sizes.append(r.batch_size)

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(batch)))
        elapsed = time.perf_counter() - t0
        return {"prompts_per_s": len(sizes) / elapsed, "mean_batch": float(np.mean(sizes)), "n_prompts": len(sizes)}

    return asyncio.run(run())


def load_routers(names: list[str], extras: list[str]) -> dict[str, tuple[Any, str]]:
    """``label -> (router, where)``; routers whose artifact is missing are skipped with a message."""
    from routeray import load_router

    wanted = [(n, n, None) for n in names]
    for extra in extras:
        label, _, rest = extra.partition("=")
        router, _, artifact = rest.partition(":")
        if not (label and router):
            raise SystemExit(f"--extra {extra!r}: expected LABEL=ROUTER[:ARTIFACT_DIR]")
        wanted.append((label, router, artifact or None))
    loaded: dict[str, tuple[Any, str]] = {}
    for label, router, artifact in wanted:
        try:
            r = load_router(router, artifact)
            r.score(["warm-up"])  # lazy weights load here, not inside the timed loop
        except RouterayError as exc:
            print(f"skipping {label}: {exc}", file=sys.stderr)
            continue
        spec = getattr(getattr(r, "embedder", None), "spec", None)
        loaded[label] = (r, f"{router} {artifact or '(default artifact)'} embedder={spec}")
    return loaded


def plot(result: dict[str, Any], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for label, rows in result["routers"].items():
        xs = [r["batch"] for r in rows["direct"]]
        ax.plot(xs, [r["prompts_per_s"] for r in rows["direct"]], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("prompts/s (one process)")
    ax.set_title(f"router.score throughput, {result['threads']} torch threads")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"wrote {path}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routers", nargs="+", default=["random", "mf", "sw_ranking", "bert", "causal_llm"])
    ap.add_argument("--extra", action="append", default=[], metavar="LABEL=ROUTER[:ARTIFACT]",
                    help="another router/artifact to measure, e.g. mf-static=mf:/tmp/art/mf (repeatable)")
    ap.add_argument("--batches", nargs="+", type=int, default=CHEAP_BATCHES)
    ap.add_argument("--seconds", type=float, default=3.0, help="time per (router, batch size) cell")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--batcher", action="store_true", help="also measure through the ContinuousBatcher")
    ap.add_argument("--n-prompts", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--output", default=str(REPO / "bench" / "results" / "scorer_throughput.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    prompts = sample_prompts(args.data, args.n_prompts, args.seed)
    lengths = [len(p) for p in prompts]
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu_count": os.cpu_count(),
        "threads": args.threads, "seconds_per_cell": args.seconds, "load_avg_1min_start": load_load_average(),
        "prompts": {"n": len(prompts), "chars_median": float(np.median(lengths)), "chars_mean": float(np.mean(lengths)),
                    "source": args.data},
        "routers": {},
    }
    for label, (router, where) in load_routers(args.routers, args.extra).items():
        base = label if label in SHORT_BATCHES else getattr(router, "name", label)
        batches = [b for b in args.batches if b in SHORT_BATCHES.get(base, args.batches)]
        rows: dict[str, Any] = {"where": where, "direct": [], "batcher": []}
        for b in batches:
            rows["direct"].append({"batch": b, **time_direct(router.score, prompts, b, args.seconds)})
            if args.batcher:
                rows["batcher"].append({"batch": b, **time_batcher(router.score, prompts, b, args.seconds)})
            last = rows["direct"][-1]
            print(f"{label:<14} batch {b:>4}: {last['prompts_per_s']:>10.1f} prompts/s "
                  f"({last['median_batch_ms']:.2f} ms/batch)", file=sys.stderr, flush=True)
        result["routers"][label] = rows
    result["load_avg_1min_end"] = load_load_average()
    print_table(result)
    out = write_result(args.output, result)
    print(plot(result, out.with_suffix(".png")))


def print_table(result: dict[str, Any]) -> None:
    batches = sorted({r["batch"] for rows in result["routers"].values() for r in rows["direct"]})
    print(f"router.score prompts/s per process ({result['threads']} torch threads, {result['cpu_count']} cores, "
          f"1-min load {result['load_avg_1min_start']:.1f} -> {result['load_avg_1min_end']:.1f}; "
          f"prompts: median {result['prompts']['chars_median']:.0f} chars)")
    print(f"{'router':<14}{'path':<9}" + "".join(f"{'b=' + str(b):>10}" for b in batches))
    for label, rows in result["routers"].items():
        for path in ("direct", "batcher"):
            cells = {r["batch"]: r["prompts_per_s"] for r in rows[path]}
            if cells:
                print(f"{label:<14}{path:<9}" + "".join(
                    f"{cells[b]:>10.1f}" if b in cells else f"{'-':>10}" for b in batches))


if __name__ == "__main__":
    main()
