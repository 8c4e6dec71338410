"""Replicas and cost per million routed requests at a target rate, from one ``bench/overhead.py compare`` run.

Two estimates from the same run, for each routeray gateway in it:

- **by CPU per answer** (the figure a shared machine disturbs least): vCPUs = rate x (CPU ms per answer of every
  process of the gateway at ``--at`` req/s) / 1000 / ``--utilisation``; ingress replicas = vCPUs / the vCPUs
  one replica had in the run (one ingress replica on the bench machine's cores);
- **by peak answers/s**: replicas = rate / (the replica's peak answers/s x ``--utilisation``).

Cost = vCPUs x ``--usd-per-vcpu-hour`` / (rate x 3600) x 1e6. The price is an input, not a measurement. The
weak model's engine is sized by its own tokens/s, not by routing, and is left out; scorers on GPUs (the GPU
config) need ``bench/gpu_scorer_throughput.py``'s figures, which this machine cannot measure.

    .venv/bin/python bench/scale_plan.py bench/results/overhead_issue14.json --rates 1000 10000
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any


def cpu_ms(result: dict[str, Any], target: str, rate: float) -> float | None:
    for row in result["non_streaming"]:
        if row["offered_rps"] == rate and target in row["targets"]:
            return float(row["targets"][target]["cpu_ms_per_ok"]["target"])
    return None


def plan(result: dict[str, Any], target: str, rate: float, at: float, utilisation: float, usd_per_vcpu_hour: float
         ) -> dict[str, Any]:
    """Replicas, vCPUs and USD per million routed requests for ``target`` at ``rate`` req/s."""
    cores = int(result["machine"]["cpus"])
    ms = cpu_ms(result, target, at)
    peak = result["saturation"][target]["max_throughput_rps"]
    out: dict[str, Any] = {"target": target, "rate_rps": rate, "cpu_ms_per_answer": ms, "peak_rps_per_replica": peak}
    if ms is not None:
        vcpus = rate * ms / 1000 / utilisation
        out.update(vcpus_by_cpu=round(vcpus, 1), replicas_by_cpu=math.ceil(vcpus / cores),
                   usd_per_million_by_cpu=round(vcpus * usd_per_vcpu_hour / (rate * 3600) * 1e6, 4))
    if peak:
        replicas = math.ceil(rate / (peak * utilisation))
        out.update(replicas_by_peak=replicas,
                   usd_per_million_by_peak=round(replicas * cores * usd_per_vcpu_hour / (rate * 3600) * 1e6, 4))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("result", type=Path, help="a bench/overhead.py compare JSON")
    ap.add_argument("--rates", nargs="+", type=float, default=[1000.0, 10000.0])
    ap.add_argument("--at", type=float, default=100.0, help="offered rate whose CPU per answer is used")
    ap.add_argument("--utilisation", type=float, default=0.6, help="share of a vCPU planned busy (headroom)")
    ap.add_argument("--usd-per-vcpu-hour", type=float, default=0.04, help="your price; an input, not measured")
    args = ap.parse_args(argv)
    result = json.loads(args.result.read_text())
    gateways = [t for t in result["targets"] if t.startswith("routeray")]
    print(f"from {args.result} (load average {result['machine']['loadavg_before'][0]:.1f}); CPU per answer at "
          f"{args.at:g} req/s; {args.utilisation:.0%} utilisation; ${args.usd_per_vcpu_hour}/vCPU-hour")
    print("| gateway | req/s | CPU ms/answer | vCPUs | ingress replicas (by CPU / by peak) | USD per million (by CPU / by peak) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for g in gateways:
        for rate in args.rates:
            p = plan(result, g, rate, args.at, args.utilisation, args.usd_per_vcpu_hour)
            print(f"| {g} | {rate:,.0f} | {p['cpu_ms_per_answer']} | {p.get('vcpus_by_cpu')} | "
                  f"{p.get('replicas_by_cpu')} / {p.get('replicas_by_peak')} | "
                  f"{p.get('usd_per_million_by_cpu')} / {p.get('usd_per_million_by_peak')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
