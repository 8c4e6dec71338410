"""Fuzz the gateway on real Ray Serve from its own OpenAPI schema (``/openapi.json``) with schemathesis:
positive and negative cases for every operation, checked for "no 5xx" (and the gateway keeps answering).
Upstreams are loopback OpenAI-protocol servers of the tests' own; client keys are on, so every case also
passes through authentication."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from routeray.config import BackendConfig, Config, EngineConfig, RoutingConfig, ScorerConfig
from tests.integration.fake_openai import FakeOpenAI, free_port

pytestmark = pytest.mark.integration

KEY = "sk-fuzz-client-0001"
MAX_EXAMPLES = 600  # per operation and phase; bounded by MAX_TIME_S as well
MAX_TIME_S = 75
# Names that get past the model-name check, so positive cases reach scoring, routing and the upstreams;
# negative cases still send every other string, and non-strings, as ``model``.
VALID_MODELS = ["router-random-0.5", "router-random-0", "router-random-1", "router-random-30%", "strong", "weak",
                "fake-strong", "fake-weak"]


@pytest.fixture(scope="module")
def gateway(clean_ray: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from routeray.deployments.cli import start

    keys = tmp_path_factory.mktemp("fuzz") / "keys.txt"
    keys.write_text(KEY + "\n")
    strong, weak = FakeOpenAI("fake-strong").start(), FakeOpenAI("fake-weak").start()
    fast = {"timeout_s": 5, "read_timeout_s": 2, "connect_timeout_s": 1, "max_retries": 0}
    cfg = Config(
        http_port=free_port(),
        routers=[ScorerConfig(router="random")],
        engine=EngineConfig(enabled=False),
        strong=BackendConfig(name="fake-strong", base_url=strong.base_url, **fast),
        weak=BackendConfig(name="fake-weak", base_url=weak.base_url, **fast),
        routing=RoutingConfig(scorer_timeout_s=20),
        ingress={"max_body_bytes": 64_000, "access": {"api_keys_file": str(keys)}},
    )
    start(cfg, ray_init={"address": "local", "num_cpus": 2, "include_dashboard": False})
    yield f"http://127.0.0.1:{cfg.http_port}"
    strong.stop()
    weak.stop()


def _schemathesis() -> list[str]:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    return [exe]


def test_openapi_describes_the_chat_body(gateway: str) -> None:
    schema = httpx.get(f"{gateway}/openapi.json").json()
    op = schema["paths"]["/v1/chat/completions"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert {"model", "messages"} <= set(body["required"])


def _fuzz_schema(gateway: str, path: Path) -> Path:
    """The gateway's own OpenAPI document, with ``model`` narrowed to names the gateway serves."""
    schema = httpx.get(f"{gateway}/openapi.json").json()
    body = schema["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    body["properties"]["model"] = {"type": "string", "enum": VALID_MODELS}
    path.write_text(json.dumps(schema))
    return path


def test_schemathesis_finds_no_server_error(gateway: str, tmp_path: Path) -> None:
    report = tmp_path / "report.ndjson"
    schema = _fuzz_schema(gateway, tmp_path / "openapi.json")
    cmd = _schemathesis() + [
        "run", str(schema), "--url", gateway, "--checks", "not_a_server_error", "--mode", "all",
        "--phases", "examples,coverage,fuzzing", "--max-examples", str(MAX_EXAMPLES), "--max-time", str(MAX_TIME_S),
        "--seed", "20261124", "--workers", "4", "--request-timeout", "30", "--generation-database", "none",
        "--suppress-health-check", "all", "--no-color", "-H", f"Authorization: Bearer {KEY}",
        "--report", "ndjson", "--report-ndjson-path", str(report),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=MAX_TIME_S + 90)
    tail = run.stdout[-4000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    statuses = _statuses(report)
    cases = sum(statuses.values())
    print(f"schemathesis: {cases} requests, status codes {dict(sorted(statuses.items()))}")
    assert cases >= 1000, tail
    assert statuses[200] >= 100, statuses  # positive cases really went through routing and upstreams
    assert not any(code >= 500 for code in statuses), statuses
    assert httpx.get(f"{gateway}/health").json()["status"] == "ok"
    r = httpx.post(f"{gateway}/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                   json={"model": "router-random-0.5", "messages": [{"role": "user", "content": "still there?"}]})
    assert r.status_code == 200, r.text


def _statuses(report: Path) -> Counter[int]:
    """Status codes of every request schemathesis sent, from its NDJSON event log."""
    seen: Counter[int] = Counter()
    for line in report.read_text().splitlines():
        for name, data in json.loads(line).items():
            if name == "ScenarioFinished" and isinstance(data, dict):
                for interaction in ((data.get("recorder") or {}).get("interactions") or {}).values():
                    seen[(interaction.get("response") or {}).get("status_code", 0)] += 1
    return seen
