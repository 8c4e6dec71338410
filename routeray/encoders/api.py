"""An encoder behind any OpenAI-compatible ``/embeddings`` endpoint."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from routeray.encoders.base import Embedder, normalise
from routeray.errors import RouterayError


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
        return normalise(arr)
