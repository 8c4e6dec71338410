"""`routeray train` end to end on a tiny real data folder (the shared layout, two source files)."""

from __future__ import annotations

import json

import pytest

from routeray.cli import main
from routeray.errors import RouterayError
from routeray.train.cli import get_trainer, subsample_prompts
from routeray.train.common import build_table, load_config


@pytest.fixture(scope="module")
def tiny_data_dir(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for rel in ("golden/routerbench/arc_challenge_test.csv", "golden/mmlu_pro/gpt-4o-2024-05-13.jsonl",
                "golden/mmlu_pro/Mixtral-8x7B-Instruct-v0.1.jsonl"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(shared_data / rel)
    return root


@pytest.mark.parametrize("router", ["mf", "sw_ranking"])
def test_train_command_writes_a_loadable_artifact(router, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / router
    sets = ["--set", "grid={}", "--set", "min_holdout_prompts=20"]
    if router == "mf":
        sets += ["--set", "steps=40", "--set", "dim=16"]
    code = main(["train", router, "--data", str(tiny_data_dir), "--out", str(out), "--max-prompts", "240",
                 "--seed", "1", *sets])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"router {router}:" in printed and "val mean APGR" in printed and "random" in printed
    meta = json.loads((out / "config.json").read_text())
    assert meta["router"] == router and meta["embedder"]["model"] == "all-MiniLM-L6-v2"
    assert meta["report"]["n_train_prompts"] <= 240 and meta["report"]["n_val_prompts"] > 0
    assert meta["data_fingerprint"]
    from routeray import load_router

    s = load_router(router, out).score(["Which planet is known as the red planet? A) Mars B) Venus"])
    assert 0 <= s[0] <= 1


def test_bad_arguments_fail_clearly(tiny_data_dir, tmp_path, capsys):
    assert main(["train", "mf", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "mf", "--data", str(tiny_data_dir), "--out", str(tmp_path / "o"),
                 "--set", "no_such_knob=1", "--max-prompts", "50"]) == 2
    assert "no_such_knob" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # argparse: `routeray train` offers only trainable routers
        main(["train", "random", "--data", str(tiny_data_dir), "--out", str(tmp_path / "o")])
    assert refused.value.code == 2
    assert "invalid choice: 'random' (choose from 'bert', 'causal_llm', 'knn', 'mf', 'sw_ranking')" in capsys.readouterr().err
    with pytest.raises(RouterayError):
        get_trainer("nope")


def test_config_file_and_sets(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dim: 64\nsource_weights: {routerbench: 2.0}\n")
    assert load_config(cfg, ["dim=32", "balance=equal", "grid={}"]) == {
        "dim": 32, "source_weights": {"routerbench": 2.0}, "balance": "equal", "grid": {}}
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(RouterayError, match="mapping"):
        load_config(bad)
    with pytest.raises(RouterayError, match="KEY=VALUE"):
        load_config(None, ["novalue"])


def test_subsample_keeps_whole_prompts_and_source_balance_weights(tiny_data_dir):
    from routeray.data import load_data_dir
    from routeray.train.common import all_judgments

    data = load_data_dir(tiny_data_dir)
    sub = subsample_prompts(data, 100, seed=0)
    assert len(sub.prompts) == 100
    assert subsample_prompts(sub, 100, seed=1).prompts == sub.prompts
    kept = set(sub.prompts)
    assert sum(g.prompt in kept for g in data.golden) == len(sub.golden)
    table = build_table(all_judgments(sub), balance="prompt")
    for group in set(table.group):
        mask = table.group == group
        # each source group weighs as much as it has prompts
        assert table.weight[mask].sum() == pytest.approx(len(set(table.prompt_idx[mask])), rel=1e-4)
    doubled = build_table(all_judgments(sub), balance="prompt", source_weights={"mmlu_pro": 2.0})
    m = doubled.group == "mmlu_pro"
    assert doubled.weight[m].sum() == pytest.approx(2 * table.weight[m].sum(), rel=1e-4)
