"""Golden labels (per-model scores) -> pairwise judgments between models labelled on the same prompt."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping

from routeray.data.schema import GoldenLabel, Judgment

logger = logging.getLogger(__name__)


def mean_scores(golden: list[GoldenLabel]) -> dict[str, float]:
    """Each model's mean score over its labels: a simple strength order when no ratings are given."""
    total: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for g in golden:
        total[g.model] += g.score
        count[g.model] += 1
    return {m: total[m] / count[m] for m in total}


def golden_to_judgments(golden: list[GoldenLabel], pairs: list[tuple[str, str]] | None = None,
                        ratings: Mapping[str, float] | None = None) -> list[Judgment]:
    """Per prompt, one judgment for each (strong, weak) pair of models both labelled on it.

    ``pairs`` lists (model_a, model_b) to compare; None means every pair of labelled models, ordered so
    model_a is the higher rated (``ratings``, by default each model's mean score over ``golden``).
    p_a = 1 when A scored higher, 0 when lower, 0.5 when equal (both right, both wrong, equal grade).
    A model labelled twice on one prompt (duplicate rows) counts with its mean score.
    """
    order = dict(ratings) if ratings is not None else mean_scores(golden)
    by_prompt: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    first: dict[str, GoldenLabel] = {}
    for g in golden:
        by_prompt[g.prompt][g.model].append(g.score)
        first.setdefault(g.prompt, g)
    out: list[Judgment] = []
    for prompt in sorted(by_prompt):
        scores = {m: sum(v) / len(v) for m, v in by_prompt[prompt].items()}
        ref = first[prompt]
        for a, b in pairs if pairs is not None else _ordered_pairs(scores, order):
            if a not in scores or b not in scores or a == b:
                continue
            sa, sb = scores[a], scores[b]
            p_a = 1.0 if sa > sb else 0.0 if sa < sb else 0.5
            out.append(Judgment(prompt=prompt, model_a=a, model_b=b, p_a=p_a, source=ref.source,
                                prompt_id=ref.prompt_id))
    return out


def _ordered_pairs(scores: Mapping[str, float], order: Mapping[str, float]) -> list[tuple[str, str]]:
    models = sorted(scores, key=lambda m: (-order.get(m, float("-inf")), m))
    return [(models[i], models[j]) for i in range(len(models)) for j in range(i + 1, len(models))]
