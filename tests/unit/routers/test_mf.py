"""The mf router's scoring, model resolution and artifact checks, on hand-built artifacts."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from routeray.artifacts import Artifact, save_artifact
from routeray.encoders.base import Embedder
from routeray.errors import ArtifactError
from routeray.routers.mf import MF_FORMAT, MFRouter, ModelResolver, mf_linear, quantise_unit_rows

D, K = 8, 4
MODELS = ["gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1", "llama-2-70b-chat"]


class HashEmbedder(Embedder):
    """Deterministic unit vectors from a hash of the text: no model needed."""

    def __init__(self, model: str = "hash", dim: int = D):
        self._spec = {"kind": "local", "model": model, "dim": dim}

    @property
    def spec(self):
        return self._spec

    def embed(self, texts):
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).normal(size=self._spec["dim"]))
        x = np.asarray(rows, dtype=np.float32).reshape(len(texts), self._spec["dim"])
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_artifact(out, route_on="score", **config_overrides):
    """A random mf artifact over MODELS (``route_on`` picks the routing rule)."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(len(MODELS), K)).astype(np.float32)
    tensors = {
        "model_emb": v / np.linalg.norm(v, axis=1, keepdims=True),
        "proj_weight": rng.normal(size=(D, K)).astype(np.float32),
        "proj_bias": rng.normal(size=K).astype(np.float32),
        "classifier": rng.normal(size=K).astype(np.float32),
        "model_bias": rng.normal(size=len(MODELS)).astype(np.float32),
        "train_prompt_emb_q8": quantise_unit_rows(HashEmbedder().embed(["a training prompt", "another one"])),
    }
    config = {"models": MODELS, "strong_model": MODELS[0], "weak_model": MODELS[1],
              "model_aliases": {"my-big-model": "llama-2-70b-chat"}, "mf_format": MF_FORMAT, "route_on": route_on,
              **config_overrides}
    save_artifact(Artifact("mf", config, tensors, embedder=HashEmbedder().spec), out)
    return out


@pytest.fixture()
def artifact_dir(tmp_path):
    return make_artifact(tmp_path / "mf")


def mf_score(tensors, m, e):
    """The paper's s(m, q), written out plainly."""
    return tensors["classifier"] @ (tensors["model_emb"][m] * (tensors["proj_weight"].T @ e + tensors["proj_bias"]))


def reference_score(tensors, strong, weak, e):
    """route_on=score: the paper's σ(s(strong, q) − s(weak, q))."""
    return 1 / (1 + np.exp(-(mf_score(tensors, strong, e) - mf_score(tensors, weak, e))))


def correctness_score(tensors, strong, weak, e):
    """route_on=correctness: (1 + p_s − p_w) / 2 with p_m = σ(s(m, q) + b_m)."""
    def p(m):
        return 1 / (1 + np.exp(-(mf_score(tensors, m, e) + tensors["model_bias"][m])))
    return (1 + p(strong) - p(weak)) / 2


def test_score_matches_formula_and_contract(artifact_dir):
    router = MFRouter.load(artifact_dir, embedder=HashEmbedder())
    prompts = ["Explain quantum tunnelling to a child.", "Write a haiku about routers.", "Sum 2+2 and explain."]
    scores = router.score(prompts)
    assert scores.dtype == np.float64 and scores.shape == (3,)
    assert ((scores > 0) & (scores < 1)).all()
    emb = HashEmbedder().embed(prompts)
    expected = [reference_score(router.artifact.tensors, 0, 1, e.astype(np.float64)) for e in emb]
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    # one prompt alone scores as in a batch; an empty batch is an empty array
    np.testing.assert_allclose(router.score(prompts[1:2]), scores[1:2])
    assert router.score([]).shape == (0,)


def test_correctness_rule_matches_formula(tmp_path):
    router = MFRouter.load(make_artifact(tmp_path / "c", route_on="correctness"), embedder=HashEmbedder())
    prompts = ["Explain quantum tunnelling to a child.", "Write a haiku about routers.", "Sum 2+2 and explain."]
    emb = HashEmbedder().embed(prompts).astype(np.float64)
    expected = [correctness_score(router.artifact.tensors, 0, 1, e) for e in emb]
    np.testing.assert_allclose(router.score(prompts), expected, rtol=1e-6)
    # the rule is not a monotone function of the score rule's logit: the per-model biases and the two
    # sigmoids change the order
    plain = MFRouter.load(make_artifact(tmp_path / "s"), embedder=HashEmbedder())
    many = [f"prompt number {i}" for i in range(50)]
    assert not np.array_equal(np.argsort(router.score(many)), np.argsort(plain.score(many)))


