"""One evaluation embeds each benchmark prompt once: the embedding that scores a router (mf, sw_ranking)
is the one decontamination compares with its training prompts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from routeray.evaluate.benchmarks import Benchmark
from routeray.evaluate.cache import ScoreCache
from routeray.evaluate.runner import evaluate_benchmark
from routeray.routers.mf import MFRouter
from tests.unit.routers.test_mf import HashEmbedder, make_artifact


class CountingEmbedder(HashEmbedder):
    """HashEmbedder that counts the texts it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded += len(texts)
        return super().embed(texts)


def _bench(n: int) -> Benchmark:
    rng = np.random.default_rng(0)
    prompts = [f"benchmark question number {i}: what is {i} squared?" for i in range(n)]
    return Benchmark("toy", "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1", prompts,
                     rng.random(n).round(), rng.random(n).round(), "accuracy")


@pytest.mark.parametrize("cached", [False, True])
def test_each_prompt_is_embedded_once_for_scoring_and_decontamination(tmp_path, monkeypatch, cached: bool) -> None:
    monkeypatch.setenv("ROUTERAY_CACHE_DIR", str(tmp_path / "cache"))
    embedder = CountingEmbedder()
    router = MFRouter.load(make_artifact(tmp_path / "mf"), embedder=embedder)
    bench = _bench(40)
    assert router.training_embeddings() is not None  # so decontamination needs the prompts' embeddings
    res = evaluate_benchmark(bench, {"mf": router}, num_random_seeds=5, progress=False,
                             cache=ScoreCache(tmp_path / "scores") if cached else None)
    assert embedder.embedded == len(bench.prompts)
    assert res["contamination"]["by_router"]["mf"]["n_contaminated"] == 0
    direct = router.score(bench.prompts)  # the scores are those the router gives on its own
    np.testing.assert_allclose(res["routers"]["mf"]["apgr"], evaluate_benchmark(
        bench, {"mf": _Fixed(direct)}, num_random_seeds=5, progress=False, decontaminate=False)["routers"]["mf"]["apgr"])


class _Fixed:
    """A router that returns given scores (no embedder, no training data)."""

    name = "fixed"
    fingerprint = "fixed"

    def __init__(self, scores: np.ndarray):
        self._scores = scores

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        return self._scores[: len(prompts)]  # one batch: the benchmark is smaller than a scoring batch
