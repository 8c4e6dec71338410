"""RouteLLM evaluation CSVs (``routellm/evals``: mmlu responses, gsm8k): per-model True/False columns."""

from __future__ import annotations

from pathlib import Path

from routeray.data._io import clean_text, open_csv, prompt_hash
from routeray.data.models import canonical_model
from routeray.data.schema import MIN_PROMPT_CHARS, GoldenLabel, PreferenceData
from routeray.errors import DataError


def _parse_bool(cell: str, path: Path, row: int, column: str) -> float | None:
    value = cell.strip().lower()
    if value == "":
        return None
    if value in ("true", "1", "1.0"):
        return 1.0
    if value in ("false", "0", "0.0"):
        return 0.0
    raise DataError(f"unknown label {cell!r} in column {column!r} (expected True/False)", path, row)


def read_routellm_eval_csv(path: str | Path, source: str | None = None) -> PreferenceData:
    """Golden labels from a RouteLLM eval CSV: ``prompt`` plus one True/False column per model
    (``*_response`` columns and an unnamed index are ignored; empty cells are missing)."""
    path = Path(path)
    source = source or f"routellm_eval/{path.stem}"
    header, rows = open_csv(path, ["prompt"])
    models = [c for c in header if c and c != "prompt" and not c.endswith("_response")
              and not c.startswith("Unnamed")]
    if not models:
        raise DataError("no per-model correctness columns", path, 0)
    golden: list[GoldenLabel] = []
    n_rows = 0
    for row, rec in rows:
        n_rows += 1
        prompt = clean_text(rec["prompt"] or "")
        if len(prompt) < MIN_PROMPT_CHARS:
            continue
        for col in models:
            score = _parse_bool(rec[col] or "", path, row, col)
            if score is not None:
                golden.append(GoldenLabel(prompt=prompt, model=canonical_model(col), score=score,
                                          source=source, prompt_id=f"{source}:{prompt_hash(prompt)}"))
    if n_rows == 0:
        raise DataError("CSV has a header but no rows", path)
    return PreferenceData(golden=golden)
