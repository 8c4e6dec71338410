"""Routing overhead, side by side: routeray's gateways, the one-process design and RouteLLM's own server,
each against the backend called directly, in one run.

``compare`` starts every target in front of one loopback OpenAI backend (a real HTTP server that answers
at once, in its own process) and offers each the same open-loop Poisson traffic of real prompts at a sweep
of rates, targets interleaved per rate:

- ``direct``: the loopback backend itself (the floor: client, HTTP and JSON costs only);
- ``routeray-<name>``: one per ``--gateway NAME=JSON``, routeray on real Ray Serve with the shipped defaults
  and that partial config merged over them (``default={}`` is what ``make serve`` ships), each on a Ray
  cluster of its own in a child process, both tiers -> the backend;
- ``one_process``: RouteLLM's server design around the same router object: one FastAPI/uvicorn process that
  scores each prompt inside its request handler (no batching) and forwards with the ``openai`` client;
- ``routellm``: RouteLLM's own server, ``routellm[serve]==0.2.0`` from PyPI in a venv of its own
  (``bench/routellm_peer.py``: a seeded random MF checkpoint of its shape, its embedding call answered by
  the local MiniLM, its completions through litellm to the same backend).

It prints a table and writes ``bench/results/overhead.json`` and a PNG: answers/s, failures and refusals
(429/503, with time to rejection and Retry-After), fallbacks, p50/p90/p99 latency, latency added over
``direct`` at the same offered rate, CPU per answer of every process of each target, saturation, goodput
past it, the ratios between targets and the installed versions (the machine is noisy: ratios and CPU per
answer from one run travel better than times). After each step it waits until the target is idle again
(a collapsed server keeps working through abandoned requests). Every process it starts is stopped on exit.
The load itself is generated in a separate process (asyncio + uvloop + aiohttp) so it does not share an
interpreter with any target.

``load`` is the load generator alone, against any running gateway: Poisson (or ``--even``) arrivals at
``--rate`` for ``--duration`` seconds, real prompts mixed by source, a weighted mix of model names, a
share of streaming requests (time to first token measured), and the tiers that answered.

    .venv/bin/python bench/overhead.py compare --router mf --rates 10,50,100,200,400,800 --stream-rates 100 \\
        --gateway default='{}' --gateway fast='{"http_proxy": "haproxy"}'
    .venv/bin/python bench/overhead.py load --url http://127.0.0.1:8000 --rate 20 --duration 30 \\
        --models router-mf-0.116=3,router-mf-30%=1 --mix gsm8k=1,mt_bench=1 --stream-share 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Request  # module level: the one-process handler's annotation must resolve here

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, also when imported by tests
import overhead_report as report  # noqa: E402
import routellm_peer  # noqa: E402
from overhead_report import REJECTED  # noqa: E402
from routellm_peer import read_body  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
SOURCES = ("gsm8k", "mt_bench", "arena", "mmlu")


# ---- prompts and mixes ----------------------------------------------------------------------------------
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
    if not out or total <= 0 or min(out.values()) < 0:
        raise SystemExit(f"bad weights {spec!r}: expected name=weight,...")
    return {k: v / total for k, v in out.items()}


def rates(spec: str) -> list[float]:
    """``10,50,100`` -> positive request rates."""
    try:
        out = [float(r) for r in spec.split(",") if r.strip()]
    except ValueError:
        raise SystemExit(f"bad rates {spec!r}: expected numbers like 10,50,100") from None
    if not out or min(out) <= 0:
        raise SystemExit(f"bad rates {spec!r}: every rate must be positive")
    return out


# ---- the load generator ---------------------------------------------------------------------------------
@dataclass
class Result:
    """One request as the client saw it (times in seconds)."""

    model: str
    source: str
    stream: bool
    ok: bool
    latency_s: float
    ttft_s: float | None = None
    answered_by: str | None = None
    tier: str | None = None
    fallback: str | None = None
    error: str | None = None
    retry_after: str | None = None


async def _one(session: Any, url: str, model: str, source: str, prompt: str, stream: bool,
               max_tokens: int, headers: dict[str, str]) -> Result:
    import aiohttp

    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": stream}
    t0 = time.perf_counter()
    ttft = None
    try:
        async with session.post(url, json=body, headers=headers) as resp:
            h = resp.headers
            if resp.status != 200:
                await resp.read()
                return Result(model, source, stream, False, time.perf_counter() - t0, error=f"http_{resp.status}",
                              retry_after=h.get("retry-after"))
            if stream:
                answered = None
                async for raw in resp.content:
                    line = raw.strip()
                    if not line.startswith(b"data:") or line == b"data: [DONE]":
                        continue
                    chunk = json.loads(line[5:])
                    if "error" in chunk:
                        raise ValueError("error event in stream")
                    answered = answered or chunk.get("model")
                    if ttft is None and any((c.get("delta") or {}).get("content") for c in chunk.get("choices", ())):
                        ttft = time.perf_counter() - t0
            else:
                answered = (await resp.json(content_type=None)).get("model")
            return Result(model, source, stream, True, time.perf_counter() - t0, ttft, answered,
                          h.get("x-routeray-tier"), h.get("x-routeray-fallback"))
    except TimeoutError:
        err = "timeout"
    except aiohttp.ClientConnectionError:
        err = "connect"
    except (aiohttp.ClientError, ValueError) as exc:
        err = type(exc).__name__
    return Result(model, source, stream, False, time.perf_counter() - t0, error=err)


async def run_load(url: str, prompts: dict[str, list[str]], models: dict[str, float], sources: dict[str, float],
                   rate: float, duration: float, *, stream_share: float = 0.0, even: bool = False,
                   max_tokens: int = 16, max_in_flight: int = 2048, timeout: float = 30.0, seed: int = 0,
                   api_key: str | None = None) -> tuple[list[Result], int, float, float]:
    """Open loop: request i starts at its scheduled time whatever the server's speed, so queueing shows up
    as latency, not as a lower offered rate. Returns the results, the number sent, the sending time and the
    total time (sending plus draining)."""
    import aiohttp

    rng = random.Random(seed)
    cycles = {s: itertools.cycle(rng.sample(p, len(p))) for s, p in prompts.items()}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    endpoint = url.rstrip("/") + "/v1/chat/completions"
    connector = aiohttp.TCPConnector(limit=max_in_flight, force_close=False)
    results: list[Result] = []
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        tasks: set[asyncio.Task[None]] = set()

        async def fire(model: str, source: str, prompt: str, stream: bool) -> None:
            results.append(await _one(session, endpoint, model, source, prompt, stream, max_tokens, headers))

        start = time.perf_counter()
        sent, next_at = 0, 0.0
        while next_at < duration:
            delay = start + next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            model = rng.choices(list(models), list(models.values()))[0]
            source = rng.choices(list(sources), list(sources.values()))[0]
            task = asyncio.create_task(fire(model, source, next(cycles[source]), rng.random() < stream_share))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
            next_at = sent / rate if even else next_at + rng.expovariate(rate)
        send_s = time.perf_counter() - start
        if tasks:
            await asyncio.wait(tasks, timeout=timeout + 5)
        total_s = time.perf_counter() - start
    return results, sent, send_s, total_s


def _pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.array(values) * 1000
    return {f"p{q}": round(float(np.percentile(arr, q)), 2) for q in (50, 90, 99)}


def _rejected(refused: list[Result]) -> dict[str, Any]:
    if not refused:
        return {}
    return {"count": len(refused), "latency_ms": _pct([r.latency_s for r in refused]),
            "retry_after_share": round(sum(r.retry_after is not None for r in refused) / len(refused), 3)}


def summarise(results: list[Result], sent: int, send_s: float, total_s: float, rate: float) -> dict[str, Any]:
    """Rates, latency percentiles (ms), errors, fallbacks and per-model tiers of one load run."""
    ok = [r for r in results if r.ok]
    per_model: dict[str, dict[str, Any]] = {}
    by_model: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_model[r.model].append(r)
    for model, rs in sorted(by_model.items()):
        good = [r for r in rs if r.ok]
        tiers = Counter(r.tier for r in good)
        per_model[model] = {"requests": len(rs), "errors": len(rs) - len(good),
                            "answered_by": dict(Counter(r.answered_by for r in good).most_common()),
                            "tiers": {str(k): v for k, v in tiers.most_common()},
                            "strong_share": round(tiers.get("strong", 0) / len(good), 3)
                            if good and tiers.get(None, 0) < len(good) else None}
    return {
        "offered_rps": rate, "sent": sent, "completed": len(results), "ok": len(ok),
        "send_rps": round(sent / send_s, 2),
        # ok answers per second of the whole run (sending plus draining): at saturation, the capacity
        "throughput_rps": round(len(ok) / total_s, 2),
        "latency_ms": _pct([r.latency_s for r in ok if not r.stream]),
        "ttft_ms": _pct([r.ttft_s for r in ok if r.stream and r.ttft_s is not None]),
        "stream_latency_ms": _pct([r.latency_s for r in ok if r.stream]),
        "errors": dict(Counter(r.error for r in results if not r.ok)), "unfinished": sent - len(results),
        # load shed on purpose (429/503): how fast the refusal came and whether it said when to retry
        "rejected": _rejected([r for r in results if r.error in REJECTED]),
        "fallbacks": dict(Counter(r.fallback for r in ok if r.fallback)),
        "sources": dict(Counter(r.source for r in results)), "models": per_model,
    }


def load_main(args: argparse.Namespace) -> int:
    if args.rate <= 0 or args.duration <= 0:
        raise SystemExit("--rate and --duration must be positive")
    if not 0 <= args.stream_share <= 1:
        raise SystemExit("--stream-share must be within [0, 1]")
    if args.prompts:
        prompts, mix = {"file": file_prompts(args.prompts)}, {"file": 1.0}
    else:
        mix = weights(args.mix)
        prompts = {s: p for s in mix if (p := source_prompts(s, args.data_dir))}
        mix = {s: w for s, w in mix.items() if s in prompts}
        if not prompts:
            raise SystemExit(f"no prompts found under {args.data_dir}")
    _use_uvloop()
    results, sent, send_s, total_s = asyncio.run(run_load(
        args.url, prompts, weights(args.models), mix, args.rate, args.duration, stream_share=args.stream_share,
        even=args.even, max_tokens=args.max_tokens, max_in_flight=args.max_in_flight, timeout=args.timeout,
        seed=args.seed, api_key=args.api_key))
    out = {"url": args.url, "duration_s": args.duration, **summarise(results, sent, send_s, total_s, args.rate)}
    lat = out["latency_ms"] or out["stream_latency_ms"]
    print(f"sent {out['sent']} in {args.duration:g}s (offered {args.rate:g}/s, sent {out['send_rps']}/s); "
          f"ok {out['throughput_rps']}/s; latency ms p50 {lat.get('p50')} p90 {lat.get('p90')} p99 {lat.get('p99')}; "
          f"errors {sum(out['errors'].values())}", file=sys.stderr)
    text = json.dumps(out, indent=2)
    if args.json and str(args.json) != "-":
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0 if out["completed"] else 1


def _use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# ---- the loopback backend -------------------------------------------------------------------------------
def _completion(model: str) -> dict[str, Any]:
    return {"id": "chatcmpl-loopback", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}}


def _chunks(model: str) -> list[bytes]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        c = {"id": "chatcmpl-loopback", "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + json.dumps(c).encode() + b"\n\n"

    return [chunk({"role": "assistant", "content": ""}), chunk({"content": "ok"}), chunk({}, "stop"),
            b"data: [DONE]\n\n"]


async def backend_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI OpenAI chat backend that answers at once ("ok"), streaming or not: the cheapest real
    HTTP server we can put behind every target, so what differs between them is their own cost."""
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    if scope["method"] != "POST" or scope["path"] != "/v1/chat/completions":
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"error": {"message": "not found"}}'})
        return
    try:
        req = json.loads(body)
        model = str(req.get("model", "loopback"))
    except (ValueError, AttributeError):  # a client that gave up mid-body, or not a JSON object
        await send({"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"error": {"message": "bad JSON body"}}'})
        return
    if req.get("stream"):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for part in _chunks(model):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(_completion(model)).encode()})


