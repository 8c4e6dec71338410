"""Benchmarks in RouteLLM's ``routellm/evals`` layout, and any set of golden labels.

A :class:`Benchmark` is the prompts a router sees plus what the strong and the weak model score on each:

- ``mmlu``: every ``mmlu/responses/mmlu_*.csv``; columns ``prompt`` and one True/False column per model;
  quality = accuracy (0–1).
- ``gsm8k``: ``gsm8k/gsm8k_responses.csv``, same columns (plus ``<model>_response``); quality = accuracy.
- ``mt-bench``: ``mt_bench/question.jsonl`` and ``mt_bench/judgements.jsonl``; the router sees the first
  turn; quality = the mean GPT-4 grade (1–10) of the routed model over both turns.
- golden labels (:func:`from_golden_labels`): one row per prompt and model, e.g. RouterBench test CSVs.

``contaminated_prompts.jsonl`` beside a benchmark's files (RouteLLM's format: ``{"eval_prompt": …}``)
lists prompts to drop before anything is scored.
"""

from __future__ import annotations

import csv
import logging
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routeray.data._io import iter_jsonl
from routeray.data.models import DEFAULT_STRONG, DEFAULT_WEAK, canonical_model
from routeray.data.schema import GoldenLabel
from routeray.errors import DataError

log = logging.getLogger(__name__)

BENCHMARKS = ("mmlu", "gsm8k", "mt-bench")
CONTAMINATED_FILE = "contaminated_prompts.jsonl"
_TRUE = {"true", "1", "1.0", "yes"}
_FALSE = {"false", "0", "0.0", "no"}

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # model responses can be long


