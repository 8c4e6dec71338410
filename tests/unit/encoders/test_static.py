"""The static embedder distilled from MiniLM: vectors, determinism, its spec and how artifacts check it.

The table is built from the installed MiniLM on first use (~20 s; `make models` builds it beforehand)."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from routeray.encoders.registry import DEFAULT_SPEC, check_embedder, embedder_for_artifact, make_embedder
from routeray.encoders.static import (
    DEFAULT_STATIC,
    TABLE_FILE,
    StaticEmbedder,
    pca_rows,
    prepare_static,
    static_spec,
)
from routeray.errors import ArtifactError, RouterayError


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    embedder = make_embedder({"kind": "static", "model": DEFAULT_STATIC})
    assert isinstance(embedder, StaticEmbedder)
    return embedder


def test_vectors_are_unit_float32_rows_of_the_spec_dim(static: StaticEmbedder) -> None:
    texts = ["What is 2+2?", "Prove that there are infinitely many primes. " * 200, "", "naïve café 日本語"]
    emb = static.embed(texts)
    assert emb.shape == (len(texts), static.dim) == (4, 256)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert static.embed([]).shape == (0, 256)


def test_a_prompt_embeds_the_same_alone_and_in_any_batch(static: StaticEmbedder) -> None:
    a, b = "Write a haiku about the sea.", "Explain quicksort and its worst case."
    alone = static.embed([a])[0]
    np.testing.assert_array_equal(alone, static.embed([b, a, b])[1])
    np.testing.assert_array_equal(alone, static.embed([a])[0])


def test_similar_prompts_are_closer_than_unrelated_ones(static: StaticEmbedder) -> None:
    q, para, other = static.embed(["How do I sort a list in Python?",
                                   "What is the way to sort a Python list?",
                                   "Give me a recipe for a chocolate cake with berries."])
    assert q @ para > q @ other + 0.1


def test_spec_identifies_kind_source_dim_and_content() -> None:
    spec = static_spec(DEFAULT_STATIC)
    assert {k: spec[k] for k in ("kind", "model", "source", "dim")} == {
        "kind": "static", "model": DEFAULT_STATIC, "source": "all-MiniLM-L6-v2", "dim": 256}
    assert len(spec["hash"]) == 16 and int(spec["hash"], 16) >= 0
    assert make_embedder(spec).spec == spec


def test_unknown_static_model_is_refused() -> None:
    with pytest.raises(RouterayError, match="unknown static embedder 'nope'"):
        make_embedder({"kind": "static", "model": "nope"})


def test_an_artifact_refuses_another_table_or_another_kind(static: StaticEmbedder) -> None:
    check_embedder(static, static.spec, "same")  # no error
    stale = {**static.spec, "hash": "0" * 16}
    with pytest.raises(ArtifactError, match="retrain the router"):
        check_embedder(static, stale, "artifact-a")
    with pytest.raises(ArtifactError, match="artifact-b was trained with embedder"):
        check_embedder(static, DEFAULT_SPEC, "artifact-b")
    artifact = SimpleNamespace(embedder=stale, path="artifact-c")
    with pytest.raises(ArtifactError, match="artifact-c"):
        embedder_for_artifact(artifact, {})


def test_a_corrupted_cached_table_is_reported(static: StaticEmbedder, tmp_path, monkeypatch) -> None:
    folder = prepare_static(DEFAULT_STATIC)
    monkeypatch.setenv("ROUTERAY_CACHE_DIR", str(tmp_path))
    copy = tmp_path / "models" / DEFAULT_STATIC
    shutil.copytree(folder, copy)
    table = np.load(copy / TABLE_FILE)
    table[0, 0] += 1.0
    np.save(copy / TABLE_FILE, table)
    with pytest.raises(RouterayError, match="checksum"):
        StaticEmbedder(DEFAULT_STATIC).embed(["hello"])


def test_pca_axes_do_not_depend_on_the_svd_sign_convention() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) * np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
    got = pca_rows(x, 3)
    # an independent decomposition (eigh of the covariance: other arbitrary signs), same sign rule
    centred = x - x.mean(axis=0)
    vals, vecs = np.linalg.eigh(centred.T @ centred)
    axes = vecs[:, np.argsort(vals)[::-1][:3]].T
    axes *= np.sign(axes[np.arange(3), np.abs(axes).argmax(axis=1)])[:, None]
    np.testing.assert_allclose(got, centred @ axes.T, atol=1e-8)
    assert np.all(np.diff(got.var(axis=0)) < 0)
