"""Decontamination with real MiniLM embeddings: prompts (near-)copied from a router's training data are
dropped from every router's evaluation and counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from routeray.evaluate.benchmarks import load_benchmark
from routeray.evaluate.contamination import max_cosine
from routeray.evaluate.runner import evaluate_benchmark
from routeray.routers.base import Router


class TrainedOnSome(Router):
    """A router whose 'training data' contains two MT Bench prompts, one verbatim, one re-cased."""

    name: ClassVar[str] = "trained_on_some"

    def __init__(self, train_prompts: list[str]):
        from routeray.encoders.registry import make_embedder

        self.embedder = make_embedder()
        self._train = self.embedder.embed(train_prompts)

    @classmethod
    def load(cls, artifact_dir: Path | None = None, **overrides: Any) -> Router:
        raise NotImplementedError

    def score(self, prompts):
        return np.array([min(len(p) / 1000, 1.0) for p in prompts])

    def training_embeddings(self) -> np.ndarray:
        return self._train


def test_max_cosine():
    q = np.array([[1.0, 0.0], [0.0, 2.0]])
    k = np.array([[1.0, 1.0], [0.0, -1.0]])
    assert max_cosine(q, k) == pytest.approx([np.sqrt(0.5), np.sqrt(0.5)])


def test_contaminated_prompts_are_dropped_and_counted(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTERAY_CACHE_DIR", str(tmp_path / "cache"))
    bench = load_benchmark("mt-bench", shared_data / "eval_sample")
    copied = [bench.prompts[0], bench.prompts[3].upper()]
    unrelated = ["How do I bake sourdough bread with a stiff starter?",
                 "List three prime numbers larger than one hundred."]
    router = TrainedOnSome(copied + unrelated)
    res = evaluate_benchmark(bench, {"trained_on_some": router}, output=tmp_path, num_random_seeds=20,
                             progress=False)
    by_router = res["contamination"]["by_router"]["trained_on_some"]
    assert by_router["n_contaminated"] == 2
    assert res["n_contaminated"] == 2 and res["n_prompts"] == len(bench) - 2
    assert 0 < by_router["similarity"] < 1
    listed = [json.loads(line) for line in (tmp_path / "mt-bench_contaminated_prompts.jsonl").open()]
    assert {row["eval_prompt"] for row in listed} == {bench.prompts[0], bench.prompts[3]}
    # Random has no training data: it says nothing, and is judged on the same 6 prompts.
    assert res["contamination"]["unknown_for"] == []
    assert res["routers"]["random"]["curve"][0]["score"] == pytest.approx(res["weak_score"])
    assert res["weak_score"] == pytest.approx(np.delete(bench.weak_quality, [0, 3]).mean())


def test_given_training_prompts_decontaminate_routers_that_do_not_say(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTERAY_CACHE_DIR", str(tmp_path / "cache"))
    bench = load_benchmark("gsm8k", shared_data / "eval_sample")
    train = [bench.prompts[5], bench.prompts[7], "Write a haiku about the sea in autumn, please."]
    res = evaluate_benchmark(bench, {}, num_random_seeds=10, train_prompts=train, progress=False)
    assert res["n_contaminated"] == 2 and res["n_prompts"] == len(bench) - 2
    assert res["contamination"]["given_training_prompts"] == 3
    assert 0 < res["contamination"]["by_router"]["given training prompts"]["similarity"] < 1