@dataclass
class Benchmark:
    """Prompts and per-prompt quality of the two models; index ``i`` is the same prompt everywhere."""

    name: str
    strong_model: str
    weak_model: str
    prompts: list[str]
    strong_quality: np.ndarray
    weak_quality: np.ndarray
    quality_unit: str
    ids: list[str] = field(default_factory=list)
    # every text of an item (both MT-Bench turns), for matching contamination lists
    texts: list[list[str]] = field(default_factory=list)
    # per-prompt output lengths in characters when the data has the responses (for cost estimates)
    strong_output_chars: np.ndarray | None = None
    weak_output_chars: np.ndarray | None = None
    sources: list[str] = field(default_factory=list)
    n_listed_contaminated: int = 0

    def __post_init__(self) -> None:
        if not self.ids:
            self.ids = [str(i) for i in range(len(self.prompts))]
        if not self.texts:
            self.texts = [[p] for p in self.prompts]
        n = len(self.prompts)
        if not (len(self.strong_quality) == len(self.weak_quality) == len(self.ids) == n):
            raise ValueError("benchmark arrays have different lengths")

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def strong_score(self) -> float:
        return float(np.mean(self.strong_quality))

    @property
    def weak_score(self) -> float:
        return float(np.mean(self.weak_quality))

    def subset(self, keep: np.ndarray) -> Benchmark:
        """The benchmark restricted to the rows where ``keep`` is true."""
        keep = np.asarray(keep, dtype=bool)
        idx = np.flatnonzero(keep)

        def pick(xs: list[Any]) -> list[Any]:
            return [xs[i] for i in idx]

        def pick_arr(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[keep]

        return Benchmark(self.name, self.strong_model, self.weak_model, pick(self.prompts),
                         self.strong_quality[keep], self.weak_quality[keep], self.quality_unit,
                         pick(self.ids), pick(self.texts), pick_arr(self.strong_output_chars),
                         pick_arr(self.weak_output_chars), list(self.sources), self.n_listed_contaminated)


def load_benchmark(name: str, data_dir: str | Path, strong_model: str = DEFAULT_STRONG,
                   weak_model: str = DEFAULT_WEAK, decontaminate: bool = True) -> Benchmark:
    """Read benchmark ``name`` (``mmlu``, ``gsm8k`` or ``mt-bench``) from a RouteLLM-layout folder and
    drop the prompts its ``contaminated_prompts.jsonl`` lists (when there is one)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError("evaluation data folder not found", data_dir)
    if name == "mmlu":
        folder = data_dir / "mmlu"
        files = sorted((folder / "responses").glob("mmlu_*.csv"))
        if not files:
            raise DataError("no mmlu_*.csv files (expected RouteLLM's layout: mmlu/responses/mmlu_<subject>.csv)",
                            folder / "responses")
        bench = _from_csvs("mmlu", files, strong_model, weak_model)
    elif name == "gsm8k":
        folder = data_dir / "gsm8k"
        bench = _from_csvs("gsm8k", [folder / "gsm8k_responses.csv"], strong_model, weak_model)
    elif name == "mt-bench":
        folder = data_dir / "mt_bench"
        bench = _mt_bench(folder, strong_model, weak_model)
    else:
        raise DataError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    if decontaminate:
        bench = drop_listed(bench, folder / CONTAMINATED_FILE)
    log.info("%s: %d prompts; %s %.3f, %s %.3f", name, len(bench), strong_model, bench.strong_score,
             weak_model, bench.weak_score)
    return bench


def drop_listed(bench: Benchmark, path: Path) -> Benchmark:
    """Drop the items any of whose texts appear in a RouteLLM ``contaminated_prompts.jsonl``."""
    if not path.is_file():
        return bench
    listed = set()
    for row, obj in iter_jsonl(path, allow_empty=True):
        if "eval_prompt" not in obj:
            raise DataError("record has no 'eval_prompt'", path, row)
        listed.add(str(obj["eval_prompt"]))
    keep = np.array([not any(t in listed for t in texts) for texts in bench.texts], dtype=bool)
    out = bench.subset(keep)
    out.n_listed_contaminated = int((~keep).sum())
    log.info("%s: dropped %d prompts listed in %s", bench.name, out.n_listed_contaminated, path)
    return out


def _parse_bool(value: str | None, path: Path, row: int, column: str) -> float:
    v = (value or "").strip().lower()
    if v in _TRUE:
        return 1.0
    if v in _FALSE:
        return 0.0
    raise DataError(f"column {column!r} holds {value!r}, expected True or False", path, row)


def _from_csvs(name: str, files: list[Path], strong: str, weak: str) -> Benchmark:
    prompts: list[str] = []
    sq: list[float] = []
    wq: list[float] = []
    ids: list[str] = []
    s_chars: list[float] = []
    w_chars: list[float] = []
    has_responses = True
    for path in files:
        header, rows = _open_csv(path)
        for column in ("prompt", strong, weak):
            if column not in header:
                models = [c for c in header if c != "prompt" and not c.endswith("_response")]
                raise DataError(f"no column {column!r}; models in this file: {models}", path, 0)
        with_resp = f"{strong}_response" in header and f"{weak}_response" in header
        has_responses = has_responses and with_resp
        for row, rec in rows:
            prompt = rec.get("prompt") or ""
            if not prompt.strip():
                raise DataError("empty prompt", path, row)
            prompts.append(prompt)
            sq.append(_parse_bool(rec.get(strong), path, row, strong))
            wq.append(_parse_bool(rec.get(weak), path, row, weak))
            ids.append(f"{path.stem}:{row}")
            if with_resp:
                s_chars.append(len(rec.get(f"{strong}_response") or ""))
                w_chars.append(len(rec.get(f"{weak}_response") or ""))
    if not prompts:
        raise DataError("no rows", files[0] if len(files) == 1 else files[0].parent)
    return Benchmark(name, strong, weak, prompts, np.array(sq), np.array(wq), "accuracy", ids,
                     strong_output_chars=np.array(s_chars) if has_responses else None,
                     weak_output_chars=np.array(w_chars) if has_responses else None,
                     sources=[str(p) for p in files])


def _mt_bench(folder: Path, strong: str, weak: str) -> Benchmark:
    q_path, j_path = folder / "question.jsonl", folder / "judgements.jsonl"
    questions: dict[str, list[str]] = {}
    for row, obj in iter_jsonl(q_path, allow_empty=True):
        for key in ("question_id", "turns"):
            if key not in obj:
                raise DataError(f"record has no {key!r}", q_path, row)
        turns = obj["turns"]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise DataError("'turns' must be a non-empty list of strings", q_path, row)
        questions[str(obj["question_id"])] = turns
    grades: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row, obj in iter_jsonl(j_path, allow_empty=True):
        for key in ("question_id", "model", "score"):
            if key not in obj:
                raise DataError(f"record has no {key!r}", j_path, row)
        if obj["model"] not in (strong, weak):
            continue
        try:
            score = float(obj["score"])
        except (TypeError, ValueError) as exc:
            raise DataError(f"score {obj['score']!r} is not a number", j_path, row) from exc
        if score < 0:  # FastChat writes -1 when the judge's answer could not be parsed
            log.warning("%s, row %d: unparsed grade %s skipped", j_path, row, score)
            continue
        grades[(str(obj["question_id"]), obj["model"])].append(score)
    models_seen = {m for _, m in grades}
    for model in (strong, weak):
        if model not in models_seen:
            raise DataError(f"no judgements for model {model!r}", j_path)
    prompts, sq, wq, ids, texts = [], [], [], [], []
    missing = 0
    for qid, turns in questions.items():
        s, w = grades.get((qid, strong)), grades.get((qid, weak))
        if not s or not w:
            missing += 1
            continue
        prompts.append(turns[0])  # RouteLLM routes MT Bench on the first turn
        sq.append(float(np.mean(s)))
        wq.append(float(np.mean(w)))
        ids.append(qid)
        texts.append(list(turns))
    if missing:
        log.warning("%s: %d questions lack grades for %s or %s and are skipped", j_path, missing, strong, weak)
    if not prompts:
        raise DataError(f"no question has grades for both {strong!r} and {weak!r}", j_path)
    return Benchmark("mt-bench", strong, weak, prompts, np.array(sq), np.array(wq), "mean GPT-4 grade (1-10)",
                     ids, texts, sources=[str(q_path), str(j_path)])


def from_golden_labels(labels: Iterable[GoldenLabel], strong_model: str, weak_model: str,
                       name: str = "golden") -> Benchmark:
    """A benchmark from golden labels: the prompts both models have a result for, quality = their score.

    Model names are compared after :func:`routeray.data.models.canonical_model`, so ``mixtral-8x7b-chat`` (RouterBench) matches ``mistralai/Mixtral-8x7B-Instruct-v0.1``.
    """
    canon = canonical_model
    want = {canon(strong_model): "s", canon(weak_model): "w"}
    by_prompt: dict[str, dict[str, list[float]]] = {}
    sources: set[str] = set()
    for lab in labels:
        role = want.get(canon(lab.model))
        if role is None:
            continue
        by_prompt.setdefault(lab.prompt, {"s": [], "w": []})[role].append(float(lab.score))
        sources.add(lab.source)
    prompts, sq, wq = [], [], []
    for prompt, got in by_prompt.items():
        if got["s"] and got["w"]:
            prompts.append(prompt)
            sq.append(float(np.mean(got["s"])))
            wq.append(float(np.mean(got["w"])))
    if not prompts:
        raise DataError(f"no prompt has golden labels for both {strong_model!r} and {weak_model!r}")
    return Benchmark(name, strong_model, weak_model, prompts, np.array(sq), np.array(wq), "score (0-1)",
                     sources=sorted(sources))


def _open_csv(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    if not path.is_file():
        raise DataError("file not found", path)
    fh = path.open(encoding="utf-8", newline="")
    reader = csv.DictReader(fh)
    header = list(reader.fieldnames or [])
    if not header:
        fh.close()
        raise DataError("empty file or no header row", path)

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        with fh:
            try:
                for i, rec in enumerate(reader, start=1):
                    if None in rec:
                        raise DataError(f"{len(header) + len(rec[None])} fields, header has {len(header)}",
                                        path, i)
                    yield i, rec
            except csv.Error as exc:
                raise DataError(f"malformed CSV: {exc}", path, reader.line_num) from exc

    return header, rows()


def load_golden(path: str | Path, strong_model: str = DEFAULT_STRONG, weak_model: str = DEFAULT_WEAK,
                name: str = "golden") -> Benchmark:
    """A benchmark from golden-label data our importers read: a RouterBench CSV, a RouteLLM eval CSV,
    an arena-hard folder (``question.jsonl`` + ``model_judgment/``), a folder of MMLU-Pro result files
    (``<model>.jsonl``), or a folder laid out like ``../shared/data`` (every golden source under it)."""
    from routeray import data as rdata

    path = Path(path)
    if path.is_dir() and (path / "question.jsonl").is_file() and (path / "model_judgment").is_dir():
        labels = rdata.read_arena_bench(path).golden  # arena-hard layout: grades 1-10 scaled to 0-1
    elif path.is_dir() and any(path.glob("*.jsonl")) and not any(p.is_dir() for p in path.iterdir()):
        labels = [g for f in sorted(path.glob("*.jsonl")) for g in rdata.read_mmlu_pro(f).golden]
    elif path.is_dir():
        labels = rdata.load_data_dir(path).golden
    elif path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            header = next(csv.reader(fh), [])
        reader = rdata.read_routerbench_csv if "oracle_model_to_route_to" in header or "eval_name" in header \
            else rdata.read_routellm_eval_csv
        labels = reader(path).golden
    else:
        raise DataError("golden labels: expected a folder or a .csv file (RouterBench or RouteLLM eval)", path)
    bench = from_golden_labels(labels, strong_model, weak_model, name=name)
    bench.sources = [str(path)]
    log.info("%s: %d prompts with labels for both models from %s", name, len(bench), path)
    return bench
