"""lmsys-arena-human-preference-55k CSV (Chatbot Arena human votes) -> pairwise judgments."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from routeray.data._io import clean_text, open_csv
from routeray.data.models import canonical_model
from routeray.data.schema import MIN_PROMPT_CHARS, Judgment, PreferenceData
from routeray.errors import DataError

logger = logging.getLogger(__name__)

SOURCE = "arena_55k"
COLUMNS = ["id", "model_a", "model_b", "prompt", "winner_model_a", "winner_model_b", "winner_tie"]
_WINNERS = ("winner_model_a", "winner_model_b", "winner_tie")


def is_arena_55k_header(header: list[str]) -> bool:
    """True when a CSV header has the arena-55k columns (responses are optional)."""
    return all(c in header for c in COLUMNS)


def parse_turns(cell: str, path: Path, row: int) -> list[str]:
    """The user turns from the ``prompt`` cell, a JSON list of strings (null turns are dropped)."""
    try:
        turns = json.loads(cell)
    except json.JSONDecodeError as exc:
        raise DataError(f"`prompt` is not valid JSON: {exc.msg}", path, row) from exc
    if isinstance(turns, str):
        turns = [turns]
    if not isinstance(turns, list):
        raise DataError(f"`prompt` must be a JSON list of turns, got {type(turns).__name__}", path, row)
    cleaned = (clean_text(str(t)) for t in turns if t is not None)
    return [t for t in cleaned if t]


def _flag(cell: str, path: Path, row: int, column: str) -> int:
    value = cell.strip().lower()
    if value in ("1", "1.0", "true"):
        return 1
    if value in ("0", "0.0", "false"):
        return 0
    raise DataError(f"unknown label {cell!r} in column {column!r} (expected 0 or 1)", path, row)


def read_arena_55k_csv(path: str | Path, turn: Literal["first", "last"] = "last") -> PreferenceData:
    """Judgments from an arena-55k CSV. The prompt is the ``turn`` user turn (default last, the turn
    routers see at serving time). Exactly one of winner_model_a / winner_model_b / winner_tie must be 1."""
    path = Path(path)
    _, rows = open_csv(path, COLUMNS)
    out: list[Judgment] = []
    n_rows = no_prompt = 0
    for row, rec in rows:
        n_rows += 1
        flags = [_flag(rec[c] or "", path, row, c) for c in _WINNERS]
        if sum(flags) != 1:
            raise DataError(f"exactly one of {list(_WINNERS)} must be 1, got {flags}", path, row)
        turns = parse_turns(rec["prompt"] or "", path, row)
        if not turns:
            no_prompt += 1
            continue
        prompt = turns[0] if turn == "first" else turns[-1]
        if len(prompt) < MIN_PROMPT_CHARS:
            continue
        a, b = canonical_model(rec["model_a"] or ""), canonical_model(rec["model_b"] or "")
        if not a or not b:
            raise DataError("empty model name", path, row)
        if a == b:
            continue
        p_a = 1.0 if flags[0] else 0.0 if flags[1] else 0.5
        out.append(Judgment(prompt=prompt, model_a=a, model_b=b, p_a=p_a, source=SOURCE,
                            prompt_id=f"arena_55k:{rec['id']}"))
    if n_rows == 0:
        raise DataError("CSV has a header but no rows", path)
    if no_prompt:
        logger.info("%s: %d rows without a user turn skipped", path, no_prompt)
    return PreferenceData(judgments=out)
