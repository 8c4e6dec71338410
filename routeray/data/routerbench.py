"""RouterBench subsets (RouterDC's redistribution): one 0/1 correctness column per model."""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

from routeray.data._io import clean_text, open_csv, prompt_hash
from routeray.data.models import canonical_model
from routeray.data.schema import MIN_PROMPT_CHARS, GoldenLabel, PreferenceData
from routeray.errors import DataError

logger = logging.getLogger(__name__)

_META_COLUMNS = {"", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to"}
# A solved few-shot example ends with "Answer:\n<letter>"; the question to route on is the last block.
_SOLVED_SHOT = re.compile(r"Answer:\s*\n\s*[A-Z]\s*$")


def parse_prompt(cell: str, path: Path, row: int) -> str:
    """The prompt text from a cell holding a Python list literal ``"['...']"`` (parsed without eval).

    A list of several strings is joined with blank lines; a plain string cell is taken as is.
    """
    cell = cell.strip()
    if not cell.startswith("["):
        return cell
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError) as exc:
        raise DataError(f"`prompt` is not a valid list literal: {exc}", path, row) from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError("`prompt` must be a list of strings", path, row)
    # RouterBench repeats the same prompt when a list has several entries; keep distinct ones in order.
    parts = list(dict.fromkeys(v.strip() for v in value if v.strip()))
    return "\n\n".join(parts)


def strip_few_shot(prompt: str) -> str:
    """Drop solved few-shot examples in front of the question (ARC-Challenge prompts are 5-shot).

    Routers see the question, not 1-2 KB of identical examples that would fill a 256-token encoder.
    """
    blocks = prompt.split("\n\n")
    keep = 0
    for i, block in enumerate(blocks[:-1]):
        if _SOLVED_SHOT.search(block):
            keep = i + 1
    return "\n\n".join(blocks[keep:]).strip()


def parse_correct(cell: str, path: Path, row: int, column: str) -> float | None:
    """``1``/``1.0``/``True`` -> 1.0, ``0``/``0.0``/``False`` -> 0.0, empty -> None (missing)."""
    cell = cell.strip()
    if cell == "":
        return None
    low = cell.lower()
    if low in ("true", "false"):
        return 1.0 if low == "true" else 0.0
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"unknown correctness {cell!r} in column {column!r} (expected 0/1)", path, row) from None
    if value not in (0.0, 1.0):
        raise DataError(f"unknown correctness {cell!r} in column {column!r} (expected 0/1)", path, row)
    return value


def read_routerbench_costs(path: str | Path) -> dict[str, dict[str, float]]:
    """The recorded US$ cost of each call, ``{prompt_id: {model: cost}}`` (ids and canonical model names as
    :func:`read_routerbench_csv` gives them; empty cells left out)."""
    path = Path(path)
    header, rows = open_csv(path, ["prompt"])
    columns = {c: canonical_model(c.split("|", 1)[0]) for c in header if c.endswith("|total_cost")}
    if not columns:
        raise DataError("no `<model>|total_cost` columns", path, 0)
    out: dict[str, dict[str, float]] = {}
    for row, rec in rows:
        prompt = clean_text(strip_few_shot(parse_prompt(rec["prompt"] or "", path, row)))
        costs: dict[str, float] = {}
        for col, model in columns.items():
            cell = (rec[col] or "").strip()
            if cell:
                try:
                    costs[model] = float(cell)
                except ValueError:
                    raise DataError(f"cost {cell!r} in column {col!r} is not a number", path, row) from None
        out[_prompt_id(path, rec, prompt)] = costs
    return out


def _prompt_id(path: Path, rec: dict[str, str], prompt: str) -> str:
    # the id names the file (``arc_challenge_test:<sample_id>``) so the RouterBench test files can still be
    # told apart from the train files after loading: both share one ``source``.
    return f"{path.stem}:{rec.get('sample_id') or prompt_hash(prompt)}"


def read_routerbench_csv(path: str | Path, source: str | None = None) -> PreferenceData:
    """Golden labels from one RouterBench CSV; ``source`` defaults to ``routerbench/<subset>`` where
    the subset is the file name without ``_train``/``_test``."""
    path = Path(path)
    source = source or f"routerbench/{re.sub(r'_(train|test)$', '', path.stem)}"
    header, rows = open_csv(path, ["prompt"])
    models = [c for c in header if c not in _META_COLUMNS and "|" not in c and not c.startswith("Unnamed")]
    if not models:
        raise DataError("no per-model correctness columns", path, 0)
    golden: list[GoldenLabel] = []
    n_rows = missing = 0
    for row, rec in rows:
        n_rows += 1
        prompt = clean_text(strip_few_shot(parse_prompt(rec["prompt"] or "", path, row)))
        if len(prompt) < MIN_PROMPT_CHARS:
            continue
        pid = _prompt_id(path, rec, prompt)
        for col in models:
            score = parse_correct(rec[col] or "", path, row, col)
            if score is None:
                missing += 1
                continue
            golden.append(GoldenLabel(prompt=prompt, model=canonical_model(col), score=score,
                                      source=source, prompt_id=pid))
    if n_rows == 0:
        raise DataError("CSV has a header but no rows", path)
    if missing:
        logger.debug("%s: %d empty correctness cells treated as missing", path, missing)
    return PreferenceData(golden=golden)
