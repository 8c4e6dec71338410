"""bench/loadgen.py: weights and prompt parsing, and a short open-loop run against a loopback
OpenAI-protocol server (no Ray): the offered rate is met, the model mix is sent, answers are counted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.integration.fake_openai import FakeOpenAI

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import loadgen  # noqa: E402


def test_weights_normalise_and_reject_nonsense() -> None:
    assert loadgen.weights("a=3,b=1") == {"a": 0.75, "b": 0.25}
    assert loadgen.weights("router-mf-30%") == {"router-mf-30%": 1.0}
    with pytest.raises(SystemExit):
        loadgen.weights("a=0")


def test_prompt_sources_are_real_and_files_name_bad_rows(shared_data: Path, tmp_path: Path) -> None:
    for source in loadgen.SOURCES:
        prompts = loadgen.source_prompts(source, shared_data, limit=5)
        assert prompts and all(isinstance(p, str) and p.strip() for p in prompts)
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no field"}\n')
    with pytest.raises(SystemExit, match=r"p.jsonl:2"):
        loadgen.file_prompts(bad)


def test_short_run_meets_the_rate_and_mix(shared_data: Path, tmp_path: Path) -> None:
    server = FakeOpenAI("fake").start()
    try:
        out = tmp_path / "out.json"
        rc = loadgen.main(["--url", server.base_url.removesuffix("/v1"), "--rate", "40", "--duration", "1.5",
                           "--even", "--models", "a=1,b=1", "--stream-share", "0.5", "--mix", "gsm8k=1,mmlu=1",
                           "--data-dir", str(shared_data), "--json", str(out)])
    finally:
        server.stop()
    import json

    result = json.loads(out.read_text())
    assert rc == 0 and result["sent"] == 60 and result["completed"] == 60 and result["errors"] == {}
    assert server.calls == 60
    assert set(result["models"]) == {"a", "b"} and set(result["sources"]) == {"gsm8k", "mmlu"}
    assert all(m["answered_by"] == {"fake": m["requests"]} for m in result["models"].values())
    assert result["latency_ms"]["p50"] > 0
