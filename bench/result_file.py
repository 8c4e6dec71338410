"""The tail every benchmark script shares: write its result as JSON and say where."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO


def write_result(path: str | Path, result: dict[str, Any], load_before: float | None = None, note: str = "",
                 file: TextIO | None = None) -> Path:
    """Write ``result`` to ``path`` as indented JSON with a final newline (making its folder), then print
    ``wrote <path><note>``. With ``load_before`` (the 1-minute load average when the run started),
    ``result["load_average"]`` becomes ``[load_before, now]`` and the line ends with both."""
    out = Path(path)
    if load_before is not None:
        now = os.getloadavg()[0]
        result["load_average"] = [load_before, now]
        note = f" (load average {load_before:.1f} -> {now:.1f}){note}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {out}{note}", file=file or sys.stdout)
    return out
