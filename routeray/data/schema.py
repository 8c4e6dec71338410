"""The two record types every importer produces, and the bundle that holds them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

MIN_PROMPT_CHARS = 16  # the paper drops shorter prompts


@dataclass(frozen=True, slots=True)
class Judgment:
    """One pairwise comparison: was model A's answer to ``prompt`` better than model B's?

    ``p_a`` is the probability that A won: 1.0 (A), 0.0 (B), 0.5 (tie), or a judge's soft preference.
    ``weight`` lets a source count more or less in training (1.0 by default).
    """

    prompt: str
    model_a: str
    model_b: str
    p_a: float
    source: str
    prompt_id: str = ""
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class GoldenLabel:
    """One model's result on a question with a known answer: ``score`` 1.0 right, 0.0 wrong, or a grade
    scaled to [0, 1] (e.g. a 1-10 judge score)."""

    prompt: str
    model: str
    score: float
    source: str
    prompt_id: str = ""


@dataclass
class PreferenceData:
    """Everything loaded from a data directory."""

    judgments: list[Judgment] = field(default_factory=list)
    golden: list[GoldenLabel] = field(default_factory=list)

    def extend(self, other: PreferenceData) -> PreferenceData:
        self.judgments.extend(other.judgments)
        self.golden.extend(other.golden)
        return self

    @property
    def sources(self) -> list[str]:
        return sorted({j.source for j in self.judgments} | {g.source for g in self.golden})

    @property
    def models(self) -> list[str]:
        names = {j.model_a for j in self.judgments} | {j.model_b for j in self.judgments}
        return sorted(names | {g.model for g in self.golden})

    @property
    def prompts(self) -> list[str]:
        return sorted({j.prompt for j in self.judgments} | {g.prompt for g in self.golden})

    def fingerprint(self) -> str:
        """A 16-hex-digit hash of every record, independent of record order: keys training artifacts."""
        lines = [f"J\x1f{j.prompt}\x1f{j.model_a}\x1f{j.model_b}\x1f{j.p_a!r}\x1f{j.source}\x1f{j.weight!r}"
                 for j in self.judgments]
        lines += [f"G\x1f{g.prompt}\x1f{g.model}\x1f{g.score!r}\x1f{g.source}" for g in self.golden]
        h = hashlib.sha256()
        for line in sorted(lines):
            h.update(line.encode("utf-8", "replace"))
            h.update(b"\x1e")
        return h.hexdigest()[:16]
