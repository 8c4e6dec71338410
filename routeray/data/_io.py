"""Low-level readers shared by the importers: JSON, JSONL and CSV with errors that name file and row."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from routeray.errors import DataError

_SURROGATE = re.compile("[\ud800-\udfff]")
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # arena-55k responses exceed the 128 KiB default


def require_file(path: Path) -> None:
    """Fail with a DataError if ``path`` is missing or empty."""
    if not path.is_file():
        raise DataError("file not found", path)
    if path.stat().st_size == 0:
        raise DataError("file is empty", path)


def read_json(path: Path) -> Any:
    """Parse a whole JSON file."""
    require_file(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", path) from exc


def iter_jsonl(path: Path, allow_empty: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for each non-blank line of a JSONL file (an empty file is an
    error unless ``allow_empty``)."""
    if not (allow_empty and path.is_file()):
        require_file(path)
    with path.open(encoding="utf-8") as fh:
        for lineno, obj in json_lines(fh, path):
            if not isinstance(obj, dict):
                raise DataError(f"expected a JSON object, got {type(obj).__name__}", path, lineno)
            yield lineno, obj


def json_lines(lines: Iterable[str], path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (1-based line number, JSON value) for each non-blank line; a bad line is a :class:`DataError`
    naming ``path`` and the line."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"malformed JSON: {exc.msg}", path, lineno) from exc


def open_csv(path: Path, required: list[str]) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """Header and an iterator of (data row number, row dict); checks ``required`` columns exist.

    Row numbers count data rows from 1 (the header is row 0), so they match a spreadsheet's line - 1.
    """
    require_file(path)
    fh = path.open(encoding="utf-8", newline="")
    reader = csv.DictReader(fh)
    header = reader.fieldnames
    if not header:
        fh.close()
        raise DataError("CSV has no header row", path)
    missing = [c for c in required if c not in header]
    if missing:
        fh.close()
        raise DataError(f"missing column(s) {missing}; found {list(header)}", path, 0)

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        with fh:
            try:
                yield from enumerate(reader, start=1)
            except csv.Error as exc:
                raise DataError(f"malformed CSV: {exc}", path, reader.line_num) from exc

    return list(header), rows()


def require_keys(obj: dict[str, Any], keys: tuple[str, ...], path: Path, row: int) -> None:
    """Fail if a JSON record lacks one of ``keys``."""
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DataError(f"missing field(s) {missing}", path, row)


@lru_cache(maxsize=1 << 16)
def prompt_hash(prompt: str) -> str:
    """A short stable id for a prompt text (for sources without their own ids)."""
    return hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:12]


def clean_text(text: str) -> str:
    """Strip, and replace lone UTF-16 surrogates (``"\\ud83d"`` escapes in scraped chat data) with U+FFFD:
    they cannot be encoded as UTF-8, so tokenizers, SQLite caches and hashes would fail on them later."""
    text = text.strip()
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)
