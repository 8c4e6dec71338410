"""``load_data_dir`` on the real ../shared/data, and on a directory holding an arena-55k CSV."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from routeray.data import MIN_PROMPT_CHARS, fit_ratings, golden_to_judgments, load_data_dir
from routeray.data.models import GPT4_1106, MIXTRAL
from routeray.errors import DataError


@pytest.fixture(scope="module")
def data(shared_data: Path):
    return load_data_dir(shared_data)


def test_reads_every_training_source(data) -> None:
    assert {"alpaca_eval", "arena_bench", "routerbench/arc_challenge", "routerbench/winograde",
            "routerbench/mbpp", "mmlu_pro/math", "mmlu_pro/physics"} <= set(data.sources)
    assert not any(s.startswith(("eval_sample", "routellm_eval", "mt_bench")) for s in data.sources)
    assert all(len(p) >= MIN_PROMPT_CHARS for p in data.prompts)
    counts = Counter(g.source.split("/")[0] for g in data.golden)
    assert counts["mmlu_pro"] == 2 * 5222 and counts["arena_bench"] > 4000
    assert len(data.judgments) > 55_000
    assert {GPT4_1106, MIXTRAL, "gpt-4o-2024-05-13"} <= set(data.models)
    assert "example" not in data.models  # the judge-gaming NullModel is excluded
    assert all(0.0 <= j.p_a <= 1.0 and 0 < j.weight <= 1.0 for j in data.judgments)


def test_gpt4_beats_mixtral_in_every_source(data) -> None:
    for source in ("arena_bench", "routerbench", "mmlu_pro"):
        golden = [g for g in data.golden if g.source.startswith(source)]
        judgments = golden_to_judgments(golden, pairs=[(GPT4_1106, MIXTRAL), ("gpt-4o-2024-05-13", MIXTRAL)])
        assert judgments, source
        assert sum(j.p_a for j in judgments) / len(judgments) > 0.5, source
    r = fit_ratings(data.judgments + golden_to_judgments(data.golden))
    assert r[GPT4_1106] > r[MIXTRAL]


def test_sources_filter(shared_data: Path) -> None:
    only = load_data_dir(shared_data, sources=["routerbench/mbpp", "arena_bench"])
    assert only.sources == ["arena_bench", "routerbench/mbpp"] and not only.judgments
    with pytest.raises(DataError, match=r"no records for source\(s\) \['routerbench/nope'\]"):
        load_data_dir(shared_data, sources=["routerbench/nope", "arena_bench"])


def test_arena_55k_csv_found_and_weights(tmp_path: Path, shared_data: Path) -> None:
    shutil.copytree(shared_data / "preference/arena_bench_v1", tmp_path / "preference/arena_bench_v1")
    (tmp_path / "preference/arena").mkdir()
    (tmp_path / "preference/arena/train.csv").write_text(
        "id,model_a,model_b,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie\n"
        f"1,gpt-4-1106-preview,mixtral-8x7b-instruct-v0.1,\"{json.dumps(['Why is the sky blue?']).replace(chr(34), 2 * chr(34))}\",a,b,1,0,0\n")
    data = load_data_dir(tmp_path)
    assert data.sources == ["arena_55k", "arena_bench"]
    assert data.judgments[0].model_b == MIXTRAL and data.judgments[0].weight == 1.0


def test_no_known_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no known data source"):
        load_data_dir(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_data_dir(tmp_path / "missing")
