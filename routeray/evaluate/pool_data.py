"""Benchmarks for routing among N models: every pool model's quality and cost on every prompt.

A :class:`PoolBenchmark` holds an ``(n_prompts, N)`` quality matrix and an ``(n_prompts, N)`` matrix of US$
per call. Where the data records what each call cost (RouterBench's ``<model>|total_cost``) that is used;
otherwise the cost comes from prices per million tokens (``--prices``), with input tokens estimated from the
prompt and an assumed answer length, as :mod:`routeray.evaluate.cost` does for the two-model evaluation.

Readers: RouterBench CSVs (11 models, recorded costs), MMLU-Pro result files (``<model>.jsonl``), RouterDC's
JSON lists (``{question, scores: {model: pass rate}}``) and any folder :func:`routeray.data.load_data_dir`
reads. Several files are concatenated (e.g. RouterBench's three ``*_test.csv``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routeray.data.schema import GoldenLabel
from routeray.errors import DataError, RouterayError
from routeray.evaluate.cost import ASSUMED_OUTPUT_TOKENS, CHARS_PER_TOKEN
from routeray.routers.pool import call_costs

log = logging.getLogger(__name__)


@dataclass
class PoolBenchmark:
    """Prompts, and each pool model's quality and cost on each; column ``j`` is ``models[j]`` everywhere."""

    name: str
    models: list[str]
    prompts: list[str]
    quality: np.ndarray  # (n, N)
    cost: np.ndarray  # (n, N) US$ per call
    cost_source: str
    quality_unit: str = "score (0-1)"
    ids: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    n_incomplete: int = 0  # prompts dropped because a pool model had no label or cost for them

    def __post_init__(self) -> None:
        if not self.ids:
            self.ids = [str(i) for i in range(len(self.prompts))]
        shape = (len(self.prompts), len(self.models))
        if self.quality.shape != shape or self.cost.shape != shape or len(self.ids) != shape[0]:
            raise ValueError(f"pool benchmark arrays do not match {shape}")

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, keep: np.ndarray) -> PoolBenchmark:
        keep = np.asarray(keep, dtype=bool)
        idx = np.flatnonzero(keep)
        return PoolBenchmark(self.name, list(self.models), [self.prompts[i] for i in idx], self.quality[keep],
                             self.cost[keep], self.cost_source, self.quality_unit, [self.ids[i] for i in idx],
                             list(self.sources), self.n_incomplete)


def _read(path: Path) -> tuple[list[GoldenLabel], dict[str, dict[str, float]]]:
    """Golden labels of one file or folder, and the recorded cost per call where the data has one."""
    from routeray import data as rdata
    from routeray.data.routerbench import read_routerbench_costs

    if path.is_file() and path.suffix == ".csv":
        with path.open(encoding="utf-8") as fh:
            header = fh.readline()
        if "|total_cost" not in header:
            raise DataError("a pool benchmark CSV must be RouterBench's (with <model>|total_cost columns)", path)
        return rdata.read_routerbench_csv(path).golden, read_routerbench_costs(path)
    if path.is_file() and path.suffix == ".json":
        return rdata.read_routerdc(path).golden, {}
    if path.is_file() and path.suffix == ".jsonl":
        return rdata.read_mmlu_pro(path).golden, {}
    if path.is_dir() and any(path.glob("*.jsonl")) and not any(p.is_dir() for p in path.iterdir()):
        return [g for f in sorted(path.glob("*.jsonl")) for g in rdata.read_mmlu_pro(f).golden], {}
    if path.is_dir():
        return rdata.load_data_dir(path).golden, {}
    raise DataError("expected a RouterBench CSV, a RouterDC JSON, MMLU-Pro .jsonl file(s) or a data folder", path)


def load_pool(paths: Sequence[str | Path], models: Sequence[str] | None = None,
              prices: Mapping[str, tuple[float, float]] | None = None, name: str = "pool",
              output_tokens: float = ASSUMED_OUTPUT_TOKENS) -> PoolBenchmark:
    """Read golden labels (and recorded costs) from ``paths`` for the pool ``models`` (default: every model
    in the data). Prompts lacking a label or cost for a pool model are dropped and counted.

    Costs: ``prices`` (per million tokens) when given, else the cost per call the data records.
    """
    from routeray.data.models import canonical_model

    labels: list[GoldenLabel] = []
    recorded: dict[str, dict[str, float]] = {}
    for p in paths:
        got, costs = _read(Path(p))
        labels += got
        recorded.update(costs)
    if not labels:
        raise DataError(f"no golden labels in {', '.join(str(p) for p in paths)}")
    rows: dict[str, dict[str, list[float]]] = {}
    text: dict[str, str] = {}
    for g in labels:
        key = g.prompt_id or g.prompt
        text.setdefault(key, g.prompt)
        rows.setdefault(key, {}).setdefault(g.model, []).append(g.score)
    present = sorted({m for r in rows.values() for m in r})
    if models is None:
        pool = present
        if len(pool) < 2:
            raise DataError(f"a pool needs two models or more; the data labels only {', '.join(present)}")
    else:
        pool = [canonical_model(m) for m in models]
        missing = [m for m in pool if m not in present]
        if missing:
            raise DataError(f"no labels for model(s) {', '.join(missing)}; models in the data: {', '.join(present)}")
        if len(set(pool)) != len(pool):
            raise RouterayError(f"the pool names a model twice: {', '.join(pool)}")
    use_recorded = prices is None
    if use_recorded and not recorded:
        raise RouterayError("this data records no cost per call: give prices per million tokens (--prices) for "
                            f"{', '.join(pool)}")
    canon_prices = {canonical_model(k): v for k, v in (prices or {}).items()}
    lacking = [m for m in pool if not use_recorded and m not in canon_prices]
    if lacking:
        raise RouterayError(f"no price for pool model(s) {', '.join(lacking)} (--prices)")
    keep = [k for k in rows if all(m in rows[k] for m in pool)
            and (not use_recorded or all(m in recorded.get(k, {}) for m in pool))]
    if not keep:
        raise DataError(f"no prompt has labels{' and recorded costs' if use_recorded else ''} for every pool "
                        f"model ({', '.join(pool)}); name a smaller pool with --models")
    prompts = [text[k] for k in keep]
    quality = np.asarray([[float(np.mean(rows[k][m])) for m in pool] for k in keep])
    if use_recorded:
        cost = np.asarray([[recorded[k][m] for m in pool] for k in keep])
        source = "recorded cost per call in the data"
    else:
        cost = _priced(prompts, pool, canon_prices, output_tokens)
        source = (f"prices per million tokens; input at {CHARS_PER_TOKEN:.0f} characters per token, "
                  f"{output_tokens:.0f} output tokens per answer assumed")
    bench = PoolBenchmark(name, pool, prompts, quality, cost, source, ids=keep,
                          sources=[str(p) for p in paths], n_incomplete=len(rows) - len(keep))
    log.info("%s: %d prompts x %d models (%d dropped for a missing label or cost); costs: %s", name, len(bench),
             len(pool), bench.n_incomplete, source)
    return bench


def _priced(prompts: Iterable[str], models: list[str], prices: Mapping[str, tuple[float, float]],
            output_tokens: float) -> np.ndarray:
    return call_costs([len(p) for p in prompts], [prices[m] for m in models], output_tokens)


def describe(bench: PoolBenchmark) -> dict[str, Any]:
    """Each model's mean quality and US$ per 1,000 prompts."""
    return {m: {"quality": float(bench.quality[:, j].mean()), "usd_per_1k": float(1000 * bench.cost[:, j].mean())}
            for j, m in enumerate(bench.models)}
