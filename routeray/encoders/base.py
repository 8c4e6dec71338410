"""The Embedder contract, and what every encoder shares: unit rows, length-sorted batches, device choice."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def length_sorted_batches(texts: Sequence[str], batch_size: int) -> Iterator[np.ndarray]:
    """Index arrays covering ``texts`` in batches of similar length, so each batch pads little; callers
    write results back at these indices to keep the original order."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in range(0, len(texts), batch_size):
        yield order[start:start + batch_size]


def pick_device(device: str | None = None) -> str:
    """The device asked for, else ``cuda`` when torch sees a GPU, else ``cpu``."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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
