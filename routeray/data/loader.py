"""``load_data_dir``: every known source under a directory laid out like ../shared/data."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from tqdm.auto import tqdm

from routeray.data.alpaca_eval import read_alpaca_eval, split_annotator_weights
from routeray.data.arena_55k import is_arena_55k_header, read_arena_55k_csv
from routeray.data.arena_battles import read_arena_battles
from routeray.data.arena_bench import read_arena_bench
from routeray.data.mmlu_pro import read_mmlu_pro
from routeray.data.models import canonical_model
from routeray.data.routerbench import read_routerbench_csv
from routeray.data.routerdc import read_routerdc
from routeray.data.schema import PreferenceData
from routeray.errors import DataError

logger = logging.getLogger(__name__)

KNOWN_SOURCES = ("alpaca_eval", "arena_bench", "arena_battles", "routerbench", "mmlu_pro", "routerdc", "arena_55k")
_NEVER_READ = ("eval_sample", "unlabeled")  # evaluation data and unlabeled prompts are not training data
# AlpacaEval entries built to game the judge, not to answer: the "NullModel" (its generator is named
# "example": one constant adversarial reply that wins ~80 % of the time) and "gpt4_gamed". Their
# judgments say nothing about which model answers a prompt better.
DEFAULT_EXCLUDED_MODELS = frozenset({"example", "NullModel", "gpt4_gamed"})


def _wanted(name: str, sources: list[str] | None) -> bool:
    if sources is None:
        return True
    return any(name == s or name.startswith(s.rstrip("/") + "/") or s.startswith(name + "/") for s in sources)


def _keep(source: str, sources: list[str] | None) -> bool:
    return sources is None or any(source == s or source.startswith(s.rstrip("/") + "/") for s in sources)


def _arena_55k_files(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*.csv")):
        rel = path.relative_to(root).parts
        if rel[0] in _NEVER_READ or "routerbench" in rel:
            continue
        with path.open(encoding="utf-8", newline="") as fh:
            header = next(csv.reader(fh), [])
        if is_arena_55k_header(header):
            found.append(path)
    return found


def _tasks(root: Path, sources: list[str] | None) -> list[tuple[str, Path]]:
    tasks: list[tuple[str, Path]] = []
    if _wanted("alpaca_eval", sources):
        tasks += [("alpaca_eval", p) for p in sorted(root.glob("preference/alpaca_eval/**/annotations.json"))]
    if _wanted("arena_bench", sources) and (root / "preference/arena_bench_v1/question.jsonl").is_file():
        tasks.append(("arena_bench", root / "preference/arena_bench_v1"))
    if _wanted("routerbench", sources):
        tasks += [("routerbench", p) for p in sorted(root.glob("golden/routerbench/*.csv"))
                  if p.stem.endswith(("_train", "_test"))]
    if _wanted("mmlu_pro", sources):
        tasks += [("mmlu_pro", p) for p in sorted(root.glob("golden/mmlu_pro/*.jsonl"))]
    if _wanted("arena_battles", sources):
        tasks += [("arena_battles", p) for p in sorted(root.glob("preference/arena_battles*/question_original.jsonl"))]
    if _wanted("routerdc", sources):
        tasks += [("routerdc", p) for p in sorted(root.glob("golden/routerdc/*.json"))]
    if _wanted("arena_55k", sources):
        tasks += [("arena_55k", p) for p in _arena_55k_files(root)]
    return tasks


_READERS = {
    "alpaca_eval": read_alpaca_eval,
    "arena_bench": read_arena_bench,
    "routerbench": read_routerbench_csv,
    "mmlu_pro": read_mmlu_pro,
    "arena_55k": read_arena_55k_csv,
    "arena_battles": read_arena_battles,
    "routerdc": read_routerdc,
}


def load_data_dir(path: str | Path, sources: list[str] | None = None,
                  exclude_models: Iterable[str] = DEFAULT_EXCLUDED_MODELS) -> PreferenceData:
    """Read every known source under ``path`` (never ``eval_sample/`` or ``unlabeled/``).

    ``sources`` keeps only those sources or prefixes (``["routerbench", "mmlu_pro/math"]``).
    AlpacaEval judgments of one (prompt, pair) by several annotators share a total weight of 1.
    Records involving ``exclude_models`` (by default the judge-gaming AlpacaEval entries) are dropped.
    """
    excluded = {canonical_model(m) for m in exclude_models}
    root = Path(path)
    if not root.is_dir():
        raise DataError("data directory not found", root)
    tasks = _tasks(root, sources)
    if not tasks:
        raise DataError(f"no known data source found (looked for {', '.join(KNOWN_SOURCES)})", root)
    start = time.perf_counter()
    data = PreferenceData()
    for kind, target in tqdm(tasks, desc="loading data", unit="file", disable=len(tasks) < 5):
        data.extend(_READERS[kind](target))
    judgments = [j for j in data.judgments if _keep(j.source, sources)
                 and j.model_a not in excluded and j.model_b not in excluded]
    alpaca = split_annotator_weights([j for j in judgments if j.source == "alpaca_eval"])
    data.judgments = alpaca + [j for j in judgments if j.source != "alpaca_eval"]
    data.golden = [g for g in data.golden if _keep(g.source, sources) and g.model not in excluded]
    if sources is not None:
        found = data.sources
        unmatched = [s for s in sources if not any(_keep(f, [s]) for f in found)]
        if unmatched:
            raise DataError(f"no records for source(s) {unmatched}; found {found}", root)
    logger.info("loaded %d judgments and %d golden labels from %d files under %s in %.1fs",
                len(data.judgments), len(data.golden), len(tasks), root, time.perf_counter() - start)
    return data
