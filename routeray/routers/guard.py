"""Resistance to rerouting attacks: any router, scored as the minimum over a few views of each prompt.

A "confounder gadget" (Shafran et al., arXiv 2501.01818) is a short token sequence, found by hill-climbing
against a router's score, that pushes almost any prompt it is added to over the strong threshold: someone
else then pays for the strong model. ``bench/rerouting.py`` measures how many weak-routed held-out prompts
of our routers such gadgets flip to strong, with and without the guard (``flips``), the most any gadget at
either end could flip (``bound``), and what the guard costs in routing quality (``apgr``); the figures are in
``docs/serving.md`` ("Rerouting guard").

The guard is **opt-in**: ``Router.guard`` is ``off``, so :func:`~routeray.routers.registry.load_router`
returns routers unguarded unless it is given ``guard=``; the gateway and the SDK read ``guard`` from a
router's config overrides and apply it in their routing service. Measured on the default ``mf``, ``{"mode": "spans", "margin": 0.01}`` holds *any* gadget at either
end of the prompt to at most 8 % of weak-routed held-out prompts flipped, at an APGR cost of 0.007 on the
held-out-source mean; it stays off by default for its scoring CPU (×1.8–2.1 in the gateway, which scores
views only for prompts that would go strong; the figures: ``docs/serving.md``, "Rerouting guard").

:class:`GuardedRouter` scores the prompt as sent and some views of it; the guarded score is the lower of the
prompt's own score and the lowest view's score plus ``margin`` (0 by default: the minimum over all texts).
The views (``mode``):

- ``spans``: every stretch of the prompt that starts at a capital letter followed by a small one ("Which",
  "The") and runs to the first sentence end (``.``, ``?``, ``!`` or ``:`` right after a character that is
  not a space or a capital) at or after its ``min_words``-th word. Whether a stretch is a view depends only
  on its own characters, so every view of a prompt is still a view of the prompt with *any* text added
  before or after it (glued to it or not): a gadget at either end, of any length, cannot raise the guarded
  score above the lowest view of the prompt itself plus ``margin``. Prompts with no such stretch (no
  sentence of ``min_words`` words after a capital: most prompts of at most ``min_words`` words) have no
  views and are scored as sent. Past ``max_views`` texts (32 for this mode) the first and the last views
  are kept, half each: then a gadget at one end can still push out the views of the other end's half.
- ``heads`` (what a spec without a mode means): the prompt's first ``m`` words for ``m`` on a fixed grid
  (``min_words``, twice that, four times…, below the prompt's length). Text *appended* to a prompt leaves
  every such view of it unchanged, so the guarded score of ``prompt + anything`` is at most that of the
  prompt's own heads. It does nothing against a gadget put *before* the prompt (every head then holds it).
- ``anchored``: the same heads, and the prompt's last ``m`` words on the same grid (against prepended
  text too). The two families interfere: a gadget at one end lifts the views of the other end's family,
  and the minimum of the prompt itself may sit there, so each end is protected less than by ``heads``.
- ``windows``: the prompt without each of ``max_views - 1`` overlapping windows placed so that any run of
  ``span`` words anywhere lies wholly inside one; against a gadget anywhere, at the price of cutting real
  content from every view (an appended gadget moves the cuts onto itself and off the prompt's own words).
- ``off``: the prompt as sent.

``margin`` trades protection for routing quality: the views cut content (a question without its answer
options scores differently), so their minimum routes less well than the prompt itself; with a margin the
prompt's own score decides unless a view is more than ``margin`` lower, and a gadget can then lift the
score up to the lowest view plus ``margin``. Its unit is the router's score, so a value suits one router.

For ``heads``/``anchored``/``windows``, prompts of at most ``min_words`` words have no views. The score is
a monotone function of the texts' scores, so thresholds keep their meaning; calibrate with the guard on (it
lowers scores: ``routeray calibrate --guard``). Cost: one ``score`` call per batch on the prompts and their
views; ``heads`` adds at most about twice each prompt's words (the grid's sum), less for short prompts;
``spans`` scores 3.1 texts and 2.1 times the words per held-out prompt, and the default ``mf`` spends 2.75
times its unguarded CPU per prompt on ``bench/overhead.py``'s prompt mix (``docs/serving.md``). The gateway
and the SDK apply a configured guard in their routing service instead, which scores the views of a prompt
only when the prompt's own score reaches the threshold (the same decisions, less work).
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routeray.errors import RouterayError
from routeray.routers.base import Router

GUARD_MODES = ("off", "heads", "anchored", "windows", "spans")
GRID_RATIO = 2  # heads/anchored keep min_words, 2x, 4x, ... words
MAX_VIEWS = {"spans": 32}  # texts scored per prompt at most, where a mode's default is not 8
_WORD = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"[.?!:]")


@dataclass(frozen=True)
class GuardSpec:
    """How a router is guarded; the module docstring says what each mode stops and costs."""

    mode: str = "heads"
    min_words: int = 16
    span: int = 16
    max_views: int | None = None  # None: the mode's own (MAX_VIEWS, else 8)
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in GUARD_MODES:
            raise RouterayError(f"unknown guard mode {self.mode!r} (known: {', '.join(GUARD_MODES)})")
        whole = (self.min_words, self.span, self.views_cap)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in whole):
            raise RouterayError(f"guard min_words, span and max_views must be whole numbers, got {self}")
        if self.min_words < 1 or self.span < 1 or self.views_cap < 3:
            raise RouterayError(f"guard needs min_words >= 1, span >= 1 and max_views >= 3, got {self}")
        if isinstance(self.margin, bool) or not isinstance(self.margin, int | float) or not 0 <= self.margin < 1:
            raise RouterayError(f"guard margin must be a number in [0, 1), got {self.margin!r}")

    @property
    def views_cap(self) -> int:
        """Texts scored per prompt at most, the prompt included."""
        return MAX_VIEWS.get(self.mode, 8) if self.max_views is None else self.max_views

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
        size = f"span={self.span}" if self.mode == "windows" else f"min_words={self.min_words}"
        margin = f",margin={self.margin:g}" if self.margin else ""
        return f"{self.mode}({size},max_views={self.views_cap}{margin})"


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
    k = spec.views_cap - 1
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


def _sentence_spans(text: str, min_words: int) -> list[tuple[int, int]]:
    """Character ranges of ``spans`` views: from each capital followed by a small letter to the first
    sentence end at or after the span's ``min_words``-th word. Every test looks only at characters inside
    the range (a sentence end at the character before it), so the ranges of a text are ranges of that text
    with anything added at either end."""
    starts = [i for i in range(len(text) - 1) if text[i].isupper() and text[i + 1].islower()]
    ends = [m.end() for m in _SENTENCE_END.finditer(text)
            if m.start() > 0 and not (text[m.start() - 1].isspace() or text[m.start() - 1].isupper()
                                      or text[m.start() - 1] in ".?!:")]
    word_starts = [m.start() for m in _WORD.finditer(text)]
    out = []
    for s in starts:
        last = bisect.bisect_right(word_starts, s) - 1 + min_words - 1  # the span's min_words-th word
        if last < len(word_starts):
            k = bisect.bisect_right(ends, word_starts[last])  # an end inside or after that word
            if k < len(ends):
                out.append((s, ends[k]))
    return out


def _spans(prompt: str, spec: GuardSpec) -> list[str]:
    texts = list(dict.fromkeys(prompt[a:b] for a, b in _sentence_spans(prompt, spec.min_words)))
    texts = [t for t in texts if t != prompt]
    k = spec.views_cap - 1
    if len(texts) > k:  # the first and the last spans: a gadget at one end pushes out only the other half
        texts = texts[: (k + 1) // 2] + texts[len(texts) - k // 2:]
    return [prompt, *texts]


def views(prompt: str, spec: GuardSpec) -> list[str]:
    """The texts scored for ``prompt``: itself first, then each view."""
    if spec.mode == "spans":
        return _spans(prompt, spec)
    words = [m.span() for m in _WORD.finditer(prompt)]
    out = [prompt]
    for start, end in _cuts(len(words), spec):
        left = prompt[: words[start][0]] if start > 0 else ""
        right = prompt[words[end][0]:] if end < len(words) else ""
        out.append((left + right).strip())
    return out


def guarded_score(own: float, view_scores: Sequence[float] | np.ndarray, margin: float) -> float:
    """A prompt's guarded score: the lower of its own score and its lowest view's plus ``margin`` (its own
    score when it has no view)."""
    return float(min(own, np.min(view_scores) + margin)) if len(view_scores) else float(own)


class GuardedRouter(Router):
    """Any router, scored as the lower of each prompt's own score and its lowest view's score plus the
    spec's ``margin`` (:func:`views`; one inner call per batch)."""

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
        return np.asarray([guarded_score(scores[a], scores[a + 1:b], float(self.spec.margin))
                           for a, b in zip(bounds[:-1], bounds[1:], strict=True)])

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
