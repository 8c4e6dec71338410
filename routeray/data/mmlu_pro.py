"""MMLU-Pro per-model answers (``<model>.jsonl``): correct = ``pred == answer``; a null pred is wrong."""

from __future__ import annotations

import logging
import string
from pathlib import Path

from routeray.data._io import clean_text, iter_jsonl, require_keys
from routeray.data.models import canonical_model
from routeray.data.schema import MIN_PROMPT_CHARS, GoldenLabel, PreferenceData
from routeray.errors import DataError

logger = logging.getLogger(__name__)

_FIELDS = ("question_id", "question", "options", "answer", "pred")


def format_mmlu_prompt(question: str, options: list[str]) -> str:
    """The MMLU eval style: ``Question\\nA. ...\\nB. ...\\nAnswer:`` (as in RouteLLM's mmlu responses)."""
    lines = [question.strip()]
    letters = string.ascii_uppercase[: len(options)]
    lines += [f"{letter}. {str(opt).strip()}" for letter, opt in zip(letters, options, strict=True)]
    lines.append("Answer:")
    return "\n".join(lines)


def read_mmlu_pro(path: str | Path, by_category: bool = True) -> PreferenceData:
    """Golden labels from one model's MMLU-Pro answers. ``source`` is ``mmlu_pro/<category>`` (or
    ``mmlu_pro``). A null ``pred`` (no answer could be parsed) counts as wrong: the model failed to answer."""
    path = Path(path)
    golden: list[GoldenLabel] = []
    null_preds = 0
    for row, rec in iter_jsonl(path):
        require_keys(rec, _FIELDS, path, row)
        options = rec["options"]
        if not isinstance(options, list) or not options or len(options) > 26:
            raise DataError("`options` must be a list of 1-26 answers", path, row)
        answer = rec["answer"]
        if not isinstance(answer, str) or answer not in string.ascii_uppercase[: len(options)]:
            raise DataError(f"unknown answer {answer!r} for {len(options)} options", path, row)
        model = rec.get("model") or path.stem
        pred = rec["pred"]
        if pred is None:
            null_preds += 1
        prompt = clean_text(format_mmlu_prompt(str(rec["question"]), options))
        if len(prompt) < MIN_PROMPT_CHARS:
            continue
        category = str(rec.get("category") or "").strip().replace(" ", "_")
        source = f"mmlu_pro/{category}" if by_category and category else "mmlu_pro"
        golden.append(GoldenLabel(prompt=prompt, model=canonical_model(model),
                                  score=1.0 if pred == answer else 0.0, source=source,
                                  prompt_id=f"mmlu_pro:{rec['question_id']}"))
    if not golden:
        raise DataError("no MMLU-Pro records in file", path)
    if null_preds:
        logger.info("%s: %d null predictions counted as wrong", path, null_preds)
    return PreferenceData(golden=golden)
