"""The random baseline: a seeded uniform score, independent of the prompt's content."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routeray.routers.base import Router


class RandomRouter(Router):
    """Scores each prompt with a uniform draw. Seeded and deterministic per prompt, so a prompt scored
    twice (or in another batch) gets the same score; different seeds give independent routers."""

    name: ClassVar[str] = "random"
    needs_artifact: ClassVar[bool] = False
    # a seeded draw per text: nothing to reroute, and a minimum would skew it (off whatever the default)
    guard: ClassVar[str] = "off"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    @classmethod
    def load(cls, artifact_dir: Path | None = None, **overrides: Any) -> RandomRouter:
        return cls(seed=int(overrides.get("seed", 0)))

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        out = np.empty(len(prompts), dtype=np.float64)
        for i, prompt in enumerate(prompts):
            digest = hashlib.blake2b(f"{self.seed}\x00{prompt}".encode(), digest_size=8).digest()
            out[i] = int.from_bytes(digest, "little") / 2**64
        return out

    @property
    def fingerprint(self) -> str:
        return f"random-seed{self.seed}"