@pytest.mark.parametrize("route_on", ["score", "correctness"])
def test_swapping_the_pair_mirrors_the_score(tmp_path, route_on):
    artifact_dir = make_artifact(tmp_path / route_on, route_on=route_on)
    a = MFRouter.load(artifact_dir, embedder=HashEmbedder())
    b = MFRouter.load(artifact_dir, embedder=HashEmbedder(), strong_model=MODELS[1], weak_model=MODELS[0])
    prompts = ["Prove Fermat's little theorem, please."]
    np.testing.assert_allclose(a.score(prompts) + b.score(prompts), 1.0)


def test_old_format_and_bad_rule_are_refused(tmp_path):
    with pytest.raises(ArtifactError, match="retrain"):
        MFRouter.load(make_artifact(tmp_path / "old", mf_format=None), embedder=HashEmbedder())
    with pytest.raises(ArtifactError, match="route_on"):
        MFRouter.load(make_artifact(tmp_path / "rule", route_on="vibes"), embedder=HashEmbedder())


def test_unseen_models_map_by_alias_canonical_name_or_fallback(artifact_dir, caplog):
    by_alias = MFRouter.load(artifact_dir, embedder=HashEmbedder(), strong_model="my-big-model")
    direct = MFRouter.load(artifact_dir, embedder=HashEmbedder(), strong_model="llama-2-70b-chat")
    p = ["Plan a three-day trip to Kyoto."]
    np.testing.assert_allclose(by_alias.score(p), direct.score(p))
    # other spellings of a known model resolve through canonical_model
    spelled = MFRouter.load(artifact_dir, embedder=HashEmbedder(), strong_model="gpt4_1106_preview",
                            weak_model="Mixtral-8x7B-Instruct-v0.1")
    np.testing.assert_allclose(spelled.score(p), MFRouter.load(artifact_dir, embedder=HashEmbedder()).score(p))
    # a model nobody configured falls back to the trained model of its role, with a warning, no KeyError
    unknown = MFRouter.load(artifact_dir, embedder=HashEmbedder(), strong_model="brand-new-llm-9000")
    np.testing.assert_allclose(unknown.score(p), MFRouter.load(artifact_dir, embedder=HashEmbedder()).score(p))
    assert "brand-new-llm-9000" in caplog.text
    # aliases given at load time win over nothing
    over = MFRouter.load(artifact_dir, embedder=HashEmbedder(), strong_model="brand-new-llm-9000",
                         model_aliases={"brand-new-llm-9000": "llama-2-70b-chat"})
    np.testing.assert_allclose(over.score(p), direct.score(p))


def test_resolver_is_case_insensitive():
    r = ModelResolver(MODELS)
    assert r.resolve("LLAMA-2-70B-CHAT", "x") == "llama-2-70b-chat"
    assert r.resolve("nothing-like-it", MODELS[1]) == MODELS[1]


def test_wrong_embedder_or_router_is_refused(artifact_dir):
    with pytest.raises(ArtifactError, match="embedder"):
        MFRouter.load(artifact_dir, embedder=HashEmbedder(model="other-encoder"))
    with pytest.raises(ArtifactError, match="not 'sw_ranking'"):
        from routeray.routers.sw_ranking import SWRankingRouter

        SWRankingRouter.load(artifact_dir, embedder=HashEmbedder())
    with pytest.raises(ArtifactError):
        MFRouter.load(artifact_dir.parent / "missing", embedder=HashEmbedder())


def test_mf_linear_is_the_papers_score(artifact_dir):
    t = MFRouter.load(artifact_dir, embedder=HashEmbedder()).artifact.tensors
    u, c = mf_linear(t["proj_weight"], t["proj_bias"], t["model_emb"], t["classifier"])
    e = HashEmbedder().embed(["x" * 20])[0].astype(np.float64)
    for m in range(len(MODELS)):
        assert e @ u[:, m] + c[m] == pytest.approx(mf_score(t, m, e), rel=1e-5)


def test_training_embeddings_are_unit_rows(artifact_dir):
    router = MFRouter.load(artifact_dir, embedder=HashEmbedder())
    emb = router.training_embeddings()
    assert emb.shape == (2, D)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(emb, HashEmbedder().embed(["a training prompt", "another one"]), atol=0.02)


def test_default_artifact_loads_by_name():
    import routeray

    router = routeray.load_router("mf")
    s = router.score(["What is the derivative of x^3 * sin(x)?", "hi there, how are you today?"])
    assert s.shape == (2,) and ((s >= 0) & (s <= 1)).all()
