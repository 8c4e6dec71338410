"""Resistance to rerouting attacks: any router, scored as the minimum over a few views of each prompt.

A "confounder gadget" (Shafran et al., arXiv 2501.01818) is a short token sequence, found by hill-climbing
against a router's score, that pushes almost any prompt it is added to over the strong threshold: someone
else then pays for the strong model. ``bench/rerouting.py`` measures how many weak-routed held-out prompts
of our routers such gadgets flip to strong, with and without the guard (``flips``), and what the guard costs
in routing quality (``apgr``); the figures are in ``docs/serving.md`` ("Rerouting guard").

The guard is **opt-in**: ``Router.guard`` is ``off``, so :func:`~routeray.routers.registry.load_router`
returns routers unguarded unless it is given ``guard=`` (from a router's config overrides in the gateway and
the SDK). Measured on the default ``mf``, no mode holds optimised gadgets at both ends of the prompt under 10 %
of weak-routed prompts flipped (``heads`` stops appended ones only), so none is the default.

:class:`GuardedRouter` scores the prompt as sent and some views of it, and returns the lowest score. The
views (``mode``):

- ``heads`` (what a spec without a mode means): the prompt's first ``m`` words for ``m`` on a fixed grid (``min_words``, twice
  that, four times…, below the prompt's length). Text *appended* to a prompt leaves every such view of it
  unchanged, so the guarded score of ``prompt + anything`` is at most that of the prompt's own heads: an
  appended gadget can only win where the full prompt scored lower than all of its heads. It does nothing
  against a gadget put *before* the prompt (every head then holds it).
- ``anchored``: the same heads, and the prompt's last ``m`` words on the same grid (against prepended
  text too). The two families interfere: a gadget at one end lifts the views of the other end's family,
  and the minimum of the prompt itself may sit there, so each end is protected less than by ``heads``.
- ``windows``: the prompt without each of ``max_views - 1`` overlapping windows placed so that any run of
  ``span`` words anywhere lies wholly inside one; against a gadget anywhere, at the price of cutting real
  content from every view (an appended gadget moves the cuts onto itself and off the prompt's own words).
- ``off``: the prompt as sent.

Prompts of at most ``min_words`` words have no views: a gadget added to a shorter prompt is partly inside
the first head. The score is a monotone function of the views' scores, so thresholds keep their meaning;
calibrate with the guard on (it lowers scores: ``routeray calibrate --guard``). Cost: one ``score`` call per
batch on the prompts and their views; ``heads`` adds at most about twice each prompt's words (the grid's
sum), less for short prompts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routeray.errors import RouterayError
from routeray.routers.base import Router

GUARD_MODES = ("off", "heads", "anchored", "windows")
GRID_RATIO = 2  # heads/anchored keep min_words, 2x, 4x, ... words
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class GuardSpec:
    """How a router is guarded; the module docstring says what each mode stops and costs."""

    mode: str = "heads"
    min_words: int = 16
    span: int = 16
    max_views: int = 8

    def __post_init__(self) -> None:
        if self.mode not in GUARD_MODES:
            raise RouterayError(f"unknown guard mode {self.mode!r} (known: {', '.join(GUARD_MODES)})")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (self.min_words, self.span, self.max_views)):
            raise RouterayError(f"guard min_words, span and max_views must be whole numbers, got {self}")
        if self.min_words < 1 or self.span < 1 or self.max_views < 3:
            raise RouterayError(f"guard needs min_words >= 1, span >= 1 and max_views >= 3, got {self}")

    @classmethod
    def parse(cls, value: GuardSpec | Mapping[str, Any] | str | None) -> GuardSpec:
        """A spec from a spec, a mapping (``{"mode": "heads", "min_words": 16}``), a mode name, or None
        (the default: ``heads``)."""
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

    @classmethod
    def from_text(cls, text: str) -> GuardSpec:
        """A spec from a command-line value: a mode name, or a JSON object of options
        (``{"mode": "heads", "min_words": 32}``; options left out keep their defaults)."""
        text = text.strip()
        if not text.startswith(("{", "[", '"')):
            return cls.parse(text)
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise RouterayError(f"guard spec is not valid JSON ({exc}): {text!r}") from None
        if not isinstance(value, dict | str):
            raise RouterayError(f"guard spec must be a JSON object or mode name, got {text!r}")
        return cls.parse(value)

    def describe(self) -> str:
        if self.mode == "off":
            return "off"
        if self.mode == "windows":
            return f"windows(span={self.span},max_views={self.max_views})"
        return f"{self.mode}(min_words={self.min_words},max_views={self.max_views})"


def _grid(n_words: int, start: int) -> list[int]:
    """Head lengths below ``n_words``: start, 2 start, 4 start, …"""
    out, m = [], start
    while m < n_words:
        out.append(m)
        m *= GRID_RATIO
    return out


def _cuts(n: int, spec: GuardSpec) -> list[tuple[int, int]]:
    """Word ranges ``[start, end)`` to cut from an ``n``-word prompt, one per extra view; none cuts all."""
    if spec.mode == "off" or n <= spec.min_words:
        return []
    k = spec.max_views - 1
    if spec.mode in ("heads", "anchored"):
        # a view depends only on its own end of the prompt: text added at the other end leaves it as it was
        grid = _grid(n, spec.min_words)
        if spec.mode == "heads":
            return [(m, n) for m in grid[-k:]]
        return [c for m in grid[-(k // 2):] for c in ((m, n), (0, n - m))]
    if n <= spec.span:
        return []
    # windows: k cuts of width w at stride w - span + 1 hold every run of `span` words; the narrowest w
    # for which k cuts reach the end (w < n because n > span)
    width = max(spec.span, -(-(n + (k - 1) * (spec.span - 1)) // k))
    stride = width - spec.span + 1
    starts = list(range(0, n - width, stride)) + [n - width]
    return [(s, s + width) for s in dict.fromkeys(starts)]


def views(prompt: str, spec: GuardSpec) -> list[str]:
    """The texts scored for ``prompt``: itself first, then each cut (the text between words kept)."""
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
        bounds = np.cumsum([0] + [len(vs) for vs in per_prompt])
        return np.asarray([scores[a:b].min() for a, b in zip(bounds[:-1], bounds[1:], strict=True)])

    def training_embeddings(self) -> np.ndarray | None:
        return self.inner.training_embeddings()

    @property
    def fingerprint(self) -> str:
        return f"{self.inner.fingerprint}+guard-{self.spec.describe()}"

    def __getattr__(self, attr: str) -> Any:
        # the inner router's own attributes (embedder, strong_model, …) stay readable; set them on .inner.
        # Not score_embeddings: it scores the whole prompt's embedding, which would bypass the guard (evaluation
        # uses it when present, and would cache unguarded scores under the guarded fingerprint).
        if attr in ("inner", "spec", "score_embeddings"):
            raise AttributeError(attr)
        return getattr(self.inner, attr)


def guard_router(router: Router, spec: GuardSpec | Mapping[str, Any] | str | None) -> Router:
    """``router`` guarded by ``spec`` (None: the default guard); the router itself when the mode is off."""
    parsed = GuardSpec.parse(spec)
    return router if parsed.mode == "off" else GuardedRouter(router, parsed)
