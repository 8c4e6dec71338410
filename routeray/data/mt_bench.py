"""RouteLLM / FastChat MT Bench judgements (``question.jsonl`` + ``judgements.jsonl``) -> golden labels."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from routeray.data._io import iter_jsonl, require_keys
from routeray.data.arena_bench import grade_to_score, read_questions
from routeray.data.models import canonical_model
from routeray.data.schema import MIN_PROMPT_CHARS, GoldenLabel, PreferenceData
from routeray.errors import DataError

logger = logging.getLogger(__name__)


def read_mt_bench(directory: str | Path, turn: int | None = None, source: str = "mt_bench",
                  judgements_file: str = "judgements.jsonl") -> PreferenceData:
    """One golden label per (question, model): the prompt is the first turn, the score the mean of the
    model's scaled grades ((grade - 1) / 9) over both turns, or over ``turn`` (1 or 2) only.
    Judge failures (null or negative grades) are missing."""
    directory = Path(directory)
    questions = read_questions(directory / "question.jsonl")
    path = directory / judgements_file
    grades: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row, rec in iter_jsonl(path):
        require_keys(rec, ("question_id", "model", "score"), path, row)
        rec_turn = rec.get("turn", 1)
        if rec_turn not in (1, 2):
            raise DataError(f"unknown turn {rec_turn!r} (expected 1 or 2)", path, row)
        if turn is not None and rec_turn != turn:
            continue
        qid = str(rec["question_id"])
        if qid not in questions:
            raise DataError(f"question_id {qid} is not in question.jsonl", path, row)
        score = grade_to_score(rec["score"], path, row)
        if score is not None:
            grades[(qid, canonical_model(str(rec["model"])))].append(score)
    golden = [GoldenLabel(prompt=questions[qid], model=model, score=sum(s) / len(s), source=source,
                          prompt_id=f"{source}:{qid}")
              for (qid, model), s in sorted(grades.items()) if len(questions[qid]) >= MIN_PROMPT_CHARS]
    if not golden:
        raise DataError("no usable judgements", path)
    return PreferenceData(golden=golden)
