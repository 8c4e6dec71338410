"""MiniLM with dynamic int8 quantisation: a distinct embedder spec, close vectors, refused by plain artifacts."""

from __future__ import annotations

import numpy as np
import pytest

from routeray.encoders.local import LocalEmbedder
from routeray.encoders.registry import DEFAULT_SPEC, check_embedder, make_embedder
from routeray.errors import ArtifactError, RouterayError

INT8_SPEC = {**DEFAULT_SPEC, "quantize": "dynamic-int8"}


def test_unknown_quantize_mode_is_refused() -> None:
    with pytest.raises(RouterayError, match="unknown quantize mode 'int4'"):
        LocalEmbedder(quantize="int4")


def test_int8_minilm_is_its_own_spec_and_close_to_float() -> None:
    plain, int8 = make_embedder(DEFAULT_SPEC), make_embedder(INT8_SPEC)
    assert int8 is not plain
    assert int8.spec == INT8_SPEC and plain.spec == DEFAULT_SPEC
    texts = ["How do I sort a list in Python?", "Prove that there are infinitely many primes."]
    a, b = plain.embed(texts), int8.embed(texts)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = (a * b).sum(axis=1)
    assert np.all(cos > 0.95) and np.all(cos < 1.0 - 1e-6)  # close, but not the same vectors


def test_artifacts_tell_plain_and_int8_minilm_apart() -> None:
    int8 = make_embedder(INT8_SPEC)
    with pytest.raises(ArtifactError, match="was trained with embedder"):
        check_embedder(int8, DEFAULT_SPEC, "plain-artifact")
    with pytest.raises(ArtifactError, match="was trained with embedder"):
        check_embedder(make_embedder(DEFAULT_SPEC), INT8_SPEC, "int8-artifact")
    check_embedder(int8, INT8_SPEC, "int8-artifact")  # no error
