"""The local encoder's spec, and the retired int8 MiniLM: a spec asking for it is refused with the reason."""

from __future__ import annotations

import pytest

from routeray.encoders.registry import DEFAULT_SPEC, make_embedder
from routeray.errors import RouterayError


def test_the_int8_minilm_spec_is_refused_with_the_reason() -> None:
    with pytest.raises(RouterayError, match="retired.*onnx-int8"):
        make_embedder({**DEFAULT_SPEC, "quantize": "dynamic-int8"})


def test_minilm_spec_names_the_vectors() -> None:
    assert make_embedder(DEFAULT_SPEC).spec == DEFAULT_SPEC
