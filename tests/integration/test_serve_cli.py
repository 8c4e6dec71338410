"""`routeray serve --config file`: starts, says where it listens, answers, and on SIGINT shuts Ray down and
exits 0. Backends are loopback OpenAI-protocol servers (no vLLM), so this runs in well under a minute."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.integration.fake_openai import FakeOpenAI, free_port

pytestmark = pytest.mark.integration


def test_routeray_serve_runs_and_stops_cleanly(tmp_path: Path) -> None:
    strong, weak = FakeOpenAI("s").start(), FakeOpenAI("w").start()
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "routers": [{"router": "random"}], "engine": {"enabled": False},
        "strong": {"name": "s", "base_url": strong.base_url},
        "weak": {"name": "w", "base_url": weak.base_url},
    }))
    port = free_port()
    exe = Path(sys.executable).with_name("routeray")
    proc = subprocess.Popen([str(exe), "serve", "--config", str(config), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                r = httpx.post(f"{url}/v1/chat/completions", timeout=10, json={
                    "model": "router-random-0", "messages": [{"role": "user", "content": "hi"}]})
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gateway did not answer within 120 s"
            time.sleep(1)
        assert r.json()["model"] == "s"
        time.sleep(3)  # let it print its ready message (a Ctrl-C during start-up also shuts down cleanly)
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        strong.stop()
        weak.stop()
    assert proc.returncode == 0, out
    assert f"{url}/v1" in out and f"{url}/metrics" in out
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)
