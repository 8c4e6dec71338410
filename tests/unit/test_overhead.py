"""bench/overhead.py without Ray: parsing, the open-loop load generator against the bench's own loopback
backend (rate, model mix, streaming, time to first token), the RouteLLM-style server in front of it, and
the arithmetic that turns load runs into added latency and saturation."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import overhead  # noqa: E402

from routeray.deployments.cli import free_port  # noqa: E402


def test_weights_and_rates_normalise_and_reject_nonsense() -> None:
    assert overhead.weights("a=3,b=1") == {"a": 0.75, "b": 0.25}
    assert overhead.weights("router-mf-30%") == {"router-mf-30%": 1.0}
    assert overhead.rates("10, 50,100") == [10.0, 50.0, 100.0]
    for bad in ("a=0", "a=-1,b=2"):
        with pytest.raises(SystemExit):
            overhead.weights(bad)
    for bad in ("", "10,x", "0,10"):
        with pytest.raises(SystemExit):
            overhead.rates(bad)


def test_prompt_sources_are_real_and_files_name_bad_rows(shared_data: Path, tmp_path: Path) -> None:
    for source in overhead.SOURCES:
        prompts = overhead.source_prompts(source, shared_data, limit=5)
        assert prompts and all(isinstance(p, str) and p.strip() for p in prompts)
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no field"}\n')
    with pytest.raises(SystemExit, match=r"p.jsonl:2"):
        overhead.file_prompts(bad)


def test_short_run_meets_the_rate_mix_and_streams(shared_data: Path, tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "out.json"
    with overhead.child(["backend", "--port", str(port)], f"http://127.0.0.1:{port}/", "backend"):
        rc = overhead.main(["load", "--url", f"http://127.0.0.1:{port}", "--rate", "40", "--duration", "1.5",
                            "--even", "--models", "a=1,b=1", "--stream-share", "0.5", "--mix", "gsm8k=1,mmlu=1",
                            "--data-dir", str(shared_data), "--json", str(out)])
    result = json.loads(out.read_text())
    assert rc == 0 and result["sent"] == 60 and result["ok"] == 60 and result["errors"] == {}
    assert set(result["models"]) == {"a", "b"} and set(result["sources"]) == {"gsm8k", "mmlu"}
    # the loopback backend answers as the model it was asked for
    assert all(m["answered_by"] == {name: m["requests"]} for name, m in result["models"].items())
    assert 0 < result["ttft_ms"]["p50"] <= result["stream_latency_ms"]["p50"]
    assert result["latency_ms"]["p50"] > 0 and result["throughput_rps"] > 30


def test_routellm_style_server_routes_by_threshold(shared_data: Path) -> None:
    be, rl = free_port(), free_port()
    prompts = {"gsm8k": overhead.source_prompts("gsm8k", shared_data, limit=20)}
    runs = {}
    with overhead.child(["backend", "--port", str(be)], f"http://127.0.0.1:{be}/", "backend"), \
            overhead.child(["routellm", "--port", str(rl), "--router", "random", "--upstream",
                            f"http://127.0.0.1:{be}/v1"], f"http://127.0.0.1:{rl}/health", "RouteLLM-style server"):
        for model in ("router-random-0", "router-random-1"):
            results, sent, send_s, total_s = asyncio.run(overhead.run_load(
                f"http://127.0.0.1:{rl}", prompts, {model: 1.0}, {"gsm8k": 1.0}, 20, 1, stream_share=0.5))
            runs[model] = overhead.summarise(results, sent, send_s, total_s, 20)["models"][model]
    # random scores lie in [0, 1): threshold 0 sends everything strong, threshold 1 everything weak
    assert runs["router-random-0"]["tiers"] == {"strong": runs["router-random-0"]["requests"]}
    assert runs["router-random-1"]["answered_by"] == {"weak": runs["router-random-1"]["requests"]}
    assert all(r["errors"] == 0 and r["requests"] > 5 for r in runs.values())


def _step(rate: float, ok_rps: float, p50: float, p99: float, errors: int = 0) -> dict:
    return {"offered_rps": rate, "send_rps": rate, "sent": int(rate * 10), "ok": int(ok_rps * 10),
            "throughput_rps": ok_rps, "latency_ms": {"p50": p50, "p90": p50, "p99": p99}, "ttft_ms": {},
            "errors": {"timeout": errors} if errors else {}, "unfinished": 0, "fallbacks": {}}


def test_added_latency_collapse_and_saturation() -> None:
    direct = _step(100, 100, 1.0, 2.0)
    assert overhead.added(_step(100, 100, 5.0, 20.0), direct, "latency_ms") == {"p50": 4.0, "p90": 4.0, "p99": 18.0}
    assert overhead.collapsed(_step(100, 40, 900, 9000)) and overhead.collapsed(_step(100, 95, 5, 20, errors=200))
    assert not overhead.collapsed(_step(100, 95, 5, 20))
    rows = [{"targets": {"gateway": _step(r, ok, 5, p99)}} for r, ok, p99 in
            ((100, 100, 20), (200, 199, 40), (400, 250, 3000))]
    sat = overhead.saturation(rows)["gateway"]
    assert sat == {"max_throughput_rps": 250, "sustained_rps": 200}


def test_gateway_config_keeps_the_artifact_under_test_when_routers_are_overridden() -> None:
    cfg = overhead.gateway_config("mf", "/art/mf", "http://127.0.0.1:1/v1", 8000,
                                  {"routers": [{"router": "mf", "placement": "ingress"},
                                               {"router": "random"}], "http_proxy": "haproxy"})
    assert cfg["routers"] == [{"router": "mf", "placement": "ingress", "artifact": "/art/mf"}, {"router": "random"}]
    assert cfg["http_proxy"] == "haproxy" and cfg["strong"]["base_url"] == "http://127.0.0.1:1/v1"
