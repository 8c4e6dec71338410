"""Importers on small hand-written files in each real format, and their DataErrors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routeray.data import (
    read_alpaca_eval,
    read_arena_55k_csv,
    read_arena_bench,
    read_mmlu_pro,
    read_mt_bench,
    read_routellm_eval_csv,
    read_routerbench_csv,
)
from routeray.errors import DataError

PROMPT = "Explain how a hash table handles collisions."


def _alpaca(tmp_path: Path, prefs: list[object]) -> Path:
    recs = [{"instruction": f"{PROMPT} ({i})", "dataset": "helpful_base", "generator_1": "gpt4_1106_preview",
             "generator_2": "Mixtral-8x7B-Instruct-v0.1", "annotator": "weighted_alpaca_eval_gpt4_turbo",
             "preference": p} for i, p in enumerate(prefs)]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(recs))
    return path


def test_alpaca_preferences_map_to_p_a(tmp_path: Path) -> None:
    data = read_alpaca_eval(_alpaca(tmp_path, [1, 2, 1.5, 1.25, None, 2.0]))
    assert [j.p_a for j in data.judgments] == [1.0, 0.0, 0.5, 0.75, 0.0]  # null skipped
    j = data.judgments[0]
    assert (j.model_a, j.model_b, j.source) == ("gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1",
                                                "alpaca_eval")


@pytest.mark.parametrize("bad", [3, 0.5, "A", True])
def test_alpaca_unknown_preference_names_file_and_row(tmp_path: Path, bad: object) -> None:
    path = _alpaca(tmp_path, [1, 2, bad])
    with pytest.raises(DataError, match=r"annotations\.json, row 2: unknown preference") as exc:
        read_alpaca_eval(path)
    assert exc.value.row == 2 and exc.value.path == path


def test_alpaca_missing_field_empty_and_malformed(tmp_path: Path) -> None:
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps([{"instruction": PROMPT, "generator_1": "a", "generator_2": "b"}]))
    with pytest.raises(DataError, match=r"row 0: missing field\(s\) \['preference'\]"):
        read_alpaca_eval(path)
    path.write_text("")
    with pytest.raises(DataError, match="file is empty"):
        read_alpaca_eval(path)
    path.write_text('[{"instruction": "x",')
    with pytest.raises(DataError, match="malformed JSON"):
        read_alpaca_eval(path)
    path.write_text("[]")
    with pytest.raises(DataError, match="no annotations"):
        read_alpaca_eval(path)


def _arena_bench(tmp_path: Path, grades: dict[str, list[object]]) -> Path:
    (tmp_path / "model_judgment").mkdir()
    qs = [{"question_id": f"q{i}", "category": "arena-bench-v1", "turns": [f"{PROMPT} #{i}", "follow-up"]}
          for i in range(3)]
    (tmp_path / "question.jsonl").write_text("\n".join(json.dumps(q) for q in qs) + "\n")
    for fname, scores in grades.items():
        lines = [json.dumps({"question_id": f"q{i}", "model": fname.split("+")[0], "score": s})
                 for i, s in enumerate(scores)]
        (tmp_path / "model_judgment" / f"{fname.split('+')[-1]}.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_arena_bench_grades_and_failures(tmp_path: Path) -> None:
    d = _arena_bench(tmp_path, {"gpt-4-1106-preview+gpt-4-turbo": [10, 1, None],
                                "mistralai/Mixtral-8x7B-Instruct-v0.1+mixtral": [-1, 5.5, 4]})
    data = read_arena_bench(d)
    got = {(g.model, g.prompt_id): g.score for g in data.golden}
    assert got == {("gpt-4-1106-preview", "arena_bench:q0"): 1.0, ("gpt-4-1106-preview", "arena_bench:q1"): 0.0,
                   ("mistralai/Mixtral-8x7B-Instruct-v0.1", "arena_bench:q1"): 0.5,
                   ("mistralai/Mixtral-8x7B-Instruct-v0.1", "arena_bench:q2"): pytest.approx(1 / 3)}
    assert all(g.prompt.startswith(PROMPT) and "follow-up" not in g.prompt for g in data.golden)


def test_arena_bench_bad_grade_and_malformed_line(tmp_path: Path) -> None:
    d = _arena_bench(tmp_path, {"m+m": [3, 11]})
    with pytest.raises(DataError, match=r"m\.jsonl, row 2: unknown score 11"):
        read_arena_bench(d)
    (d / "model_judgment" / "m.jsonl").write_text('{"question_id": "q0", "score": 3}\n{"question_id": \n')
    with pytest.raises(DataError, match=r"m\.jsonl, row 2: malformed JSON"):
        read_arena_bench(d)


ROUTERBENCH_HEADER = (",sample_id,prompt,eval_name,gpt-4-1106-preview,mistralai/mixtral-8x7b-chat,"
                      "gpt-4-1106-preview|total_cost,mistralai/mixtral-8x7b-chat|total_cost,"
                      "oracle_model_to_route_to\n")


def test_routerbench_list_literal_empty_cells_and_few_shot(tmp_path: Path) -> None:
    shot = "Which is a metal?\\nA) wood\\nB) iron\\nAnswer:\\nB"
    question = "Which gas do plants absorb?\\nA) oxygen\\nB) carbon dioxide\\nAnswer:"
    path = tmp_path / "arc_challenge_train.csv"
    path.write_text(ROUTERBENCH_HEADER
                    + f"0,arc.1,\"['{shot}\\n\\n{question}']\",arc,1.0,0.0,0.01,0.001,gpt-4\n"
                    + "1,arc.2,\"['Write a function to reverse a list.']\",arc,,1.0,0.01,0.001,mixtral\n")
    data = read_routerbench_csv(path)
    assert data.sources == ["routerbench/arc_challenge"]
    first = [g for g in data.golden if g.prompt_id == "arc_challenge_train:arc.1"]
    assert first[0].prompt == "Which gas do plants absorb?\nA) oxygen\nB) carbon dioxide\nAnswer:"
    assert {g.model: g.score for g in first} == {"gpt-4-1106-preview": 1.0,
                                                 "mistralai/Mixtral-8x7B-Instruct-v0.1": 0.0}
    second = [g for g in data.golden if g.prompt_id == "arc_challenge_train:arc.2"]
    assert [(g.model, g.score) for g in second] == [("mistralai/Mixtral-8x7B-Instruct-v0.1", 1.0)]


def test_routerbench_errors(tmp_path: Path) -> None:
    path = tmp_path / "mbpp_test.csv"
    path.write_text(ROUTERBENCH_HEADER + "0,m.1,\"['Write a function to add.']\",mbpp,1.0,maybe,0,0,x\n")
    with pytest.raises(DataError, match=r"row 1: unknown correctness 'maybe' in column"):
        read_routerbench_csv(path)
    path.write_text(ROUTERBENCH_HEADER + "0,m.1,\"['unterminated\",mbpp,1.0,0.0,0,0,x\n")
    with pytest.raises(DataError, match=r"row 1: `prompt` is not a valid list literal"):
        read_routerbench_csv(path)
    path.write_text("sample_id,gpt-4-1106-preview\nm.1,1\n")
    with pytest.raises(DataError, match=r"row 0: missing column\(s\) \['prompt'\]"):
        read_routerbench_csv(path)
    path.write_text(ROUTERBENCH_HEADER)
    with pytest.raises(DataError, match="header but no rows"):
        read_routerbench_csv(path)


def test_mmlu_pro_prompt_format_and_null_pred(tmp_path: Path) -> None:
    path = tmp_path / "gpt-4o-2024-05-13.jsonl"
    recs = [{"question_id": 1, "question": "What is 2 + 2 in base ten?", "options": ["3", "4", "5"],
             "answer": "B", "category": "math", "src": "theoremQA", "pred": p, "model": "gpt-4o-2024-05-13"}
            for p in ("B", "A", None)]
    path.write_text("\n".join(json.dumps(r) for r in recs))
    data = read_mmlu_pro(path)
    assert [g.score for g in data.golden] == [1.0, 0.0, 0.0]
    assert data.golden[0].prompt == "What is 2 + 2 in base ten?\nA. 3\nB. 4\nC. 5\nAnswer:"
    assert data.sources == ["mmlu_pro/math"] and data.models == ["gpt-4o-2024-05-13"]
    recs[1]["answer"] = "Z"
    path.write_text("\n".join(json.dumps(r) for r in recs))
    with pytest.raises(DataError, match=r"row 2: unknown answer 'Z'"):
        read_mmlu_pro(path)


ARENA_COLS = "id,model_a,model_b,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie\n"


def _arena_csv(tmp_path: Path, rows: list[tuple[str, ...]]) -> Path:
    import csv

    path = tmp_path / "train.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(ARENA_COLS.strip().split(","))
        w.writerows(rows)
    return path


def test_arena_55k_real_format(tmp_path: Path) -> None:
    first, last = "What is the capital of Australia?", "And what about New Zealand's capital?"
    rows = [
        ("30192", "gpt-4-1106-preview", "gpt-4-0613", json.dumps([first, last]),
         json.dumps(["Canberra.", "Wellington."]), json.dumps(["Sydney", "Auckland"]), "1", "0", "0"),
        ("53567", "mixtral-8x7b-instruct-v0.1", "gpt-4-1106-preview", json.dumps([first]),
         '["a"]', '["b"]', "0", "1", "0"),
        ("65089", "claude-2.0", "llama-2-70b-chat", json.dumps([first, None]), '["a"]', '["b"]', "0", "0", "1"),
    ]
    data = read_arena_55k_csv(_arena_csv(tmp_path, rows))
    assert [(j.model_a, j.model_b, j.p_a) for j in data.judgments] == [
        ("gpt-4-1106-preview", "gpt-4-0613", 1.0),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview", 0.0),
        ("claude-2.0", "llama-2-70b-chat", 0.5),
    ]
    assert [j.prompt for j in data.judgments] == [last, first, first]
    assert read_arena_55k_csv(tmp_path / "train.csv", turn="first").judgments[0].prompt == first
    assert data.judgments[0].source == "arena_55k" and data.judgments[0].prompt_id == "arena_55k:30192"


def test_arena_55k_lone_surrogate_is_replaced(tmp_path: Path) -> None:
    prompt = '["Tell me a joke about cats \\ud83d please"]'  # a lone surrogate escape, as in scraped chats
    data = read_arena_55k_csv(_arena_csv(tmp_path, [("1", "a", "b", prompt, "", "", "1", "0", "0")]))
    assert data.judgments[0].prompt == "Tell me a joke about cats \ufffd please"
    data.judgments[0].prompt.encode("utf-8")


def test_arena_55k_errors(tmp_path: Path) -> None:
    ok = json.dumps(["What is the capital of Australia?"])
    path = _arena_csv(tmp_path, [("1", "a", "b", ok, "", "", "1", "1", "0")])
    with pytest.raises(DataError, match=r"train\.csv, row 1: exactly one of"):
        read_arena_55k_csv(path)
    path = _arena_csv(tmp_path, [("1", "a", "b", ok, "", "", "1", "0", "0"),
                                 ("2", "a", "b", "[\"broken", "", "", "1", "0", "0")])
    with pytest.raises(DataError, match=r"row 2: `prompt` is not valid JSON"):
        read_arena_55k_csv(path)
    path = _arena_csv(tmp_path, [("1", "a", "b", ok, "", "", "yes", "0", "0")])
    with pytest.raises(DataError, match=r"row 1: unknown label 'yes' in column 'winner_model_a'"):
        read_arena_55k_csv(path)
    path.write_text("id,model_a,model_b,prompt\n1,a,b,[]\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['winner_model_a'"):
        read_arena_55k_csv(path)


def test_routellm_eval_csv_and_mt_bench_on_shared_sample(shared_data: Path) -> None:
    data = read_routellm_eval_csv(shared_data / "eval_sample/gsm8k/gsm8k_responses.csv")
    assert data.models == ["gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"]
    assert len(data.golden) == 300 and {g.score for g in data.golden} == {0.0, 1.0}
    mt = read_mt_bench(shared_data / "eval_sample/mt_bench")
    assert len(mt.golden) == 16 and all(0.0 <= g.score <= 1.0 for g in mt.golden)


def test_routellm_eval_csv_unknown_label(tmp_path: Path) -> None:
    path = tmp_path / "mmlu_x.csv"
    path.write_text(f"prompt,gpt-4-1106-preview\n{PROMPT},True\n{PROMPT}?,perhaps\n")
    with pytest.raises(DataError, match=r"mmlu_x\.csv, row 2: unknown label 'perhaps'"):
        read_routellm_eval_csv(path)
