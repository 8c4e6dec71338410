"""A real redis-server (Debian's package) for the tests that need one: started on a free port with no
persistence in a temporary folder, stopped afterwards. Skips (fails on CI) where it is not installed."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from routeray.deployments.cli import free_port
from tests.binaries import require_binary, stop


def redis_binary() -> str:
    return require_binary("redis-server", "redis-server")


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """Yields the server's URL once it answers PING; stops it afterwards."""
    import redis

    port = free_port()
    log = (folder / "redis.log").open("wb")
    proc = subprocess.Popen([redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)], stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.time() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode}: {(folder / 'redis.log').read_text()}")
            try:
                if redis.Redis.from_url(url, socket_timeout=1).ping():
                    break
            except redis.ConnectionError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        stop(proc, 10)
        log.close()
