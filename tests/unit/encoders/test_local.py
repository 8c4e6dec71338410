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


def test_padding_to_a_multiple_of_32_tokens_leaves_the_embeddings_unchanged() -> None:
    """The GPU float16 path pads each batch to a multiple of 32 tokens; padded positions are masked, so the
    embeddings are the ones of the tightly padded batch (checked here in float32 on the CPU)."""
    import numpy as np
    import torch

    from routeray.encoders.local import GPU_PAD_MULTIPLE, LocalEmbedder

    prompts = ["Hi", "Solve 3x + 5 = 20 for x, showing each step.", "Write a haiku about the sea " * 3]
    tight = LocalEmbedder(device="cpu", runtime="torch")
    padded = LocalEmbedder(device="cpu", runtime="torch")
    expected = tight.embed(prompts)
    padded.embed(["warm-up"])
    assert padded._pad_multiple is None and padded._model.dtype == torch.float32  # float32 off the GPU
    padded._pad_multiple = GPU_PAD_MULTIPLE
    got = padded.embed(prompts)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5
    assert not np.allclose(got[0], got[1])  # distinct prompts still embed apart
