"""arena-hard-auto "arena-bench-v1": ``question.jsonl`` + ``model_judgment/*.jsonl`` (GPT-4 grades 1-10)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from routeray.data._io import clean_text, iter_jsonl, require_keys
from routeray.data.models import canonical_model
from routeray.data.schema import MIN_PROMPT_CHARS, GoldenLabel, PreferenceData
from routeray.errors import DataError

logger = logging.getLogger(__name__)

SOURCE = "arena_bench"


def read_questions(path: Path) -> dict[str, str]:
    """question_id -> prompt (the first user turn)."""
    questions: dict[str, str] = {}
    for row, q in iter_jsonl(path):
        require_keys(q, ("question_id", "turns"), path, row)
        turns = q["turns"]
        if not isinstance(turns, list) or not turns:
            raise DataError("`turns` must be a non-empty list of user turns", path, row)
        first = turns[0]
        if isinstance(first, dict):  # some releases store {"content": ...}
            first = first.get("content", "")
        questions[str(q["question_id"])] = clean_text(str(first))
    if not questions:
        raise DataError("no questions in file", path)
    return questions


def grade_to_score(grade: object, path: Path, row: int) -> float | None:
    """A 1-10 grade -> (grade - 1) / 9; None for a judge failure (null, -1 or any negative grade)."""
    if grade is None:
        return None
    if isinstance(grade, bool) or not isinstance(grade, (int, float)):
        raise DataError(f"unknown score {grade!r} (expected a grade 1-10, -1 or null)", path, row)
    if math.isnan(grade) or grade < 0:
        return None
    if not 1 <= grade <= 10:
        raise DataError(f"unknown score {grade!r} (expected a grade 1-10, -1 or null)", path, row)
    return (float(grade) - 1.0) / 9.0


def read_arena_bench(directory: str | Path) -> PreferenceData:
    """Golden labels, one per (question, model) with a valid grade. The model comes from each record's
    ``model`` field (one file may hold several models); a missing field falls back to the file name."""
    directory = Path(directory)
    questions = read_questions(directory / "question.jsonl")
    judgment_dir = directory / "model_judgment"
    files = sorted(judgment_dir.glob("*.jsonl"))
    if not files:
        raise DataError("no model_judgment/*.jsonl files", judgment_dir)
    golden: list[GoldenLabel] = []
    missing = unknown_q = 0
    for path in files:
        for row, rec in iter_jsonl(path):
            require_keys(rec, ("question_id", "score"), path, row)
            qid = str(rec["question_id"])
            if qid not in questions:
                unknown_q += 1
                continue
            score = grade_to_score(rec["score"], path, row)
            if score is None:
                missing += 1
                continue
            prompt = questions[qid]
            if len(prompt) < MIN_PROMPT_CHARS:
                continue
            model = canonical_model(rec.get("model") or path.stem)
            golden.append(GoldenLabel(prompt=prompt, model=model, score=score, source=SOURCE,
                                      prompt_id=f"arena_bench:{qid}"))
    if missing:
        logger.info("%s: %d grades missing (judge failures), skipped", judgment_dir, missing)
    if unknown_q:
        logger.warning("%s: %d grades for question ids not in question.jsonl, skipped", judgment_dir, unknown_q)
    return PreferenceData(golden=golden)
