"""AlpacaEval 2.0 annotations (``<model>/<annotator>/annotations.json``) -> pairwise judgments."""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

from routeray.data._io import clean_text, prompt_hash, read_json, require_keys
from routeray.data.models import canonical_model
from routeray.data.schema import MIN_PROMPT_CHARS, Judgment, PreferenceData
from routeray.errors import DataError

logger = logging.getLogger(__name__)

SOURCE = "alpaca_eval"
_FIELDS = ("instruction", "generator_1", "generator_2", "preference")


def preference_to_p_a(value: object, path: Path, row: int) -> float | None:
    """AlpacaEval ``preference`` -> P(generator_1 wins); None when the judge gave no answer.

    1 -> 1.0, 2 -> 0.0, 1.5 -> 0.5, and the weighted annotator's continuous value v in [1, 2] -> 2 - v.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"unknown preference {value!r} (expected a number in [1, 2] or null)", path, row)
    if math.isnan(value):
        return None
    if not 1.0 <= value <= 2.0:
        raise DataError(f"unknown preference {value!r} (expected a number in [1, 2] or null)", path, row)
    return 2.0 - float(value)


def read_alpaca_eval(path: str | Path) -> PreferenceData:
    """Read one ``annotations.json``. Records whose ``preference`` is null are skipped and counted.

    Each record keeps weight 1.0 here; :func:`split_annotator_weights` (applied by ``load_data_dir``)
    divides the weight when several annotators judged the same (prompt, pair).
    """
    path = Path(path)
    records = read_json(path)
    if not isinstance(records, list):
        raise DataError(f"expected a JSON list of annotations, got {type(records).__name__}", path)
    if not records:
        raise DataError("no annotations in file", path)
    out: list[Judgment] = []
    skipped_null = skipped_short = 0
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataError(f"expected a JSON object, got {type(rec).__name__}", path, i)
        require_keys(rec, _FIELDS, path, i)
        p_a = preference_to_p_a(rec["preference"], path, i)
        if p_a is None:
            skipped_null += 1
            continue
        prompt = clean_text(str(rec["instruction"]))
        if len(prompt) < MIN_PROMPT_CHARS:
            skipped_short += 1
            continue
        a, b = canonical_model(rec["generator_1"]), canonical_model(rec["generator_2"])
        if a == b:
            continue  # a model against itself says nothing
        out.append(Judgment(prompt=prompt, model_a=a, model_b=b, p_a=p_a, source=SOURCE,
                            prompt_id=f"alpaca_eval:{rec.get('dataset', '')}:{prompt_hash(prompt)}"))
    if skipped_null:
        logger.info("%s: skipped %d annotations without a preference", path, skipped_null)
    if skipped_short:
        logger.debug("%s: dropped %d prompts shorter than %d chars", path, skipped_short, MIN_PROMPT_CHARS)
    return PreferenceData(judgments=out)


def split_annotator_weights(judgments: list[Judgment]) -> list[Judgment]:
    """Give each (prompt, unordered pair) a total weight of its original weight: k annotators -> w/k each.

    Several AlpacaEval annotators judged some (prompt, pair)s; keeping every judgment keeps the
    information, splitting the weight stops those prompts from counting k times.
    """
    key = lambda j: (j.prompt, *sorted((j.model_a, j.model_b)))  # noqa: E731
    counts = Counter(key(j) for j in judgments)
    return [j if counts[key(j)] == 1 else replace(j, weight=j.weight / counts[key(j)]) for j in judgments]

