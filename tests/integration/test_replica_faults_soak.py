"""Soak on real Ray Serve: a fixed request rate for a while (``ROUTERAY_SOAK_S`` seconds, 30 by default so
the suite stays short; the figures in docs/reliability.md come from 300 s) with zero failed requests and
flat memory in the gateway, scorer and proxy processes. Upstreams are loopback fakes (no faults injected:
this is the no-fault baseline the replica-fault tests compare against)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from routeray.config import RoutingConfig
from tests.integration.conftest import fake_gateway

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SOAK_S = float(os.environ.get("ROUTERAY_SOAK_S", "30"))
RATE = 20  # requests per second
WARMUP_S = 10.0
MAX_GROWTH_MB = 40.0  # per process, between the first and the last third of the run
Samples = dict[str, list[float]]  # RSS in MiB over time, per watched process
GATEWAY = {"backend": {"max_retries": 1}, "routing": RoutingConfig(scorer_timeout_s=5)}  # fake_gateway's keywords


@pytest.fixture(scope="module")
def url(clean_ray: None) -> Iterator[str]:
    with fake_gateway(**GATEWAY) as gw:
        yield gw.url


@pytest.fixture(scope="module")
def watched() -> tuple[str, ...]:
    """Command-line marks of the processes whose memory is watched: every process a request passes."""
    return "ServeReplica:routeray:Gateway", "ServeReplica:routeray:Scorer_random", "ProxyActor"


def _processes(watched: tuple[str, ...]) -> dict[str, psutil.Process]:
    """This test's own Serve processes (descendants of this process: other Ray clusters may share the host),
    the newest for each mark: HAProxy starts a new process at each config reload and the old one drains."""
    found: dict[str, tuple[float, psutil.Process]] = {}
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            cmd, created = " ".join(proc.cmdline()), proc.create_time()
        except psutil.Error:
            continue
        for name in watched:
            if name in cmd and created > found.get(name, (0.0, proc))[0]:
                found[name] = created, proc
    return {name: proc for name, (_, proc) in found.items()}


def _sample(watched: tuple[str, ...], rss: Samples, pids: dict[str, set[int]]) -> None:
    """One RSS sample (MiB) of each watched process, looked up afresh, so one replaced meanwhile (an
    HAProxy reload) is followed to its successor."""
    for name, proc in _processes(watched).items():
        try:
            rss[name].append(proc.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            continue  # exited since the lookup: the next sample finds its successor
        pids[name].add(proc.pid)


async def _soak(url: str, watched: tuple[str, ...]) -> tuple[int, list[str], Samples, dict[str, set[int]]]:
    assert set(_processes(watched)) == set(watched), sorted(_processes(watched))
    rss: Samples = {name: [] for name in watched}
    pids: dict[str, set[int]] = {name: set() for name in watched}
    failures: list[str] = []
    sent = 0
    async with httpx.AsyncClient(timeout=30) as client:
        async def one(i: int) -> None:
            body = {"model": "router-random-0.5", "stream": i % 4 == 0,
                    "messages": [{"role": "user", "content": f"soak question {i}"}]}
            try:
                r = await client.post(f"{url}/v1/chat/completions", json=body)
                if r.status_code != 200 or '"error"' in r.text:
                    failures.append(f"{r.status_code} {r.text[:120]}")
            except httpx.HTTPError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

        tasks = []
        start = next_sample = time.monotonic()
        while (now := time.monotonic()) - start < SOAK_S:
            if now >= next_sample and now - start >= WARMUP_S:
                _sample(watched, rss, pids)
                next_sample = now + 2.0
            tasks.append(asyncio.create_task(one(sent)))
            sent += 1
            await asyncio.sleep(max(0.0, start + sent / RATE - time.monotonic()))
        await asyncio.gather(*tasks)
    return sent, failures, rss, pids


def _memory(name: str, samples: list[float], growth: float, processes: int) -> str:
    replaced = f", {processes} processes" if processes > 1 else ""
    return f"{name.split(':')[-1]} {samples[0]:.0f}→{samples[-1]:.0f} (mean growth {growth:+.1f}{replaced})"


def test_fixed_rate_soak_has_no_failures_and_flat_memory(url: str, watched: tuple[str, ...]) -> None:
    sent, failures, rss, pids = asyncio.run(_soak(url, watched))
    growth = {}
    for name, samples in rss.items():
        third = max(1, len(samples) // 3)
        growth[name] = sum(samples[-third:]) / third - sum(samples[:third]) / third
    print(f"\nsoak: {sent} requests at {RATE}/s over {SOAK_S:.0f} s, {len(failures)} failed; RSS MiB first→last "
          + ", ".join(_memory(n, s, growth[n], len(pids[n])) for n, s in rss.items()))
    assert sent >= RATE * SOAK_S * 0.9
    assert not failures, failures[:5]
    assert all(g < MAX_GROWTH_MB for g in growth.values()), growth
