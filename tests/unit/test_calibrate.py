"""Calibration: reading prompt files, the threshold for a strong share, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routeray.calibrate import calibrate_threshold, read_prompts, threshold_for_fraction
from routeray.cli import main
from routeray.errors import DataError, RouterayError
from routeray.routers.random import RandomRouter


def test_reads_jsonl_in_every_shape(tmp_path):
    path = tmp_path / "p.jsonl"
    lines = [
        {"prompt": "first prompt here"},
        {"turns": ["an earlier user turn", "the last user turn"]},
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"},
                      {"role": "assistant", "content": "hi"}, {"role": "user", "content": "final question"}]},
        {"id": 7, "question": "the first string field"},
        "a bare JSON string",
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert read_prompts(path) == ["first prompt here", "the last user turn", "final question",
                                  "the first string field", "a bare JSON string"]


def test_reads_csv_and_text(tmp_path):
    csv_path = tmp_path / "p.csv"
    csv_path.write_text('id,prompt\n1,"one, with a comma"\n2,"two\nlines"\n3,\n')
    assert read_prompts(csv_path) == ["one, with a comma", "two\nlines"]
    txt = tmp_path / "p.txt"
    txt.write_text("alpha\n\n  \nbeta\n")
    assert read_prompts(txt) == ["alpha", "beta"]


@pytest.mark.parametrize(("name", "content", "match"), [
    ("bad.jsonl", '{"prompt": "ok"}\n{not json}\n', r"bad\.jsonl, row 2: invalid JSON"),
    ("nofield.jsonl", '{"n": 1}\n', r"nofield\.jsonl, row 1: .*no `prompt`"),
    ("nouser.jsonl", '{"messages": [{"role": "system", "content": "x"}]}\n', r"row 1: .*no user message"),
    ("cols.csv", "id,text\n1,hello\n", r"cols\.csv, row 1: CSV has no `prompt` column"),
    ("empty.txt", "\n\n", r"empty\.txt: no prompts found"),
])
def test_bad_files_name_file_and_row(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=match):
        read_prompts(path)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_prompts(tmp_path / "nope.txt")
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="UTF-8"):
        read_prompts(binary)


def test_threshold_hits_the_fraction():
    scores = np.linspace(0.0, 1.0, 101)[::-1] * 0.5 + 0.2  # distinct scores
    for f in (0.0, 0.1, 0.25, 0.5, 0.9, 1.0):
        t = threshold_for_fraction(scores, f)
        assert (scores >= t).sum() == round(f * scores.size)
    assert threshold_for_fraction([0.3, 0.3, 0.3], 0.0) > 0.3
    with pytest.raises(RouterayError):
        threshold_for_fraction(scores, 1.5)
    with pytest.raises(RouterayError):
        threshold_for_fraction([], 0.5)


def test_calibrate_threshold_with_a_real_router():
    router = RandomRouter(seed=3)
    prompts = [f"prompt number {i} about something" for i in range(200)]
    t = calibrate_threshold(router, prompts, 0.3)
    assert (router.score(prompts) >= t).sum() == 60
    with pytest.raises(RouterayError):
        calibrate_threshold(router, [], 0.3)


def test_cli_prints_threshold_and_count(tmp_path, capsys):
    path = tmp_path / "prompts.txt"
    prompts = [f"user question {i}: explain topic {i * 7}" for i in range(50)]
    path.write_text("\n".join(prompts))
    assert main(["calibrate", "--router", "random", "--strong-fraction", "0.2", "--prompts", str(path)]) == 0
    out = capsys.readouterr().out
    threshold = float(out.split("strong calls: ")[1].split()[0])
    assert (RandomRouter(seed=0).score(prompts) >= threshold).sum() == 10
    assert "10 of 50 prompts" in out and f"router-random-{threshold!r}" in out


def test_cli_errors_are_clear(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    assert main(["calibrate", "--router", "random", "--strong-fraction", "0.2", "--prompts", str(bad)]) == 2
    assert "bad.jsonl, row 1" in capsys.readouterr().err
    good = tmp_path / "g.txt"
    good.write_text("some prompt text\n")
    assert main(["calibrate", "--router", "random", "--strong-fraction", "2", "--prompts", str(good)]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
