"""The zero-training baselines: ``length`` (no artifact) and ``knn`` (an index of labelled prompts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routeray.artifacts import Artifact, save_artifact
from routeray.encoders.base import Embedder
from routeray.errors import ArtifactError, RouterayError
from routeray.routers.knn import KNNRouter, knn_mean, pair_gaps
from routeray.routers.length import LengthRouter, count_tokens
from routeray.routers.registry import load_router


def test_length_rises_with_tokens_and_is_in_unit_interval() -> None:
    r = load_router("length")
    prompts = ["hi there friend", "Explain " + "very " * 50 + "carefully.", "word " * 5000]
    s = r.score(prompts)
    assert np.all(np.diff(s) > 0) and s[0] > 0 and s[-1] < 1
    assert r.score(["x " * 100])[0] == pytest.approx(0.5)  # half_tokens = 100
    assert count_tokens("Hello, world!") == 4
    assert load_router("length", half_tokens=10).score(["a b c d e f g h i j"])[0] == pytest.approx(0.5)
    with pytest.raises(RouterayError, match="half_tokens must be positive"):
        LengthRouter(half_tokens=0)


class _TableEmbedder(Embedder):
    """Embeds the test's prompts as fixed unit vectors (a fault-free stand-in for MiniLM in a unit test)."""

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table

    @property
    def spec(self) -> dict:
        return {"kind": "table"}

    def embed(self, texts):  # type: ignore[override]
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


def _unit(*v: float) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_pair_gaps_uses_stand_ins_and_skips_unlabelled_rows() -> None:
    nan = np.nan
    labels = np.array([[1, nan, 0], [nan, 1, 1], [nan, nan, 0]], dtype=np.float32)  # strong, stand-in, weak
    rows, gaps = pair_gaps(labels, ["s", "s2", "w"], ["s", "s2"], ["w"])
    assert rows.tolist() == [0, 1] and gaps.tolist() == [1.0, 0.0]


def test_knn_mean_picks_the_nearest() -> None:
    index = np.stack([_unit(1, 0), _unit(0.9, 0.1), _unit(0, 1)])
    vals = np.array([1.0, 0.5, -1.0])
    assert knn_mean(np.stack([_unit(1, 0.05)]), index, vals, 2)[0] == pytest.approx(0.75)
    assert knn_mean(np.stack([_unit(0, 1)]), index, vals, 1)[0] == pytest.approx(-1.0)
    assert knn_mean(np.stack([_unit(0, 1)]), index, vals, 99)[0] == pytest.approx(np.mean(vals))


def test_knn_router_scores_the_configured_pair(tmp_path: Path) -> None:
    nan = np.nan
    emb = np.stack([_unit(1, 0), _unit(0.95, 0.05), _unit(0, 1), _unit(0.05, 0.95)])
    labels = np.array([[1, 0, 1], [1, 0, nan], [0, 1, nan], [nan, 1, 1]], dtype=np.float16)  # gpt, mix, other
    art = Artifact(router="knn", config={"models": ["gpt", "mix", "other"], "strong_model": "gpt",
                                         "weak_model": "mix", "k": 1, "stand_ins": {}},
                   tensors={"prompt_emb_q8": np.rint(emb * 127).astype(np.int8), "labels": labels})
    save_artifact(art, tmp_path)
    table = {"maths": _unit(1, 0.01), "chat": _unit(0.01, 1)}
    r = KNNRouter.load(tmp_path, embedder=_TableEmbedder(table))
    assert r.score(["maths", "chat"]).tolist() == pytest.approx([1.0, 0.0])
    # Another pair, where only rows 0 and 3 label both: "chat" now sits next to row 3 (other = mix).
    r2 = KNNRouter.load(tmp_path, embedder=_TableEmbedder(table), strong_model="other", weak_model="mix")
    assert r2.score(["maths", "chat"]).tolist() == pytest.approx([1.0, 0.5])
    assert r.training_embeddings().shape == (4, 2)
    bad = Artifact(router="knn", config=dict(art.config, models=["gpt", "mix"]), tensors=art.tensors)
    save_artifact(bad, tmp_path / "bad")
    with pytest.raises(ArtifactError, match="do not match"):
        KNNRouter.load(tmp_path / "bad", embedder=_TableEmbedder(table))


def test_default_knn_artifact_loads_and_ranks_a_hard_prompt_above_chit_chat() -> None:
    r = load_router("knn")
    assert r.k >= 10 and r.training_embeddings().shape[1] == 384
    s = r.score(["Hi! How are you today?",
                 "A 2.0 kg block slides down a 30 degree incline with friction coefficient 0.25. Find its "
                 "acceleration and the work done by friction over 3.0 m.\nA. 1.2\nB. 2.8\nC. 3.9\nD. 4.4\nAnswer:"])
    assert 0 <= s.min() and s.max() <= 1 and s[1] > s[0]


def test_the_length_rule_routes_in_the_gateway_core() -> None:
    """``router-length-0.5`` through the SDK (the gateway's RoutingService) against loopback OpenAI servers:
    prompts under 100 tokens go weak, longer ones strong."""
    from routeray.sdk import Router
    from tests.integration.fake_openai import FakeOpenAI

    strong, weak = FakeOpenAI("big").start(), FakeOpenAI("small").start()
    try:
        with Router(strong={"name": "big", "base_url": strong.base_url},
                    weak={"name": "small", "base_url": weak.base_url}, routers=["length"]) as client:
            for prompt, model in (("What is 2+2?", "small"), ("Explain " + "this step " * 80, "big")):
                out = client.chat.completions.create(model="router-length-0.5",
                                                     messages=[{"role": "user", "content": prompt}])
                assert out.model == model
    finally:
        strong.stop()
        weak.stop()
