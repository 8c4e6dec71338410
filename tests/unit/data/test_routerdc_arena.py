"""The RouterDC pass-rate and 2023 Arena-battle importers, on the real files in ../shared/data and on
malformed or truncated copies of them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from routeray.data import load_data_dir, read_arena_battles, read_routerdc
from routeray.data.routerdc import routerdc_task
from routeray.errors import DataError

ROUTERDC_MODELS = 7


def test_routerdc_real_files(shared_data: Path) -> None:
    folder = shared_data / "golden/routerdc"
    gsm = read_routerdc(folder / "gsm8k-train.json")
    assert gsm.sources == ["routerdc/gsm8k"] and not gsm.judgments
    prompts = {g.prompt for g in gsm.golden}
    assert len(prompts) == 1000 and len(gsm.golden) == 1000 * ROUTERDC_MODELS
    assert len(gsm.models) == ROUTERDC_MODELS and "meta-math/MetaMath-Mistral-7B" in gsm.models
    assert all(0.0 <= g.score <= 1.0 for g in gsm.golden)
    # MetaMath is a maths fine-tune: it should pass more GSM8K questions than base Mistral.
    mean = {m: sum(g.score for g in gsm.golden if g.model == m) / 1000 for m in gsm.models}
    assert mean["meta-math/MetaMath-Mistral-7B"] > mean["mistralai/Mistral-7B-v0.1"]
    arc = read_routerdc(folder / "arc_challenge_test.json")
    assert arc.sources == ["routerdc/arc_challenge"]


@pytest.mark.parametrize(("name", "task"), [("gsm8k-train.json", "gsm8k"), ("arc_easy_test.json", "arc_easy"),
                                            ("arc_challenge_train.json", "arc_challenge"), ("other.json", "other")])
def test_routerdc_task_from_file_name(name: str, task: str) -> None:
    assert routerdc_task(Path(name)) == task


def test_routerdc_malformed_names_file_and_row(tmp_path: Path, shared_data: Path) -> None:
    real = json.loads((shared_data / "golden/routerdc/arc_easy_test.json").read_text())
    path = tmp_path / "arc_easy_test.json"
    bad = real[:3] + [{"question": real[3]["question"], "scores": {"m": 1.7}}]
    path.write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"arc_easy_test\.json, row 3: score of 'm' must be a pass rate"):
        read_routerdc(path)
    path.write_text(json.dumps(real[:2] + [{"scores": {}}]))
    with pytest.raises(DataError, match=r"row 2: expected an object with `question` and `scores`"):
        read_routerdc(path)
    path.write_text(json.dumps(real)[:5000])  # truncated download
    with pytest.raises(DataError, match=r"arc_easy_test\.json: malformed JSON"):
        read_routerdc(path)
    path.write_text(json.dumps({"question": "x"}))
    with pytest.raises(DataError, match="expected a JSON list"):
        read_routerdc(path)


def test_arena_battles_real_file(shared_data: Path) -> None:
    data = read_arena_battles(shared_data / "preference/arena_battles_2023/question_original.jsonl")
    assert data.sources == ["arena_battles"] and not data.golden
    assert 1100 <= len(data.judgments) <= 1131 and 700 <= len(data.prompts) <= 900
    assert Counter(j.p_a for j in data.judgments).keys() == {0.0, 0.5, 1.0}
    # gpt-4 won more of its battles than it lost, as it did on the 2023 leaderboard.
    wins = [j.p_a if j.model_a == "gpt-4" else 1 - j.p_a for j in data.judgments if "gpt-4" in (j.model_a, j.model_b)]
    assert len(wins) > 100 and sum(wins) / len(wins) > 0.6


def test_arena_battles_malformed_names_file_and_row(tmp_path: Path, shared_data: Path) -> None:
    lines = (shared_data / "preference/arena_battles_2023/question_original.jsonl").read_text().splitlines()
    path = tmp_path / "question_original.jsonl"
    rec = json.loads(lines[4])
    rec["winner"] = "model_c"
    path.write_text("\n".join(lines[:4] + [json.dumps(rec)]) + "\n")
    with pytest.raises(DataError, match=r"question_original\.jsonl, row 5: unknown winner 'model_c'"):
        read_arena_battles(path)
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2] + "\n")  # truncated line
    with pytest.raises(DataError, match=r"row 4: malformed JSON"):
        read_arena_battles(path)
    del rec["turns"]
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(DataError, match=r"row 1: missing field\(s\) \['turns'\]"):
        read_arena_battles(path)


def test_loader_reads_both_new_sources(shared_data: Path) -> None:
    data = load_data_dir(shared_data, sources=["routerdc", "arena_battles"])
    assert {"routerdc/gsm8k", "routerdc/arc_easy", "routerdc/arc_challenge", "arena_battles"} == set(data.sources)
