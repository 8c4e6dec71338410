"""Resistance to rerouting attacks: a wrapper that scores each prompt under a few views and keeps the lowest.

A "confounder gadget" (Shafran et al., arXiv 2501.01818) is a short token sequence, found by hill-climbing
against a router's score, that pushes almost any prompt it is added to over the strong threshold. Every
router here reads a whole prompt, so a few words can move its score a long way when the prompt is short.

:class:`GuardedRouter` scores the prompt as sent and the same prompt with some word spans cut out, and
returns the minimum. A gadget of up to ``span`` words placed where a view cuts is absent from that view, so
it cannot raise the guarded score above what the prompt scores without it (less the words cut with it).
The views (``mode``):

- ``off``: the prompt as sent (no guard);
- ``tail``: also the prompt without its last ``span`` words (an appended gadget, the case of a user
  message that ends with whatever the attacker typed);
- ``ends``: also the prompt without its first ``span`` words (a prepended gadget, the paper's attack);
- ``windows``: also the prompt without each of ``max_views - 1`` overlapping windows, placed so that any
  run of ``span`` words anywhere lies wholly inside one of them (longer prompts get wider windows: a
  gadget is diluted in a long prompt anyway).

Prompts of at most ``min_words`` words are scored as sent: every view would cut most of them. The score is
a monotone function of the views' scores, so thresholds keep their meaning (calibrate with the guard on).
Cost: one ``score`` call per batch on up to ``max_views`` times as many (shorter) prompts.
``bench/rerouting.py`` measures what each mode stops and what it costs in routing quality.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routeray.errors import RouterayError
from routeray.routers.base import Router

GUARD_MODES = ("off", "tail", "ends", "windows", "heads", "anchored")
GRID_RATIO = 2.0  # heads/anchored: kept lengths min_words, 2x, 4x, ... words
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class GuardSpec:
    """How a router is guarded: see the module docstring for the modes."""

    mode: str = "off"
    span: int = 16
    min_words: int = 8
    max_views: int = 8
    slack: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in GUARD_MODES:
            raise RouterayError(f"unknown guard mode {self.mode!r} (known: {', '.join(GUARD_MODES)})")
        if self.span < 1 or self.min_words < 0 or self.max_views < 3 or not 0.0 <= self.slack <= 1.0:
            raise RouterayError(f"guard needs span >= 1, min_words >= 0, max_views >= 3 and slack in [0, 1], "
                                f"got {self}")

    @classmethod
    def parse(cls, value: GuardSpec | Mapping[str, Any] | str | None) -> GuardSpec:
        """A spec from a spec, a mapping (``{"mode": "tail", "span": 16}``), a mode name, or None (off)."""
        if isinstance(value, GuardSpec):
            return value
        if value is None:
            return cls()
        if isinstance(value, str):
            return cls(mode=value)
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            raise RouterayError(f"unknown guard option(s) {sorted(unknown)}; known: "
                                f"{', '.join(cls.__dataclass_fields__)}")
        return cls(**dict(value))

    def describe(self) -> str:
        if self.mode == "off":
            return "off"
        return (f"{self.mode}(span={self.span},min_words={self.min_words},max_views={self.max_views},"
                f"slack={self.slack:g})")


def _grid(start: int, limit: int = 100_000) -> list[int]:
    out, m = [], float(max(1, start))
    while m < limit:
        out.append(int(round(m)))
        m *= GRID_RATIO
    return out


def _cuts(n_words: int, spec: GuardSpec) -> list[tuple[int, int]]:
    """Word ranges ``[start, end)`` to cut, one per extra view; none cuts the whole prompt."""
    span, n = spec.span, n_words
    if spec.mode in ("heads", "anchored"):
        # keep the first (heads) and the last (anchored) m words for m on a fixed grid: a view depends only
        # on its own end of the prompt, so text added at the other end leaves it as it was
        grid = [m for m in _grid(spec.min_words) if m < n][-(spec.max_views - 1):]
        cuts = [(m, n) for m in grid]
        if spec.mode == "anchored":
            cuts += [(0, n - m) for m in grid]
        return cuts[-(spec.max_views - 1):] if spec.mode == "heads" else cuts
    if spec.mode == "off" or n <= max(spec.min_words, span):
        return []
    if spec.mode == "tail":
        return [(n - span, n)]
    if spec.mode == "ends":
        return [(n - span, n), (0, span)]
    # windows: k cuts of width w at stride w - span + 1 hold every run of `span` words; the narrowest w
    # for which k = max_views - 1 cuts reach the end (w < n because n > span)
    k = spec.max_views - 1
    width = max(span, -(-(n + (k - 1) * (span - 1)) // k))
    stride = width - span + 1
    starts = list(range(0, n - width, stride)) + [n - width]
    return [(s, s + width) for s in dict.fromkeys(starts)]


def views(prompt: str, spec: GuardSpec) -> list[str]:
    """The texts scored for ``prompt``: itself first, then each cut (formatting between words kept)."""
    words = [m.span() for m in _WORD.finditer(prompt)]
    out = [prompt]
    for start, end in _cuts(len(words), spec):
        left = prompt[: words[start][0]] if start > 0 else ""
        right = prompt[words[end][0]:] if end < len(words) else ""
        out.append((left + right).strip())
    return out


class GuardedRouter(Router):
    """Any router, scored as the minimum over :func:`views` of each prompt (one inner call per batch)."""

    name: ClassVar[str] = "guarded"

    def __init__(self, inner: Router, spec: GuardSpec):
        self.inner = inner
        self.spec = spec

    @classmethod
    def load(cls, artifact_dir: Path | None, **overrides: Any) -> Router:
        raise RouterayError("a guarded router wraps a loaded one: use routeray.routers.guard.guard_router")

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        per_prompt = [views(p, self.spec) for p in prompts]
        flat = [v for vs in per_prompt for v in vs]
        scores = np.asarray(self.inner.score(flat), dtype=np.float64)
        out = np.empty(len(prompts), dtype=np.float64)
        i = 0
        for k, vs in enumerate(per_prompt):
            mine = scores[i:i + len(vs)]
            out[k] = min(mine[0], mine[1:].min() + self.spec.slack) if len(vs) > 1 else mine[0]
            i += len(vs)
        return out

    def training_embeddings(self) -> np.ndarray | None:
        return self.inner.training_embeddings()

    @property
    def fingerprint(self) -> str:
        return f"{self.inner.fingerprint}+guard-{self.spec.describe()}"

    def __getattr__(self, attr: str) -> Any:
        # the inner router's own attributes (embedder, strong_model, …) stay reachable
        if attr in ("inner", "spec"):
            raise AttributeError(attr)
        return getattr(self.inner, attr)


def guard_router(router: Router, spec: GuardSpec | Mapping[str, Any] | str | None) -> Router:
    """``router`` guarded by ``spec`` (itself when the guard is off)."""
    parsed = GuardSpec.parse(spec)
    return router if parsed.mode == "off" else GuardedRouter(router, parsed)


def spec_dict(spec: GuardSpec) -> dict[str, Any]:
    return asdict(spec)