def backend_main(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run(backend_app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                lifespan="off", loop="uvloop", http="httptools", backlog=4096)
    return 0


# ---- the one-process server (RouteLLM's design around our router) --------------------------------------
def one_process_app(router_name: str, upstream: str, artifact: str | None = None) -> Any:
    """RouteLLM's server design (``routellm/openai_server.py``) around our router: one FastAPI handler that
    validates the body with pydantic, scores the prompt synchronously in the handler (one prompt per call,
    no batching), picks the tier and forwards with the ``openai`` async client."""
    import openai
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse

    from routeray import load_router
    from routeray.gateway.protocol import ChatCompletionRequest
    from routeray.gateway.routing import decide

    router = load_router(router_name, artifact=artifact)
    router.score(["warm-up"])
    client = openai.AsyncOpenAI(base_url=upstream, api_key="unused", max_retries=0)
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        req = ChatCompletionRequest.model_validate(await request.json())
        threshold = float(req.model.rsplit("-", 1)[-1])
        score = float(router.score([req.routing_text()])[0])
        tier = decide(score, threshold)
        body = req.model_dump(exclude_none=True)
        body["model"] = tier
        if req.stream:
            chunks = await client.chat.completions.create(**body)

            async def lines() -> Any:
                async for chunk in chunks:
                    yield f"data: {chunk.model_dump_json()}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(lines(), media_type="text/event-stream", headers={"x-routeray-tier": tier})
        resp = await client.chat.completions.create(**body)
        return JSONResponse(resp.model_dump(), headers={"x-routeray-tier": tier})

    return app


def one_process_main(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run(one_process_app(args.router, args.upstream, args.artifact), host="127.0.0.1", port=args.port,
                log_level="warning", access_log=False, backlog=4096)
    return 0


# ---- processes ------------------------------------------------------------------------------------------
def _wait_http(url: str, proc: subprocess.Popen[bytes] | None, timeout: float, what: str,
               ok_only: bool = False) -> None:
    """Until ``url`` answers (with a 200 when ``ok_only``: a Serve proxy answers 404/503 before its apps run)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode} before answering")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200 or not ok_only:
                return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not answer at {url} within {timeout:.0f} s")


def _process_table() -> dict[int, tuple[int, float, str]]:
    """pid -> (parent pid, CPU seconds used, title) of every process we can read."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            pid = int(entry.name)
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                title = argv0.split(".", 1)[0] if argv0.startswith("ray::") else Path(argv0).name
                out[pid] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, title)
    return out


def descendants(root: int, skip: Collection[int] = (), table: dict[int, tuple[int, float, str]] | None = None
                ) -> set[int]:
    """``root`` and every process below it, leaving out the subtrees of ``skip``."""
    table = _process_table() if table is None else table
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _, _) in table.items():
        children[ppid].append(pid)
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in skip or pid in out:
            continue
        out.add(pid)
        todo += children.get(pid, [])
    return out


