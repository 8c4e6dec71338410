"""Chatbot Arena battles with prompt text (FastChat's ``arena_hard_1k/question_original.jsonl``): one
record per battle, ``model_a``, ``model_b``, ``winner`` (``model_a`` / ``model_b`` / ``tie`` /
``tie (bothbad)``) and the user ``turns``. Each battle is a judgment on its first user turn; both kinds of
tie count as half a win each."""

from __future__ import annotations

import logging
from pathlib import Path

from routeray.data._io import clean_text, iter_jsonl, require_keys
from routeray.data.models import canonical_model
from routeray.data.schema import MIN_PROMPT_CHARS, Judgment, PreferenceData
from routeray.errors import DataError

logger = logging.getLogger(__name__)

SOURCE = "arena_battles"
WINNER_P_A = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}


def _first_turn(turns: object, path: Path, row: int) -> str:
    if not isinstance(turns, list) or not turns:
        raise DataError("`turns` must be a non-empty list of user turns", path, row)
    first = turns[0]
    if isinstance(first, dict):  # some exports store {"content": ...}
        first = first.get("content", "")
    if not isinstance(first, str):
        raise DataError("a user turn must be a string", path, row)
    return clean_text(first)


def read_arena_battles(path: str | Path) -> PreferenceData:
    """Judgments, one per battle (``source`` ``arena_battles``). An unknown ``winner`` is an error."""
    path = Path(path)
    judgments: list[Judgment] = []
    short = 0
    for row, rec in iter_jsonl(path):
        require_keys(rec, ("question_id", "model_a", "model_b", "winner", "turns"), path, row)
        winner = rec["winner"]
        if winner not in WINNER_P_A:
            raise DataError(f"unknown winner {winner!r}; expected one of {sorted(WINNER_P_A)}", path, row)
        a, b = canonical_model(str(rec["model_a"])), canonical_model(str(rec["model_b"]))
        prompt = _first_turn(rec["turns"], path, row)
        if a == b or len(prompt) < MIN_PROMPT_CHARS:
            short += 1
            continue
        judgments.append(Judgment(prompt=prompt, model_a=a, model_b=b, p_a=WINNER_P_A[winner], source=SOURCE,
                                  prompt_id=f"arena_battles:{rec['question_id']}"))
    if not judgments:
        raise DataError("no Arena battles in file", path)
    if short:
        logger.info("%s: %d battles skipped (prompt under %d characters or a model against itself)",
                    path, short, MIN_PROMPT_CHARS)
    return PreferenceData(judgments=judgments)
