"""Calibration: reading prompt files, the threshold for a strong share, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

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
    ("bad.jsonl", '{"prompt": "ok"}\n{not json}\n', r"bad\.jsonl, row 2: malformed JSON"),
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


def test_pool_thresholds_for_a_spend_and_for_a_share(shared_data, tmp_path, capsys):
    from routeray.evaluate.pool_data import load_pool
    from routeray.routers.pool import call_costs, choose, pool_score, threshold_for_spend
    from tests.unit.evaluate.test_pool import AnswerKeyRouter

    pool = ["mistralai/mistral-7b-chat", "zero-one-ai/Yi-34B-Chat", "gpt-4-1106-preview"]
    bench = load_pool([shared_data / "golden" / "routerbench" / "mbpp_test.csv"], models=pool)
    AnswerKeyRouter.key = {p: dict(zip(bench.models, row.tolist(), strict=True))
                           for p, row in zip(bench.prompts, bench.quality, strict=True)}
    AnswerKeyRouter.sign = 1.0
    prices = {"mistralai/mistral-7b-chat": (0.2, 0.2), "zero-one-ai/Yi-34B-Chat": (0.8, 0.8),
              "gpt-4-1106-preview": (10.0, 30.0)}
    costs = call_costs([len(p) for p in bench.prompts], [prices[m] for m in bench.models], 256)
    q = AnswerKeyRouter().model_quality(bench.prompts, bench.models)
    all_cheapest, all_best = 1000 * costs.min(axis=1).mean(), 1000 * costs.max(axis=1).mean()
    target = all_cheapest + 0.3 * (all_best - all_cheapest)
    t, spent = threshold_for_spend(q, costs, target)
    assert spent <= target and 0 < t < 1
    rows, price = np.arange(len(q)), costs.mean(axis=0)
    assert 1000 * costs[rows, choose(q, price, t - 1e-6)].mean() > target  # a hair lower spends too much
    assert threshold_for_spend(q, costs, 0.0) == (1.0, pytest.approx(1000 * costs[rows, choose(q, price, 1.0)].mean()))

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in bench.prompts))
    price_file = tmp_path / "prices.json"
    price_file.write_text(json.dumps({m: list(v) for m, v in prices.items()}))
    args = ["calibrate", "--router", "test_answer_key", "--prompts", str(prompts), "--models", *pool]
    assert main([*args, "--prices", str(price_file), "--spend-per-1k", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"{t!r}" in out and "use model name router-test_answer_key-" in out
    assert main([*args, "--strong-fraction", "0.25"]) == 0  # share of calls past the cheapest model
    t25 = float(capsys.readouterr().out.split(": ")[1].split()[0])
    s = pool_score(q, np.arange(3.0))  # 0/1 labels tie a lot: at least 25 %, fewer a hair higher
    assert (s >= t25).mean() >= 0.25 > (s >= np.nextafter(t25, 2)).mean()
    assert main([*args, "--spend-per-1k", "1"]) == 2
    assert "--spend-per-1k needs --prices" in capsys.readouterr().err


def test_calibrate_a_gateway_configs_pool_for_a_spend(tmp_path, capsys):
    from tests.unit.gateway.test_pool import PROMPTS, pool_args

    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(yaml.safe_dump({"pool": pool_args(), "routers": [{"router": "mf"}]}))
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS * 4) + "\n")
    args = ["calibrate", "--router", "mf", "--prompts", str(prompts), "--config", str(cfg)]
    assert main([*args, "--spend-per-1k", "1.0"]) == 0
    out = capsys.readouterr().out
    assert "at US$ 1 per 1,000 prompts" in out and "on 20 prompts: m" in out
    assert float(out.split("spends US$ ")[1].split()[0]) <= 1.0
    assert main([*args, "--strong-fraction", "0.5"]) == 0
    assert "of calls past the cheapest model" in capsys.readouterr().out
    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump({"routers": [{"router": "mf"}]}))
    assert main(["calibrate", "--router", "mf", "--prompts", str(prompts), "--config", str(two),
                 "--spend-per-1k", "1"]) == 2
    assert "no pool to calibrate" in capsys.readouterr().err


def test_a_guarded_calibration_routes_the_share_asked_through_the_guarded_router(shared_data, tmp_path, capsys):
    from routeray.routers.guard import GuardedRouter
    from routeray.routers.registry import load_router

    # 60 real Chatbot Arena prompts (median about 30 words: most have heads for the guard to score)
    lines = (shared_data / "preference" / "arena_bench_v1" / "question.jsonl").read_text().splitlines()[:60]
    path = tmp_path / "arena.jsonl"
    path.write_text("\n".join(lines) + "\n")
    prompts = read_prompts(path)
    args = ["calibrate", "--router", "mf", "--strong-fraction", "0.3", "--prompts", str(path)]

    def threshold(*extra: str) -> tuple[float, str]:
        assert main([*args, *extra]) == 0
        out = capsys.readouterr().out
        return float(out.split("strong calls: ")[1].split()[0]), out

    guarded_t, out = threshold("--guard", "heads")
    assert "with the rerouting guard heads(min_words=16,max_views=8)" in out and "18 of 60 prompts" in out
    plain_t, out = threshold()  # the router's own default: unguarded
    assert "rerouting guard" not in out
    guarded = load_router("mf", guard="heads")
    assert isinstance(guarded, GuardedRouter)
    scores = guarded.score(prompts)
    assert (scores >= guarded_t).sum() == 18  # the share asked for, scored as the gateway scores with the guard
    assert guarded_t < plain_t and (scores >= plain_t).sum() < 18  # the unguarded threshold sends fewer


@pytest.mark.parametrize(("guard", "message"), [
    ("sideways", "unknown guard mode 'sideways'"),
    ('{"mode": "heads", "min_words": "many"}', "whole numbers"),
    ('{"mode": "heads", "depth": 3}', "unknown guard option(s) ['depth']"),
    ("{oops", "not valid JSON"),
    ('["heads"]', "must be a JSON object or mode name"),
])
def test_a_bad_guard_is_a_clear_error(tmp_path, capsys, guard, message):
    path = tmp_path / "p.txt"
    path.write_text("one prompt\n")
    for off in ("off", '{"mode": "off"}'):  # the random router's default guard: off
        assert main(["calibrate", "--router", "random", "--strong-fraction", "0.5", "--prompts", str(path),
                     "--guard", off]) == 0
        assert "rerouting guard" not in capsys.readouterr().out
    assert main(["calibrate", "--router", "random", "--strong-fraction", "0.5", "--prompts", str(path),
                 "--guard", guard]) == 2
    assert message in capsys.readouterr().err
    assert main(["calibrate", "--router", "mf", "--strong-fraction", "0.5", "--prompts", str(path),
                 "--models", "a", "b", "--guard", "heads"]) == 2
    assert "--guard applies to two-tier scores only" in capsys.readouterr().err
