"""Load generator: OpenAI-format chat traffic at a chosen rate and prompt mix, for a bounded time.

Open loop: requests start on a schedule (Poisson arrivals at ``--rate`` per second, or evenly spaced with
``--even``) whatever the server's speed, so queueing shows up as latency instead of a lower offered rate.
Prompts are real ones from ../shared/data, mixed by source (``--mix gsm8k=2,mt_bench=1,...``) or read
from ``--prompts FILE`` (one per line, or JSONL with a ``prompt``/``question``/``turns`` field); model
names are mixed too (``--models router-mf-0.116=3,router-mf-30%=1,weak=1``). Sent with the official
``openai`` async client; a share of requests can stream (``--stream-share``).

Prints the offered and achieved rate, latency percentiles, errors by kind, and per requested model the
mix of models that answered (the response's ``model``) and the tiers (``x-routeray-tier``), so anyone can
watch the Grafana dashboard move. ``--json FILE`` writes the same figures.

    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:8000 --rate 20 --duration 30 \\
        --models router-mf-0.116=1,router-mf-25%=1 --mix gsm8k=1,mt_bench=1,mmlu=1 --max-tokens 16
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = ("gsm8k", "mt_bench", "arena", "mmlu")


def _jsonl(path: Path, get: Any, limit: int) -> list[str]:
    with path.open(encoding="utf-8") as fh:
        return [get(json.loads(line)) for line in itertools.islice(fh, limit)]


def source_prompts(source: str, data_dir: Path, limit: int = 500) -> list[str]:
    """Up to ``limit`` real prompts of one kind: gsm8k (math word problems), mt_bench (open chat, first
    turns), arena (arena-bench prompts) or mmlu (multiple choice)."""
    if source == "gsm8k":
        return _jsonl(data_dir / "unlabeled" / "gsm8k_train.jsonl", lambda r: r["question"], limit)
    if source == "mt_bench":
        return _jsonl(data_dir / "eval_sample" / "mt_bench" / "question.jsonl", lambda r: r["turns"][0], limit)
    if source == "arena":
        return _jsonl(data_dir / "preference" / "arena_bench_v1" / "question.jsonl", lambda r: r["turns"][0], limit)
    if source == "mmlu":
        out: list[str] = []
        for path in sorted((data_dir / "eval_sample" / "mmlu" / "responses").glob("mmlu_*.csv")):
            with path.open(encoding="utf-8", newline="") as fh:
                out += [row["prompt"] for row in itertools.islice(csv.DictReader(fh), limit)]
        return out[:limit]
    raise SystemExit(f"unknown prompt source {source!r}; choose from {', '.join(SOURCES)}")


def file_prompts(path: Path) -> list[str]:
    """Prompts from a text file (one per line) or JSONL (``prompt``, ``question`` or ``turns[0]``)."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            row = json.loads(line)
            text = row.get("prompt") or row.get("question") or (row.get("turns") or [None])[0]
            if not isinstance(text, str):
                raise SystemExit(f"{path}:{n}: no prompt, question or turns field")
            out.append(text)
        else:
            out.append(line)
    if not out:
        raise SystemExit(f"{path}: no prompts")
    return out


