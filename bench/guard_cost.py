"""What the rerouting guard costs in scoring CPU: a router's CPU per prompt with each guard, in one process.

Prompts: ``bench/overhead.py``'s mix (``--per-source`` each of GSM8K-train, MT-Bench first turns, arena-bench
and MMLU), scored one at a time and in batches of ``--batch``; CPU is the process's user + system time, so a
busy machine moves it less than wall time (compare guards of one run, not runs of different days).

Two figures per guard: the guarded router scoring every prompt's views (``routeray.load_router(...,
guard=...)``, as ``routeray eval`` and ``routeray calibrate`` do), and the gateway's way (the routing service
scores a prompt's views only when its own score reaches the threshold, the only case where they can change
the tier): each prompt scored alone, then the views of those at or above the threshold that sends
``--strong-shares`` of the prompts strong.

    .venv/bin/python bench/guard_cost.py --router mf --guards off '{"mode": "spans", "margin": 0.01}' \\
        --output bench/results/guard_cost.json
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from overhead import SOURCES, source_prompts  # bench/ is on the path when a script runs
from result_file import write_result

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from routeray.paths import shared_data_dir  # noqa: E402
from routeray.routers.guard import GuardSpec, views  # noqa: E402
from routeray.routers.registry import load_router  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(router: Any, prompts: list[str], batch: int) -> dict[str, float]:
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    for i in range(0, len(prompts), batch):
        router.score(prompts[i:i + batch])
    n = len(prompts)
    return {"cpu_ms_per_prompt": 1000 * (cpu_seconds() - cpu0) / n,
            "wall_ms_per_prompt": 1000 * (time.perf_counter() - wall0) / n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--router", default="mf")
    p.add_argument("--guards", nargs="+", default=["off", '{"mode": "spans", "margin": 0.01}'])
    p.add_argument("--per-source", type=int, default=100)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--strong-shares", type=float, nargs="+", default=[0.5, 0.3])
    p.add_argument("--data", type=Path, default=shared_data_dir())
    p.add_argument("--output", required=True)
    args = p.parse_args()
    load_before = os.getloadavg()[0]
    prompts = [q for s in SOURCES for q in source_prompts(s, args.data, args.per_source)]
    result: dict[str, Any] = {"router": args.router, "prompts": len(prompts), "guards": {}}
    base: float | None = None
    plain = load_router(args.router)
    own = plain.score(prompts)
    for text in args.guards:
        spec = GuardSpec.from_text(text)
        router = load_router(args.router, guard=spec)
        router.score(prompts[:8])  # warm up
        texts = [views(q, spec) for q in prompts]
        row = {"texts_per_prompt": sum(map(len, texts)) / len(prompts),
               "one_at_a_time": measure(router, prompts, 1), f"batch_{args.batch}": measure(router, prompts, args.batch)}
        cpu = row["one_at_a_time"]["cpu_ms_per_prompt"]
        base = cpu if base is None else base
        row["cpu_ratio_to_first"] = cpu / base
        line = (f"{spec.describe():48s} {row['texts_per_prompt']:5.2f} texts  "
                f"{cpu:6.2f} ms CPU/prompt one at a time (x{cpu / base:.2f})  "
                f"{row[f'batch_{args.batch}']['cpu_ms_per_prompt']:6.2f} in batches of {args.batch}")
        if spec.mode != "off":
            row["gateway"] = {}
            for share in args.strong_shares:
                threshold = float(np.quantile(own, 1.0 - share))
                cpu0 = cpu_seconds()
                for q, s, vs in zip(prompts, own, texts, strict=True):
                    plain.score([q])
                    if s >= threshold and len(vs) > 1:
                        plain.score(vs[1:])
                ms = 1000 * (cpu_seconds() - cpu0) / len(prompts)
                row["gateway"][f"{share:g}"] = {"cpu_ms_per_prompt": ms, "cpu_ratio_to_first": ms / base}
                line += f"; gateway at {share:.0%} strong: {ms:.2f} (x{ms / base:.2f})"
        result["guards"][spec.describe()] = row
        print(line, flush=True)
    write_result(args.output, result, load_before)


if __name__ == "__main__":
    main()
