"""Load generator: OpenAI-format chat traffic at a fixed rate (open loop) against a gateway.

Prompts come from a real prompt set (default: GSM8K train questions and arena-bench prompts from
../shared/data), cycled; the model names are a weighted mix (e.g. ``router-mf-0.116=3,router-mf-30%=1``).
Prints achieved rate, latency percentiles, errors, and the strong share per model name (from the
``x-routeray-tier`` header); ``--direct URL`` also sends the same traffic to a backend directly so the
gateway's overhead is the difference. Figures are printed and written as JSON.

    .venv/bin/python bench/load.py --url http://127.0.0.1:8000 --rate 20 --duration 30 \\
        --models router-random-0.5=1 --max-tokens 8
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_prompts(data_dir: Path, limit: int) -> list[str]:
    prompts: list[str] = []
    gsm = data_dir / "unlabeled" / "gsm8k_train.jsonl"
    arena = data_dir / "preference" / "arena_bench_v1" / "question.jsonl"
    for path, get in ((gsm, lambda r: r["question"]), (arena, lambda r: r["turns"][0])):
        if path.is_file():
            with path.open(encoding="utf-8") as fh:
                prompts += [get(json.loads(line)) for line in itertools.islice(fh, limit // 2)]
    if not prompts:
        raise SystemExit(f"no prompts found under {data_dir}")
    random.Random(0).shuffle(prompts)
    return prompts


def parse_mix(spec: str) -> tuple[list[str], list[float]]:
    names, weights = [], []
    for part in spec.split(","):
        name, _, w = part.partition("=")
        names.append(name.strip())
        weights.append(float(w or 1))
    return names, weights


async def run_load(url: str, prompts: list[str], mix: tuple[list[str], list[float]], rate: float,
                   duration: float, max_tokens: int, concurrency: int) -> dict:
    rng = random.Random(1)
    records: list[tuple[str, float, int, str]] = []  # model, latency, status, tier
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one(prompt: str, model: str) -> None:
            async with sem:
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/chat/completions", json={
                        "model": model, "max_tokens": max_tokens, "temperature": 0,
                        "messages": [{"role": "user", "content": prompt}]})
                    records.append((model, time.perf_counter() - t0, r.status_code,
                                    r.headers.get("x-routeray-tier", "")))
                except httpx.HTTPError:
                    records.append((model, time.perf_counter() - t0, 0, ""))

        tasks = []
        start = time.perf_counter()
        for i in itertools.count():
            due = start + i / rate
            if due - start >= duration:
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            model = rng.choices(mix[0], weights=mix[1])[0]
            tasks.append(asyncio.create_task(one(prompts[i % len(prompts)], model)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    lat = np.array([r[1] for r in records if r[2] == 200]) * 1000
    out: dict = {"sent": len(records), "ok": int((np.array([r[2] for r in records]) == 200).sum()),
                 "achieved_rps": len(records) / elapsed}
    if len(lat):
        out |= {"p50_ms": float(np.percentile(lat, 50)), "p90_ms": float(np.percentile(lat, 90)),
                "p99_ms": float(np.percentile(lat, 99))}
    shares = {}
    for model in mix[0]:
        tiers = [r[3] for r in records if r[0] == model and r[2] == 200]
        if tiers and model.startswith("router-"):
            shares[model] = tiers.count("strong") / len(tiers)
    out["strong_share"] = shares
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--models", default="router-mf-0.116=1", help="weighted mix: name=weight,name=weight")
    ap.add_argument("--rate", type=float, default=10.0, help="requests per second (open loop)")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds")
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=256, help="most requests in flight")
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--direct", default=None,
                    help="also load this OpenAI base URL's /v1/chat/completions directly (model=--direct-model)")
    ap.add_argument("--direct-model", default="weak")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    prompts = load_prompts(Path(args.data_dir), 2000)
    mix = parse_mix(args.models)
    result = {"gateway": asyncio.run(run_load(args.url, prompts, mix, args.rate, args.duration,
                                              args.max_tokens, args.concurrency))}
    if args.direct:
        result["direct"] = asyncio.run(run_load(args.direct, prompts, ([args.direct_model], [1.0]), args.rate,
                                                args.duration, args.max_tokens, args.concurrency))
        for q in ("p50_ms", "p99_ms"):
            if q in result["gateway"] and q in result["direct"]:
                result[f"overhead_{q}"] = result["gateway"][q] - result["direct"][q]
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