def weights(spec: str) -> dict[str, float]:
    """``a=3,b=1`` (a bare name weighs 1) -> normalised weights."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, w = part.rpartition("=") if "=" in part else (part, "", "1")
        out[name] = float(w)
    total = sum(out.values())
    if not out or total <= 0:
        raise SystemExit(f"bad weights {spec!r}: expected name=weight,...")
    return {k: v / total for k, v in out.items()}


@dataclass
class Result:
    model: str
    source: str
    ok: bool
    latency_s: float
    answered_by: str | None = None
    tier: str | None = None
    error: str | None = None


@dataclass
class Stats:
    results: list[Result] = field(default_factory=list)
    sent: int = 0


async def one(client: openai.AsyncOpenAI, model: str, source: str, prompt: str, args: argparse.Namespace,
              rng: random.Random) -> Result:
    t0 = time.perf_counter()
    msgs = [{"role": "user", "content": prompt}]
    try:
        if rng.random() < args.stream_share:
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=msgs, max_tokens=args.max_tokens, stream=True)
            answered = None
            async for chunk in raw.parse():
                answered = answered or chunk.model
        else:
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=msgs, max_tokens=args.max_tokens)
            answered = raw.parse().model
        return Result(model, source, True, time.perf_counter() - t0, answered, raw.headers.get("x-routeray-tier"))
    except openai.APIStatusError as exc:
        err = f"http_{exc.status_code}"
    except openai.APITimeoutError:
        err = "timeout"
    except openai.APIConnectionError:
        err = "connect"
    except openai.OpenAIError as exc:
        err = type(exc).__name__
    return Result(model, source, False, time.perf_counter() - t0, error=err)


async def run(args: argparse.Namespace, prompts: dict[str, list[str]]) -> tuple[Stats, float]:
    rng = random.Random(args.seed)
    models, sources = weights(args.models), {s: w for s, w in weights(args.mix).items() if s in prompts}
    cycles = {s: itertools.cycle(rng.sample(p, len(p))) for s, p in prompts.items()}
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=args.max_in_flight,
                                                 max_keepalive_connections=args.max_in_flight))
    client = openai.AsyncOpenAI(base_url=args.url.rstrip("/") + "/v1", api_key=args.api_key,
                                max_retries=0, timeout=args.timeout, http_client=http)
    stats, tasks = Stats(), set()
    gate = asyncio.Semaphore(args.max_in_flight)
    start = time.perf_counter()
    next_at = 0.0

    async def fire(model: str, source: str, prompt: str) -> None:
        async with gate:
            stats.results.append(await one(client, model, source, prompt, args, rng))

    while next_at < args.duration:
        delay = start + next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        model = rng.choices(list(models), list(models.values()))[0]
        source = rng.choices(list(sources), list(sources.values()))[0]
        task = asyncio.create_task(fire(model, source, next(cycles[source])))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        stats.sent += 1
        next_at = stats.sent / args.rate if args.even else next_at + rng.expovariate(args.rate)
    send_s = time.perf_counter() - start
    if tasks:
        await asyncio.wait(tasks, timeout=args.timeout + 5)
    await client.close()
    return stats, send_s


def report(stats: Stats, send_s: float, args: argparse.Namespace) -> dict[str, Any]:
    done = stats.results
    lat = np.array([r.latency_s for r in done if r.ok]) * 1000
    pct = {f"p{q}": round(float(np.percentile(lat, q)), 1) for q in (50, 90, 99)} if lat.size else {}
    per_model: dict[str, dict[str, Any]] = {}
    by_model = defaultdict(list)
    for r in done:
        by_model[r.model].append(r)
    for model, rs in sorted(by_model.items()):
        ok = [r for r in rs if r.ok]
        tiers = Counter(r.tier for r in ok)
        per_model[model] = {"requests": len(rs), "errors": len(rs) - len(ok),
                            "answered_by": dict(Counter(r.answered_by for r in ok).most_common()),
                            "tiers": {str(k): v for k, v in tiers.most_common()},
                            "strong_share": round(tiers.get("strong", 0) / len(ok), 3)
                            if ok and tiers.get(None, 0) < len(ok) else None}
    return {
        "url": args.url, "offered_rate": args.rate, "duration_s": args.duration,
        "sent": stats.sent, "completed": len(done), "achieved_send_rate": round(stats.sent / send_s, 2),
        "achieved_ok_rate": round(int(lat.size) / send_s, 2), "latency_ms": pct,
        "errors": dict(Counter(r.error for r in done if not r.ok)), "unfinished": stats.sent - len(done),
        "sources": dict(Counter(r.source for r in done)), "models": per_model,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000", help="gateway base URL (without /v1)")
    ap.add_argument("--rate", type=float, default=10.0, help="requests per second offered")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds to keep sending")
    ap.add_argument("--models", default="router-random-0.5", help="model names and weights: a=3,b=1")
    ap.add_argument("--mix", default="gsm8k=1,mt_bench=1,arena=1,mmlu=1",
                    help=f"prompt sources and weights ({', '.join(SOURCES)})")
    ap.add_argument("--prompts", type=Path, help="use these prompts instead of --mix (text or JSONL)")
    ap.add_argument("--data-dir", type=Path, default=DATA, help="routeray's shared data folder")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--stream-share", type=float, default=0.0, help="share of requests sent with stream=True")
    ap.add_argument("--max-in-flight", type=int, default=1024, help="cap on concurrent requests")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds")
    ap.add_argument("--even", action="store_true", help="evenly spaced arrivals instead of Poisson")
    ap.add_argument("--api-key", default="unused", help="Bearer key sent to the gateway")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        ap.error("--rate and --duration must be positive")
    if args.prompts:
        prompts = {"file": file_prompts(args.prompts)}
        args.mix = "file"
    else:
        prompts = {s: p for s in weights(args.mix) if (p := source_prompts(s, args.data_dir))}
    stats, send_s = asyncio.run(run(args, prompts))
    out = report(stats, send_s, args)
    lat = out["latency_ms"]
    print(f"sent {out['sent']} in {args.duration:g}s (offered {args.rate:g}/s, achieved {out['achieved_send_rate']}/s); "
          f"ok {out['achieved_ok_rate']}/s; latency ms p50 {lat.get('p50')} p90 {lat.get('p90')} p99 {lat.get('p99')}; "
          f"errors {sum(out['errors'].values())}", file=sys.stderr)
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0 if out["completed"] else 1


if __name__ == "__main__":
    sys.exit(main())
