"""bench/overhead.py without Ray: parsing, the open-loop load generator against the bench's own loopback
backend (rate, model mix, streaming, time to first token, refusals), the one-process server in front of it,
the arithmetic that turns load runs into added latency, saturation, goodput and ratios (overhead_report), and
the pure parts of the RouteLLM peer (routellm_peer; its venv and server are the benchmark's, not tested)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import overhead  # noqa: E402
import overhead_report as report  # noqa: E402
import routellm_peer  # noqa: E402

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


def test_one_process_server_routes_by_threshold(shared_data: Path) -> None:
    be, rl = free_port(), free_port()
    prompts = {"gsm8k": overhead.source_prompts("gsm8k", shared_data, limit=20)}
    runs = {}
    with overhead.child(["backend", "--port", str(be)], f"http://127.0.0.1:{be}/", "backend"), \
            overhead.child(["one-process", "--port", str(rl), "--router", "random", "--upstream",
                            f"http://127.0.0.1:{be}/v1"], f"http://127.0.0.1:{rl}/health", "one-process server"):
        for model in ("router-random-0", "router-random-1"):
            results, sent, send_s, total_s = asyncio.run(overhead.run_load(
                f"http://127.0.0.1:{rl}", prompts, {model: 1.0}, {"gsm8k": 1.0}, 20, 1, stream_share=0.5))
            runs[model] = overhead.summarise(results, sent, send_s, total_s, 20)["models"][model]
    # random scores lie in [0, 1): threshold 0 sends everything strong, threshold 1 everything weak
    assert runs["router-random-0"]["tiers"] == {"strong": runs["router-random-0"]["requests"]}
    assert runs["router-random-1"]["answered_by"] == {"weak": runs["router-random-1"]["requests"]}
    assert all(r["errors"] == 0 and r["requests"] > 5 for r in runs.values())


def _step(rate: float, ok_rps: float, p50: float, p99: float, errors: int = 0, shed: int = 0,
          cpu: float | None = None) -> dict:
    step = {"offered_rps": rate, "send_rps": rate, "sent": int(rate * 10), "ok": int(ok_rps * 10),
            "throughput_rps": ok_rps, "latency_ms": {"p50": p50, "p90": p50, "p99": p99}, "ttft_ms": {},
            "errors": {**({"timeout": errors} if errors else {}), **({"http_503": shed} if shed else {})},
            "unfinished": 0, "fallbacks": {},
            "rejected": {"count": shed, "latency_ms": {"p50": 1.0, "p99": 4.0}, "retry_after_share": 1.0} if shed else {}}
    if cpu is not None:
        step["cpu_ms_per_ok"] = {"target": cpu}
    return step


def test_added_latency_collapse_and_saturation() -> None:
    direct = _step(100, 100, 1.0, 2.0)
    assert report.added(_step(100, 100, 5.0, 20.0), direct, "latency_ms") == {"p50": 4.0, "p90": 4.0, "p99": 18.0}
    assert report.collapsed(_step(100, 40, 900, 9000)) and report.collapsed(_step(100, 95, 5, 20, errors=200))
    assert not report.collapsed(_step(100, 95, 5, 20))
    rows = [{"targets": {"gateway": _step(r, ok, 5, p99)}} for r, ok, p99 in
            ((100, 100, 20), (200, 199, 40), (400, 250, 3000))]
    sat = report.saturation(rows, ["gateway", "absent"])
    assert sat == {"gateway": {"max_throughput_rps": 250, "sustained_rps": 200}}


def test_goodput_past_saturation_counts_shed_requests_apart_from_failures() -> None:
    rows = [{"offered_rps": r, "targets": {"gw": s}} for r, s in (
        (100, _step(100, 100, 5, 20)), (200, _step(200, 200, 6, 30)),
        (400, _step(400, 190, 40, 300, shed=2000)), (800, _step(800, 180, 50, 400, errors=10, shed=6000)))]
    g = report.goodput(rows, "gw")
    assert g["peak_rps"] == 200 and g["sustained_rps"] == 200
    at4 = g["past_saturation"][1]
    assert at4["x_saturation"] == 4 and at4["share_of_peak"] == 0.9
    assert (at4["rejected"], at4["failed"], at4["rejection_p99_ms"], at4["retry_after_share"]) == (6000, 10, 4.0, 1.0)
    assert report.failures(rows[2]["targets"]["gw"]) == 0 and report.rejections(rows[2]["targets"]["gw"]) == 2000


def test_ratios_between_gateways_and_peers() -> None:
    rows = [{"offered_rps": r, "stream": False, "targets": {"gw": g, "rl": p}, "added_ms": {"gw": {"p50": 2.0, "p99": 5.0},
                                                                          "rl": {"p50": 8.0, "p99": 50.0}}}
            for r, g, p in ((100, _step(100, 100, 3, 6, cpu=4.0), _step(100, 60, 9, 51, cpu=10.0)),)]
    result = {"non_streaming": rows, "streaming": [], "saturation": {"gw": {"max_throughput_rps": 600, "sustained_rps": 100},
                                                                      "rl": {"max_throughput_rps": 60, "sustained_rps": 50}}}
    r = report.ratios(result, ["gw"], ["rl", "missing"])
    assert list(r) == ["gw vs rl"]
    assert r["gw vs rl"]["peak_throughput"] == 10.0 and r["gw vs rl"]["cpu_per_answer_at_100"] == 0.4
    assert r["gw vs rl"]["added_latency_peer_over_gateway"] == {"100": {"p50": 4.0, "p99": 10.0}}
    assert report.ratio(1.0, 0.0) is None and report.ratio(None, 2.0) is None
    result.update(targets=["gw", "rl"], ratios=r, goodput={"gw": report.goodput(rows, "gw")})
    text = report.table(result)
    assert "| 100 | 100.0 | 2.0 / 5.0 | 0 | 4.0 | 60.0 | 8.0 / 50.0 | 0 | 10.0 |" in text
    assert "gw vs rl: peak answers/s x10.0, CPU per answer at 100 req/s x0.4" in text


def test_refusals_are_summarised_with_their_speed_and_retry_after() -> None:
    results = [overhead.Result("m", "s", False, True, 0.002),
               overhead.Result("m", "s", False, False, 0.004, error="http_503", retry_after="1"),
               overhead.Result("m", "s", False, False, 0.006, error="http_429"),
               overhead.Result("m", "s", False, False, 10.0, error="timeout")]
    out = overhead.summarise(results, 4, 1.0, 1.0, 4)
    assert out["rejected"]["count"] == 2 and out["rejected"]["retry_after_share"] == 0.5
    assert out["rejected"]["latency_ms"]["p50"] == 5.0
    assert out["errors"] == {"http_503": 1, "http_429": 1, "timeout": 1}
    assert report.failures(out) == 1 and report.rejections(out) == 2


def test_gateway_specs_and_process_trees() -> None:
    assert overhead.parse_gateways(["default={}", 'fast={"http_proxy": "haproxy"}']) == {
        "routeray-default": {}, "routeray-fast": {"http_proxy": "haproxy"}}
    for bad in ("noequals", "=x", "a b={}", "x=[1]", "x={bad json"):
        with pytest.raises(SystemExit):
            overhead.parse_gateways([bad])
    table = {1: (0, 1.0, "init"), 10: (1, 2.0, "driver"), 11: (10, 3.0, "raylet"), 12: (11, 4.0, "worker"),
             20: (10, 5.0, "backend"), 21: (20, 6.0, "backend-child")}
    assert overhead.descendants(10, table=table) == {10, 11, 12, 20, 21}
    assert overhead.descendants(10, skip=[20], table=table) == {10, 11, 12}


def test_routellm_peer_pure_parts(tmp_path: Path) -> None:
    assert routellm_peer.pad([0.5, 0.5], 4) == [0.5, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError):
        routellm_peer.pad([1.0] * 5, 4)
    body = routellm_peer.embedding_response([[1.0], [2.0]], "text-embedding-3-small", 3)
    assert [d["index"] for d in body["data"]] == [0, 1] and body["usage"]["total_tokens"] == 3
    cmd = routellm_peer.server_command(Path("/v/bin/python"), "mf", 7000, tmp_path / "c.json", "http://b/v1")
    assert cmd[1:3] == ["-m", "routellm.openai_server"] and cmd[cmd.index("--routers") + 1] == "mf"
    assert cmd[cmd.index("--base-url") + 1] == "http://b/v1" and "openai/strong" in cmd
    with pytest.raises(SystemExit):
        routellm_peer.server_command(Path("p"), "bert", 1, tmp_path, "u")
    assert routellm_peer.router_config(tmp_path) == {"mf": {"checkpoint_path": str(tmp_path)}}
    env = routellm_peer.peer_env("http://127.0.0.1:9/v1")
    assert env["OPENAI_BASE_URL"] == "http://127.0.0.1:9/v1" and env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert env["HF_HUB_OFFLINE"] == "1" and "PYTHONPATH" not in env
    assert json.loads(routellm_peer.stamp_text())[0] == ["torch==2.13.0"]


def test_gateway_config_keeps_the_artifact_under_test_when_routers_are_overridden() -> None:
    cfg = overhead.gateway_config("mf", "/art/mf", "http://127.0.0.1:1/v1", 8000,
                                  {"routers": [{"router": "mf", "placement": "ingress"},
                                               {"router": "random"}], "http_proxy": "haproxy"})
    assert cfg["routers"] == [{"router": "mf", "placement": "ingress", "artifact": "/art/mf"}, {"router": "random"}]
    assert cfg["http_proxy"] == "haproxy" and cfg["strong"]["base_url"] == "http://127.0.0.1:1/v1"


def test_scale_plan_from_cpu_per_answer_and_peak() -> None:
    import scale_plan

    result = {"machine": {"cpus": 2}, "saturation": {"routeray-default": {"max_throughput_rps": 250.0}},
              "non_streaming": [{"offered_rps": 100, "targets": {"routeray-default": {"cpu_ms_per_ok": {"target": 6.0}}}}]}
    p = scale_plan.plan(result, "routeray-default", 1000, 100, 0.6, 0.04)
    assert p["vcpus_by_cpu"] == 10.0 and p["replicas_by_cpu"] == 5 and p["replicas_by_peak"] == 7
    # 10 vCPUs at $0.04/h for 3.6M requests an hour
    assert p["usd_per_million_by_cpu"] == round(10 * 0.04 / 3.6, 4)
