"""RouterDC's per-model pass rates (``datasets/split2_model7/*.json``): a JSON list of
``{"question": …, "scores": {model: pass rate in [0, 1]}}`` for 7 open 7–8B models.

There are no GPT-4 or Mixtral labels here: the rates say how hard a question is for small open models (a
difficulty signal), and which of those models answers it. ``source`` is ``routerdc/<task>`` from the file
name (``gsm8k-train.json`` → ``routerdc/gsm8k``, ``arc_easy_test.json`` → ``routerdc/arc_easy``), so the
train and test files of one task are one source.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from routeray.data._io import clean_text, prompt_hash, read_json
from routeray.data.models import canonical_model
from routeray.data.schema import MIN_PROMPT_CHARS, GoldenLabel, PreferenceData
from routeray.errors import DataError

_SPLIT_SUFFIX = re.compile(r"[-_](train|test|val|validation)$")


def routerdc_task(path: Path) -> str:
    """``arc_challenge_test.json`` -> ``arc_challenge``; ``gsm8k-train.json`` -> ``gsm8k``."""
    return _SPLIT_SUFFIX.sub("", path.stem)


def _rate(value: object, path: Path, row: int, model: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or not 0.0 <= value <= 1.0:
        raise DataError(f"score of {model!r} must be a pass rate in [0, 1], got {value!r}", path, row)
    return float(value)


def read_routerdc(path: str | Path) -> PreferenceData:
    """Golden labels, one per (question, model), ``score`` = the model's pass rate. Row numbers in errors
    are 0-based positions in the JSON list."""
    path = Path(path)
    records = read_json(path)
    if not isinstance(records, list):
        raise DataError(f"expected a JSON list of questions, got {type(records).__name__}", path)
    source = f"routerdc/{routerdc_task(path)}"
    golden: list[GoldenLabel] = []
    for row, rec in enumerate(records):
        if not isinstance(rec, dict) or "question" not in rec or "scores" not in rec:
            raise DataError("expected an object with `question` and `scores`", path, row)
        question, scores = rec["question"], rec["scores"]
        if not isinstance(question, str):
            raise DataError("`question` must be a string", path, row)
        if not isinstance(scores, dict) or not scores:
            raise DataError("`scores` must be a non-empty object of model -> pass rate", path, row)
        prompt = clean_text(question)
        if len(prompt) < MIN_PROMPT_CHARS:
            continue
        pid = f"routerdc:{prompt_hash(prompt)}"
        golden += [GoldenLabel(prompt=prompt, model=canonical_model(str(m)), score=_rate(v, path, row, str(m)),
                               source=source, prompt_id=pid) for m, v in scores.items()]
    if not golden:
        raise DataError("no RouterDC questions in file", path)
    return PreferenceData(golden=golden)