def cpu_by_process(root: int, skip: Collection[int] = ()) -> dict[str, float]:
    """CPU time (user + system, seconds) used so far by ``root`` and its descendants, by process title
    (Ray names its workers ``ray::ServeReplica:<app>:<deployment>``, ``ray::ProxyActor``, ...), leaving out the
    subtrees of ``skip``: a target's cost in CPU, which a shared machine's other jobs disturb far less than
    its latency."""
    table = _process_table()
    out: dict[str, float] = defaultdict(float)
    for pid in descendants(root, skip, table):
        if pid in table:
            out[table[pid][2]] += table[pid][1]
    return dict(out)


def _kill_all(pids: Collection[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _pinned(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that confines a child (and what it starts: Ray's processes, HAProxy) to ``cpus``."""
    return None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))


@contextlib.contextmanager
def child(args: list[str], ready_url: str, what: str, timeout: float = 120.0, stop_s: float = 10.0,
          ok_only: bool = False, cpus: set[int] | None = None, env: dict[str, str] | None = None) -> Iterator[int]:
    """Run ``overhead.py <args>`` as a child process until the block ends, then SIGTERM, ``stop_s`` to exit,
    then SIGKILL to it and to whatever it had started that is still there; yields its pid. ``cpus``: the
    cores it and its descendants may run on (None: any); ``env``: variables added to its environment."""
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_pinned(cpus), env={**os.environ, **(env or {})})
    tree: set[int] = set()
    try:
        _wait_http(ready_url, proc, timeout, what, ok_only)
        yield proc.pid
    finally:
        tree = descendants(proc.pid) - {proc.pid}
        proc.terminate()
        try:
            proc.wait(stop_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _kill_all(tree & set(_process_table()))


# ---- the gateway under test -----------------------------------------------------------------------------
def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def gateway_config(router: str, artifact: str | None, backend_url: str, port: int,
                   overrides: dict[str, Any]) -> dict[str, Any]:
    """The gateway under test: what ``make serve`` ships (``routeray.config.local_profile``: its proxy, ingress
    settings and the router's placement), for ``router`` alone, no engine, both tiers -> the loopback backend.
    ``overrides`` (a partial Config) is merged over it; a ``routers`` list there replaces the whole list, and
    an entry for ``router`` that names no artifact gets ``artifact`` (the router under test, as the other
    targets use)."""
    from routeray.config import local_profile
    from routeray.data.models import DEFAULT_STRONG, DEFAULT_WEAK

    profile = local_profile().model_dump(mode="json")
    shipped = next((r for r in profile["routers"] if r["router"] == router), {"router": router})
    base = {"http_port": port, "http_proxy": profile["http_proxy"], "ingress": profile["ingress"],
            "routers": [{**shipped, "artifact": artifact}], "engine": {"enabled": False},
            "strong": {"name": "loop-strong", "base_url": backend_url, "score_as": DEFAULT_STRONG},
            "weak": {"name": "loop-weak", "base_url": backend_url, "score_as": DEFAULT_WEAK}}
    cfg = _merge(base, overrides)
    for entry in cfg["routers"]:
        if entry.get("router") == router and entry.get("artifact") is None:
            entry["artifact"] = artifact
    return cfg


@contextlib.contextmanager
def gateway(cfg_dict: dict[str, Any]) -> Iterator[str]:
    """routeray on a fresh local Ray cluster (2 CPUs) in this process; shut down when the block ends."""
    from routeray.config import Config
    from routeray.deployments.cli import start, stop

    cfg = Config.model_validate(cfg_dict)
    try:
        start(cfg, ray_init={"address": "local", "num_cpus": 2, "include_dashboard": False,
                             "log_to_driver": False})
        url = f"http://127.0.0.1:{cfg.http_port}"
        _wait_http(f"{url}/health", None, 60, "the gateway", ok_only=True)
        yield url
    finally:
        stop()


def gateway_main(args: argparse.Namespace) -> int:
    """A gateway as a process of its own (several can run side by side, each its own Ray cluster), until
    SIGTERM; Ray and Serve are shut down on the way out."""
    def stop_on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_term)
    with contextlib.suppress(KeyboardInterrupt), gateway(json.loads(args.config)):
        while True:
            time.sleep(3600)
    return 0


# ---- one step of load, and the sweep --------------------------------------------------------------------
def load_step(url: str, model: str, rate: float, duration: float, args: argparse.Namespace,
              stream_share: float = 0.0) -> dict[str, Any]:
    """One open-loop run in a child process (so the client never shares an interpreter with a target)."""
    cmd = [sys.executable, __file__, "load", "--url", url, "--models", model, "--rate", f"{rate:g}",
           "--duration", f"{duration:g}", "--timeout", f"{args.timeout:g}", "--mix", args.mix,
           "--data-dir", str(args.data_dir), "--stream-share", f"{stream_share:g}", "--max-tokens", "16",
           "--seed", str(args.seed), "--json", "-"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + args.timeout + 60,
                          preexec_fn=_pinned(pin_sets(args)[1]))
    if done.returncode != 0:
        raise SystemExit(f"load run against {url} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def settle(cpu: Callable[[], dict[str, float]], idle_share: float = 0.1, window_s: float = 0.5,
           limit_s: float = 120.0) -> float:
    """Wait until a target's processes use under ``idle_share`` of a core (a collapsed server keeps working
    through requests whose callers gave up, and would load the next target's step); returns the seconds waited."""
    t0 = time.monotonic()
    last = sum(cpu().values())
    while time.monotonic() - t0 < limit_s:
        time.sleep(window_s)
        now = sum(cpu().values())
        if now - last < idle_share * window_s:
            break
        last = now
    return round(time.monotonic() - t0, 1)


def _measure(target: str, url: str, model: str, rate: float, args: argparse.Namespace, stream: bool,
             cpu: dict[str, Callable[[], dict[str, float]]]) -> dict[str, Any]:
    """One step with the CPU its target and the backend spent, per answer."""
    before = {k: f() for k, f in cpu.items()}
    step = load_step(url, model, rate, args.duration, args, 1.0 if stream else 0.0)
    after = {k: f() for k, f in cpu.items()}
    per_ok = 1000 / max(1, step["ok"])
    by_process = {name: round(per_ok * (t - before[target].get(name, 0.0)), 2) for name, t in after[target].items()}
    # CPU per answer: the target's own processes (in all, and by process), and the backend they all call
    step["cpu_ms_per_ok"] = {"target": round(sum(by_process.values()), 2),
                             "backend": round(per_ok * (sum(after["direct"].values())
                                                        - sum(before["direct"].values())), 2),
                             "by_process": {k: v for k, v in sorted(by_process.items(), key=lambda kv: -kv[1])
                                            if v >= 0.05}}
    step["settle_s"] = settle(cpu[target])
    return step


def sweep(urls: dict[str, str], models: dict[str, str], sweep_rates: list[float], args: argparse.Namespace,
          stream: bool, cpu: dict[str, Callable[[], dict[str, float]]]) -> list[dict[str, Any]]:
    """Every target at every rate (targets interleaved per rate, so drifting load hits all alike). A peer
    that collapsed is offered ``args.after_collapse`` more rates, then no more (its backlog would only grow);
    routeray's gateways get every rate, to show what they answer past saturation."""
    key = "ttft_ms" if stream else "latency_ms"
    rows: list[dict[str, Any]] = []
    collapses: Counter[str] = Counter()
    for rate in sweep_rates:
        row: dict[str, Any] = {"offered_rps": rate, "stream": stream, "targets": {}}
        for target in urls:
            if collapses[target] > args.after_collapse and not target.startswith("routeray"):
                continue
            step = _measure(target, urls[target], models[target], rate, args, stream, cpu)
            row["targets"][target] = step
            lat = step[key]
            print(f"{'stream ' if stream else ''}{rate:>6g}/s {target:<18} ok {step['throughput_rps']:>7.1f}/s "
                  f"failed {report.failures(step):>4} shed {report.rejections(step):>4} "
                  f"fb {sum(step['fallbacks'].values()):>4} {key[:-3]} p50 {lat.get('p50', float('nan')):>8.1f} "
                  f"p99 {lat.get('p99', float('nan')):>8.1f} ms cpu {step['cpu_ms_per_ok']['target']:.2f} ms/answer "
                  f"(settled in {step['settle_s']} s)", file=sys.stderr, flush=True)
            if collapses[target] or report.collapsed(step):
                collapses[target] += 1
        direct = row["targets"].get("direct")
        if direct:
            row["added_ms"] = {t: report.added(s, direct, key) for t, s in row["targets"].items() if t != "direct"}
        rows.append(row)
    return rows


# ---- the side-by-side comparison ------------------------------------------------------------------------
def parse_gateways(specs: list[str]) -> dict[str, dict[str, Any]]:
    """``NAME=JSON`` (a partial Config merged over the shipped defaults) -> {target name: overrides}."""
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        if not sep or not name.strip() or not name.replace("_", "").replace("-", "").isalnum():
            raise SystemExit(f"bad --gateway {spec!r}: expected NAME=JSON, e.g. fast='{{\"http_proxy\": \"haproxy\"}}'")
        try:
            over = json.loads(text or "{}")
        except ValueError as exc:
            raise SystemExit(f"bad --gateway {spec!r}: {exc}") from None
        if not isinstance(over, dict):
            raise SystemExit(f"bad --gateway {spec!r}: the JSON must be an object")
        out[f"routeray-{name.strip()}"] = over
    return out


def versions(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Versions that move these figures: this side's Python packages, and the peer's venv (``routellm_venv``)."""
    from importlib import metadata

    out: dict[str, Any] = {"python": sys.version.split()[0]}
    for name in ("ray", "torch", "onnxruntime", "transformers", "fastapi", "uvicorn", "httpx", "openai", "routeray"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    if extra:
        out["routellm_venv"] = extra
    return out


def _peer_cpu(pids: dict[str, int]) -> Callable[[], dict[str, float]]:
    return lambda: {name: sum(cpu_by_process(pid).values()) for name, pid in pids.items()}


def pin_sets(args: argparse.Namespace) -> tuple[set[int] | None, set[int] | None]:
    """``--pin SERVER:CLIENT`` (e.g. ``0:1`` or ``0-2:3``) as (the targets' cores, the load generator's and the
    loopback backend's cores); (None, None) without it."""
    spec = getattr(args, "pin", None)
    if not spec:
        return None, None

    def cores(part: str) -> set[int]:
        out: set[int] = set()
        for item in part.split(","):
            lo, _, hi = item.partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
        return out

    try:
        server, client = spec.split(":")
        return cores(server), cores(client)
    except ValueError:
        raise SystemExit(f"--pin takes SERVER:CLIENT core lists such as 0:1 or 0-2:3, not {spec!r}") from None


def compare_main(args: argparse.Namespace) -> int:
    from routeray.deployments.cli import free_port

    sweep_rates, stream_rates = rates(args.rates), rates(args.stream_rates) if args.stream_rates else []
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(wanted) - {"direct", "routeray", "one_process", "routellm"}
    if unknown:
        raise SystemExit(f"unknown --targets {sorted(unknown)}; choose from direct, routeray, one_process, routellm")
    gateways = parse_gateways(args.gateway or ["default={}"]) if "routeray" in wanted else {}
    be_port = free_port()
    backend_url = f"http://127.0.0.1:{be_port}/v1"
    model = f"router-{args.router}-{args.threshold:g}"
    labels = {"direct": "direct", "one_process": "one-process design",
              "routellm": f"RouteLLM {args.router} server", **{g: g for g in gateways}}
    # "_env" in a --gateway's JSON: environment variables for that gateway's processes (Ray's, HAProxy's settings)
    envs = {g: {k: str(v) for k, v in over.pop("_env", {}).items()} for g, over in gateways.items()}
    cfgs = {g: gateway_config(args.router, args.artifact, backend_url, free_port(), over) for g, over in gateways.items()}
    load_before = os.getloadavg()
    # Ray runs its workers at nice 15; the other targets run at 0. Equal footing on a shared machine:
    os.environ.setdefault("RAY_worker_niceness", "0")
    peer_versions = None
    server_cpus, client_cpus = pin_sets(args)
    with contextlib.ExitStack() as stack:
        be_pid = stack.enter_context(child(["backend", "--port", str(be_port)], f"http://127.0.0.1:{be_port}/",
                                           "backend", cpus=client_cpus))
        urls = {"direct": f"http://127.0.0.1:{be_port}"}
        cpu: dict[str, Callable[[], dict[str, float]]] = {"direct": lambda: cpu_by_process(be_pid)}
        for g, cfg in cfgs.items():
            url = f"http://127.0.0.1:{cfg['http_port']}"
            pid = stack.enter_context(child(["gateway", "--config", json.dumps(cfg)], f"{url}/health", g,
                                            timeout=600, stop_s=90, ok_only=True, cpus=server_cpus,
                                            env=envs[g]))
            # Ray's processes (GCS, raylet, controller, replicas, HAProxy) all descend from that driver
            urls[g], cpu[g] = url, (lambda p=pid: cpu_by_process(p))
        if "one_process" in wanted:
            port = free_port()
            pid = stack.enter_context(child(["one-process", "--port", str(port), "--router", args.router,
                                             "--upstream", backend_url,
                                             *(["--artifact", args.artifact] if args.artifact else [])],
                                            f"http://127.0.0.1:{port}/health", "one-process server",
                                            cpus=server_cpus))
            urls["one_process"], cpu["one_process"] = f"http://127.0.0.1:{port}", (lambda p=pid: cpu_by_process(p))
        if "routellm" in wanted:
            info = stack.enter_context(routellm_peer.peer(backend_url, args.router, free_port(), free_port(),
                                                          seed=args.seed))
            urls["routellm"], cpu["routellm"] = info["url"], _peer_cpu(info["pids"])
            peer_versions = info["versions"]
        models = {t: ("weak" if t == "direct" else model) for t in urls}
        for target in urls:  # warm connections, caches and lazy imports; not measured
            load_step(urls[target], models[target], 10, 2, args)
            settle(cpu[target])
        rows = sweep(urls, models, sweep_rates, args, stream=False, cpu=cpu)
        stream_rows = sweep(urls, models, stream_rates, args, stream=True, cpu=cpu) if stream_rates else []
    targets = list(urls)
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, "bench/overhead.py", *sys.argv[1:]]),
        "router": args.router, "model": model, "duration_s": args.duration, "timeout_s": args.timeout,
        "targets": targets, "labels": labels,
        "gateway_configs": {g: {k: v for k, v in c.items() if k not in ("strong", "weak", "http_port")}
                            for g, c in cfgs.items()},
        "serve_env": {k: v for k, v in os.environ.items() if k.startswith(("RAY_SERVE_", "RAY_worker"))},
        "gateway_env": {g: e for g, e in envs.items() if e},
        "versions": versions(peer_versions),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                    "pinned": None if server_cpus is None else {"targets": sorted(server_cpus),
                                                                "client_and_backend": sorted(client_cpus or ())}},
        "saturation": report.saturation(rows, targets), "non_streaming": rows, "streaming": stream_rows,
    }
    peers = [t for t in ("routellm", "one_process") if t in targets]
    result["ratios"] = report.ratios(result, list(gateways), peers)
    result["goodput"] = {g: report.goodput(rows, g) for g in gateways}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    report.plot(result, out.with_suffix(".png"))
    print(report.table(result))
    print(f"wrote {out} and {out.with_suffix('.png')}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    cmp_ = sub.add_parser("compare", help="routeray's gateways, the one-process design and RouteLLM's server, "
                                          "side by side against a direct call (starts them all)")
    cmp_.add_argument("--router", default="mf", help="router every target uses (mf; random)")
    cmp_.add_argument("--artifact", help="router artifact directory (default: the router's default artifact)")
    cmp_.add_argument("--threshold", type=float, default=0.5)
    cmp_.add_argument("--pin", help="SERVER:CLIENT core lists (e.g. 0:1): the targets on the first cores, the "
                                    "load generator and the loopback backend on the others, so past saturation "
                                    "they do not take the targets' CPU (RouteLLM's peer is not pinned)")
    cmp_.add_argument("--rates", default="10,50,100,200,400,800", help="offered loads, req/s")
    cmp_.add_argument("--stream-rates", default="100", help="offered loads of the streaming (TTFT) sweep; '' skips")
    cmp_.add_argument("--duration", type=float, default=10.0, help="seconds of load per step")
    cmp_.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    cmp_.add_argument("--targets", default="direct,routeray,one_process,routellm",
                      help="direct (always runs), routeray (every --gateway), one_process, routellm")
    cmp_.add_argument("--gateway", action="append", metavar="NAME=JSON",
                      help="a routeray gateway to load: a partial Config merged over the shipped defaults "
                           "(repeat for several; default: default={}); a key \"_env\" there holds environment "
                           "variables for that gateway's processes, e.g. Ray's HAProxy settings")
    cmp_.add_argument("--after-collapse", type=int, default=1,
                      help="higher rates offered to a peer after it collapsed (routeray gateways get every rate)")
    cmp_.add_argument("--out", default=str(RESULTS / "overhead.json"), help="JSON path; the PNG goes beside it")

    load = sub.add_parser("load", help="open-loop load against one running server")
    load.add_argument("--url", default="http://127.0.0.1:8000", help="base URL (without /v1)")
    load.add_argument("--rate", type=float, default=10.0, help="requests per second offered")
    load.add_argument("--duration", type=float, default=30.0, help="seconds to keep sending")
    load.add_argument("--models", default="router-random-0.5", help="model names and weights: a=3,b=1")
    load.add_argument("--prompts", type=Path, help="use these prompts instead of --mix (text or JSONL)")
    load.add_argument("--max-tokens", type=int, default=16)
    load.add_argument("--stream-share", type=float, default=0.0, help="share of requests sent with stream=True")
    load.add_argument("--max-in-flight", type=int, default=2048, help="cap on concurrent requests")
    load.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds")
    load.add_argument("--even", action="store_true", help="evenly spaced arrivals instead of Poisson")
    load.add_argument("--api-key", default=None, help="Bearer key sent to the gateway")
    load.add_argument("--json", type=Path, help="also write the figures here ('-': stdout only)")
    for p in (cmp_, load):
        p.add_argument("--mix", default="gsm8k=1,mt_bench=1,arena=1,mmlu=1",
                       help=f"prompt sources and weights ({', '.join(SOURCES)})")
        p.add_argument("--data-dir", type=Path, default=DATA, help="routeray's shared data folder")
        p.add_argument("--seed", type=int, default=0)

    be = sub.add_parser("backend", help="run the loopback OpenAI backend")
    be.add_argument("--port", type=int, required=True)
    op = sub.add_parser("one-process", help="run the one-process server (RouteLLM's design, our router)")
    op.add_argument("--port", type=int, required=True)
    op.add_argument("--router", default="random")
    op.add_argument("--artifact")
    op.add_argument("--upstream", required=True, help="OpenAI base URL both tiers go to")
    gw = sub.add_parser("gateway", help="run one routeray gateway on its own Ray cluster until SIGTERM")
    gw.add_argument("--config", required=True, help="the whole Config as JSON")

    args = ap.parse_args(argv)
    run = {"compare": compare_main, "load": load_main, "backend": backend_main, "one-process": one_process_main,
           "gateway": gateway_main}
    return run[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
