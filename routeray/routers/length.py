"""The length baseline: the longer the prompt, the more likely the strong model is needed. No training.

``score = n / (n + half_tokens)`` with ``n`` the prompt's token count (words and punctuation marks, a
tokenizer-free stand-in for model tokens): 0 for an empty prompt, 0.5 at ``half_tokens`` tokens, rising
towards 1. Only the order of the scores matters for the paper's metrics; ``half_tokens`` places a
threshold of 0.5 at a typical prompt length. A zero-training bar every learned router must clear
(QUALITY.md: on knowledge and maths benchmarks it beats many learned routers).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routeray.errors import RouterayError
from routeray.routers.base import Router

_TOKEN = re.compile(r"\w+|[^\w\s]")
DEFAULT_HALF_TOKENS = 100


def count_tokens(text: str) -> int:
    """Words and punctuation marks in ``text``."""
    return len(_TOKEN.findall(text))


class LengthRouter(Router):
    """P(strong) rising with the prompt's token count."""

    name: ClassVar[str] = "length"
    needs_artifact: ClassVar[bool] = False

    def __init__(self, half_tokens: float = DEFAULT_HALF_TOKENS):
        if not half_tokens > 0:
            raise RouterayError(f"length router: half_tokens must be positive, got {half_tokens!r}")
        self.half_tokens = float(half_tokens)

    @classmethod
    def load(cls, artifact_dir: Path | None = None, **overrides: Any) -> LengthRouter:
        """Overrides: ``half_tokens``; pair overrides (``strong_model``…) are accepted and do not matter."""
        return cls(half_tokens=overrides.get("half_tokens", DEFAULT_HALF_TOKENS))

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        n = np.asarray([count_tokens(p) for p in prompts], dtype=np.float64)
        return n / (n + self.half_tokens)

    @property
    def fingerprint(self) -> str:
        return f"length-{self.half_tokens:g}"
