"""Embedders by spec: :func:`make_embedder` builds one from the ``spec`` dict stored in artifacts (local
encoders shared per process), and :func:`check_embedder` refuses an embedder whose vectors differ from those
an artifact was trained on, so a router never runs with another embedder than its own.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from routeray.encoders.base import Embedder
from routeray.errors import ArtifactError, RouterayError

DEFAULT_SPEC: dict[str, Any] = {"kind": "local", "model": "all-MiniLM-L6-v2", "dim": 384}
# The same MiniLM with int8 weights on ONNX Runtime: mf's default (same held-out routing quality, less CPU per
# prompt; docs/evaluation.md, "int8 MiniLM")
INT8_SPEC: dict[str, Any] = {**DEFAULT_SPEC, "quantize": "onnx-int8"}
# Optional spec keys that change the vectors: an artifact and its embedder must agree on them too (absent = None).
IDENTITY_KEYS = ("kind", "model", "dim", "quantize", "source", "hash")

_SHARED: dict[str, Embedder] = {}
_SHARED_LOCK = threading.Lock()


def make_embedder(spec: dict[str, Any] | None = None, **options: Any) -> Embedder:
    """Build an embedder from its spec; local encoders are shared per process (loaded once)."""
    spec = dict(spec or DEFAULT_SPEC)
    kind = spec.get("kind", "local")
    if spec.get("quantize") == "dynamic-int8":
        raise RouterayError(
            f"embedder {spec}: the torch int8 MiniLM (quantize: dynamic-int8) was retired: torch.ao.quantization "
            "is deprecated, and its replacement (torchao's int8 dynamic quantisation) ran 3.2x slower than float32 "
            "on CPU here; use quantize: onnx-int8 (ONNX Runtime) or the static embedder (kind: static) for speed "
            "and retrain the router")
    if kind == "local":
        key = json.dumps([spec, options], sort_keys=True, default=str)
        with _SHARED_LOCK:
            if key not in _SHARED:
                from routeray.encoders.local import LocalEmbedder

                path = options.pop("model_path", spec.get("path"))
                _SHARED[key] = LocalEmbedder(model_path=path, model=spec.get("model", "all-MiniLM-L6-v2"),
                                             quantize=spec.get("quantize"), **options)
            return _SHARED[key]
    if kind == "static":
        from routeray.encoders.static import DEFAULT_STATIC, StaticEmbedder

        key = json.dumps(["static", spec.get("model", DEFAULT_STATIC)])
        with _SHARED_LOCK:
            if key not in _SHARED:
                _SHARED[key] = StaticEmbedder(spec.get("model", DEFAULT_STATIC))
            return _SHARED[key]
    if kind == "openai":
        base_url = options.get("base_url") or os.environ.get("ROUTERAY_EMBEDDINGS_BASE_URL")
        if not base_url:
            raise RouterayError("an OpenAI embedder needs base_url (or ROUTERAY_EMBEDDINGS_BASE_URL)")
        from routeray.encoders.api import OpenAIEmbedder

        return OpenAIEmbedder(model=spec["model"], base_url=base_url, dim=spec["dim"],
                              api_key_env=options.get("api_key_env", "OPENAI_API_KEY"))
    raise RouterayError(f"unknown embedder kind {kind!r} (known: local, static, openai)")


def check_embedder(embedder: Embedder, expected: dict[str, Any] | None, where: object) -> None:
    """Refuse an embedder whose vectors differ from those an artifact was trained on."""
    if expected is None:
        return
    got = embedder.spec
    for key in IDENTITY_KEYS:
        if key in ("kind", "model", "dim") and key not in expected:
            continue  # older artifacts may leave these out; the optional keys count as None when absent
        if got.get(key) != expected.get(key):
            raise ArtifactError(
                f"{where} was trained with embedder {expected}, but {got} was given; "
                "retrain the router or configure the matching embedder"
            )


def embedder_for_artifact(artifact: Any, overrides: dict[str, Any]) -> Embedder:
    """The embedder a router artifact needs: ``overrides["embedder"]`` or one built from the artifact's spec
    (with ``overrides["embedder_options"]``), refused if its vectors differ from the trained ones."""
    embedder = overrides.get("embedder") or make_embedder(artifact.embedder, **overrides.get("embedder_options", {}))
    check_embedder(embedder, artifact.embedder, artifact.path)
    return embedder
