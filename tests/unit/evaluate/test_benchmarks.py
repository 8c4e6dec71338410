"""Benchmark readers (RouteLLM layout): what they compute, and clear errors for bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from routeray.data.schema import GoldenLabel
from routeray.errors import DataError
from routeray.evaluate.benchmarks import from_golden_labels, load_benchmark
from routeray.evaluate.cost import saving

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


def _layout(tmp_path: Path, shared_data: Path, *parts: str) -> Path:
    root = tmp_path / "evals"
    for part in parts:
        shutil.copytree(shared_data / "eval_sample" / part, root / part)
    for f in root.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)  # the shared copy is read-only
    return root


def test_mmlu_reads_every_subject_file(shared_data):
    b = load_benchmark("mmlu", shared_data / "eval_sample")
    files = sorted((shared_data / "eval_sample/mmlu/responses").glob("mmlu_*.csv"))
    assert len(b.sources) == len(files) == 6
    assert set(b.strong_quality) <= {0.0, 1.0}
    assert b.quality_unit == "accuracy"


def test_mt_bench_routes_on_first_turn_and_averages_both_turns(shared_data):
    b = load_benchmark("mt-bench", shared_data / "eval_sample")
    questions = [json.loads(line) for line in (shared_data / "eval_sample/mt_bench/question.jsonl").open()]
    judgements = [json.loads(line) for line in (shared_data / "eval_sample/mt_bench/judgements.jsonl").open()]
    q = questions[0]
    i = b.ids.index(str(q["question_id"]))
    assert b.prompts[i] == q["turns"][0]
    grades = [j["score"] for j in judgements if j["question_id"] == q["question_id"] and j["model"] == STRONG]
    assert len(grades) == 2
    assert b.strong_quality[i] == pytest.approx(np.mean(grades))


def test_listed_contaminated_prompts_are_dropped(shared_data, tmp_path):
    root = _layout(tmp_path, shared_data, "mt_bench", "gsm8k")
    questions = [json.loads(line) for line in (root / "mt_bench/question.jsonl").open()]
    # RouteLLM drops an MT Bench question when either of its turns is listed.
    (root / "mt_bench/contaminated_prompts.jsonl").write_text(
        json.dumps({"eval_prompt": questions[1]["turns"][1]}) + "\n")
    b = load_benchmark("mt-bench", root)
    assert len(b) == len(questions) - 1 and b.n_listed_contaminated == 1
    assert str(questions[1]["question_id"]) not in b.ids
    (root / "gsm8k/contaminated_prompts.jsonl").write_text('{"other": 1}\n')
    with pytest.raises(DataError, match=r"contaminated_prompts.jsonl, row 1: .*eval_prompt"):
        load_benchmark("gsm8k", root)


def test_missing_files_name_the_path(shared_data, tmp_path):
    with pytest.raises(DataError, match="mmlu/responses.*no mmlu_"):
        load_benchmark("mmlu", tmp_path)
    with pytest.raises(DataError, match=r"gsm8k_responses.csv: file not found"):
        load_benchmark("gsm8k", tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_benchmark("gsm8k", tmp_path / "nope")


def test_malformed_csv_names_file_and_row(shared_data, tmp_path):
    root = _layout(tmp_path, shared_data, "gsm8k")
    path = root / "gsm8k/gsm8k_responses.csv"
    lines = path.read_text().splitlines(keepends=True)
    import csv
    import io

    rows = list(csv.reader(io.StringIO("".join(lines))))
    rows[3][2] = "maybe"  # gpt-4 column of data row 3
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    path.write_text(buf.getvalue())
    with pytest.raises(DataError, match=r"gsm8k_responses.csv, row 3: column 'gpt-4-1106-preview' holds 'maybe'"):
        load_benchmark("gsm8k", root)
    path.write_text("prompt,gpt-4-1106-preview\nhello there friend,True\n")
    with pytest.raises(DataError, match=r"row 0: no column 'mistralai/Mixtral-8x7B-Instruct-v0.1'"):
        load_benchmark("gsm8k", root)


def test_malformed_jsonl_names_file_and_row(shared_data, tmp_path):
    root = _layout(tmp_path, shared_data, "mt_bench")
    path = root / "mt_bench/judgements.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:4]) + "{not json\n" + "".join(lines[4:]))
    with pytest.raises(DataError, match=r"judgements.jsonl, row 5: malformed JSON"):
        load_benchmark("mt-bench", root)
    path.write_text("".join(lines[:2]) + json.dumps({"question_id": 81, "model": STRONG}) + "\n")
    with pytest.raises(DataError, match=r"judgements.jsonl, row 3: record has no 'score'"):
        load_benchmark("mt-bench", root)


def test_golden_labels_pair_up_by_prompt():
    labels = [GoldenLabel("What is two plus two, exactly?", STRONG, 1.0, "t"),
              GoldenLabel("What is two plus two, exactly?", "mixtral-8x7b-chat", 0.0, "t"),
              GoldenLabel("Name the capital city of France.", STRONG, 1.0, "t"),  # weak missing: skipped
              GoldenLabel("Spell 'necessary' backwards, please.", STRONG, 0.0, "t"),
              GoldenLabel("Spell 'necessary' backwards, please.", WEAK, 1.0, "t")]
    b = from_golden_labels(labels, STRONG, WEAK)
    assert len(b) == 2
    assert b.strong_quality.tolist() == [1.0, 0.0] and b.weak_quality.tolist() == [0.0, 1.0]
    with pytest.raises(DataError, match="no prompt has golden labels"):
        from_golden_labels(labels, STRONG, "gpt-5")


def test_table6_saving_by_hand():
    # A router reaching 50% PGR with 25% strong calls needs half the strong calls random needs: 2x.
    assert saving(25.0, 50.0) == {"cpt": 25.0, "saving_ratio": 2.0, "strong_calls_saved_pct": 50.0}
    assert saving(None, 80.0)["saving_ratio"] is None
