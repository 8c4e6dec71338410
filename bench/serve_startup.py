"""Start-up of the embedded local profile (what `make serve` runs), measured from outside.

Starts `routeray serve --port P` as a child process, polls until a routed chat completion answers, and
prints: seconds to /health, seconds to the first answer (weak tier and a routed request), the gateway's
routing overhead as the client sees it (routed request minus the same tier asked directly), the RSS of the
whole process tree, and how long a clean shutdown (SIGINT) takes. Writes the figures as JSON too.

    .venv/bin/python bench/serve_startup.py [--out bench/results/serve_startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from routeray.deployments.cli import free_port

MSG = [{"role": "user", "content": "Name one colour of the rainbow."}]


def tree_rss(pid: int) -> float:
    """GiB resident in ``pid`` and its descendants (Ray's daemons, replicas, vLLM workers)."""
    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**30


def metric_means(text: str, router: str) -> dict[str, float]:
    """Mean routing overhead and scoring time (ms) as the gateway itself measured them."""
    from prometheus_client.parser import text_string_to_metric_families

    got = {(s.name, s.labels.get("router")): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    out = {}
    for name in ("routing_overhead_seconds", "scoring_latency_seconds"):
        count = got.get((f"routeray_{name}_count", router), 0.0)
        if count:
            out[f"gateway_{name.removesuffix('_seconds')}_mean_ms"] = 1000 * got[(f"routeray_{name}_sum", router)] / count
    return out


def chat(url: str, model: str, max_tokens: int = 1) -> tuple[float, dict]:
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/v1/chat/completions", timeout=120,
                   json={"model": model, "messages": MSG, "max_tokens": max_tokens, "temperature": 0})
    r.raise_for_status()
    return time.perf_counter() - t0, r.json()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/serve_startup.json")
    ap.add_argument("--repeats", type=int, default=20, help="requests per overhead sample")
    args = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("ROUTERAY_STRONG_BASE_URL", None)
    exe = Path(sys.executable).with_name("routeray")
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port)], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    figures: dict[str, float | str] = {}
    try:
        while "health_s" not in figures or "first_answer_s" not in figures:
            if proc.poll() is not None:
                print(proc.stdout.read()[-4000:] if proc.stdout else "", file=sys.stderr)
                raise SystemExit(f"routeray serve exited with {proc.returncode}")
            try:
                if "health_s" not in figures and httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    figures["health_s"] = time.perf_counter() - t0
                if "health_s" in figures:
                    chat(url, "weak")
                    figures["first_answer_s"] = time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        routers = httpx.get(f"{url}/health").json()["routers"]
        router = routers[0]
        chat(url, f"router-{router}-1")
        figures["first_routed_answer_s"] = time.perf_counter() - t0
        figures["router"] = router
        direct = [chat(url, "weak")[0] for _ in range(args.repeats)]
        routed = [chat(url, f"router-{router}-1")[0] for _ in range(args.repeats)]  # threshold 1: weak tier
        figures["weak_direct_median_s"] = statistics.median(direct)
        figures["weak_routed_median_s"] = statistics.median(routed)
        figures["overhead_median_ms"] = 1000 * (statistics.median(routed) - statistics.median(direct))
        metrics = httpx.get(f"{url}/metrics").text
        figures["metrics_lines"] = len(metrics.splitlines())
        figures |= metric_means(metrics, router)
        figures["rss_gib"] = tree_rss(proc.pid)
    finally:
        t1 = time.perf_counter()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        figures["shutdown_s"] = time.perf_counter() - t1
        figures["exit_code"] = proc.returncode
    for k, v in figures.items():
        print(f"{k:24s} {v:.3f}" if isinstance(v, float) else f"{k:24s} {v}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
