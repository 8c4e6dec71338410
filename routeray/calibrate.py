"""Thresholds for a target share of strong-model calls: ``routeray calibrate``.

A router's scores are not probabilities you can threshold blindly: the score at which, say, 20 % of
*your* traffic goes to the strong model depends on that traffic. Calibration scores a sample of prompts
and picks the threshold whose strong share on that sample is the one asked for.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routeray.data._io import json_lines
from routeray.errors import DataError, RouterayError
from routeray.routers.base import Router, goes_strong

log = logging.getLogger(__name__)

SCORE_BATCH = 64


def _last_user_turn(messages: list[Any], path: Path, row: int) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
            return m["content"]
    raise DataError("`messages` has no user message with text content", path, row)


def prompt_from_record(record: Any, path: Path, row: int) -> str:
    """The text a router would see for one JSONL record: ``prompt``, else the last of ``turns``, else the
    last user message of ``messages``, else the first string field."""
    if isinstance(record, str):
        return record
    if not isinstance(record, dict):
        raise DataError(f"expected a JSON object or string, got {type(record).__name__}", path, row)
    if isinstance(record.get("prompt"), str):
        return record["prompt"]
    turns = record.get("turns")
    if isinstance(turns, list) and turns and isinstance(turns[-1], str):
        return turns[-1]
    if isinstance(record.get("messages"), list):
        return _last_user_turn(record["messages"], path, row)
    for value in record.values():
        if isinstance(value, str):
            return value
    raise DataError("record has no `prompt`, `turns`, `messages` or other text field", path, row)


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from JSONL (``.jsonl``/``.json``), CSV (``.csv``, a ``prompt`` column) or plain text (one
    prompt per non-empty line). Bad files raise :class:`DataError` naming the file and row."""
    p = Path(path)
    if not p.is_file():
        raise DataError("prompts file not found", p)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", p) from exc
    suffix = p.suffix.lower()
    prompts: list[str] = []
    if suffix in (".jsonl", ".json", ".ndjson"):
        prompts = [prompt_from_record(record, p, row) for row, record in json_lines(text.splitlines(), p)]
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))  # keeps newlines inside quoted cells
        if not reader.fieldnames or "prompt" not in reader.fieldnames:
            raise DataError(f"CSV has no `prompt` column (columns: {reader.fieldnames or []})", p, 1)
        for row, rec in enumerate(reader, start=2):
            value = rec.get("prompt")
            if value is None:
                raise DataError("row has fewer cells than the header", p, row)
            if value.strip():
                prompts.append(value)
    else:
        prompts = [line for line in text.splitlines() if line.strip()]
    if not prompts:
        raise DataError("no prompts found", p)
    return prompts


def threshold_for_fraction(scores: Sequence[float] | np.ndarray, strong_fraction: float) -> float:
    """The threshold at which ``round(strong_fraction · n)`` of ``scores`` are ``>=`` it (more only where
    scores tie at the threshold). Fraction 0 gives a value just above the highest score."""
    if not 0.0 <= strong_fraction <= 1.0 or math.isnan(strong_fraction):
        raise RouterayError(f"strong fraction must be between 0 and 1, got {strong_fraction}")
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if s.size == 0:
        raise RouterayError("no scores to calibrate on")
    k = int(round(strong_fraction * s.size))
    if k == 0:
        return float(np.nextafter(s[0], np.inf))
    return float(s[k - 1])


def score_all(router: Router, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
    """Scores in batches, with a progress bar when asked."""
    from tqdm.auto import tqdm

    out = np.empty(len(prompts), dtype=np.float64)
    with tqdm(total=len(prompts), desc="scoring", unit="prompt", disable=not progress) as bar:
        for start in range(0, len(prompts), SCORE_BATCH):
            chunk = list(prompts[start:start + SCORE_BATCH])
            out[start:start + len(chunk)] = router.score(chunk)
            bar.update(len(chunk))
    return out


def calibrate_threshold(router: Router, prompts: Sequence[str], strong_fraction: float) -> float:
    """Threshold that sends ``strong_fraction`` of ``prompts`` to the strong model under ``router``."""
    if not 0.0 <= strong_fraction <= 1.0:
        raise RouterayError(f"strong fraction must be between 0 and 1, got {strong_fraction}")
    if not prompts:
        raise RouterayError("no prompts to calibrate on")
    return threshold_for_fraction(score_all(router, prompts), strong_fraction)


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``routeray calibrate``: prints the threshold and what it does on the prompts."""
    from routeray.routers.guard import GuardedRouter, GuardSpec
    from routeray.routers.registry import load_router

    guard = None if getattr(args, "guard", None) is None else GuardSpec.from_text(args.guard)
    if args.models or args.spend_per_1k is not None:
        if guard is not None and guard.mode != "off":
            raise RouterayError("--guard applies to two-tier scores only; a pool is calibrated unguarded")
        return _run_pool(args)
    if not 0.0 <= args.strong_fraction <= 1.0:
        raise RouterayError(f"--strong-fraction must be between 0 and 1, got {args.strong_fraction}")
    prompts = read_prompts(args.prompts)
    router = load_router(args.router, args.artifacts, guard=guard)  # None: the router's own default
    scores = score_all(router, prompts, progress=True)
    threshold = threshold_for_fraction(scores, args.strong_fraction)
    n_strong = int(goes_strong(scores, threshold).sum())
    guarded = f" with the rerouting guard {router.spec.describe()}" if isinstance(router, GuardedRouter) else ""
    # repr-precision: the printed number, parsed back, routes exactly these prompts
    print(f"threshold for {args.router}{guarded} at {args.strong_fraction:.1%} strong calls: {threshold!r}")
    print(f"{n_strong} of {len(prompts)} prompts ({n_strong / len(prompts):.1%}) score >= {threshold!r} "
          f"and go to the strong model; use model name router-{args.router}-{threshold!r}")
    return 0


def _run_pool(args: argparse.Namespace) -> int:
    """``--models``: thresholds for a pool (share of calls past the cheapest model, or a spend per 1,000)."""
    from routeray.routers.pool import (
        as_pool_scorer,
        call_costs,
        choose,
        parse_aliases,
        pool_score,
        read_prices,
        threshold_for_spend,
    )
    from routeray.routers.registry import load_router

    if not args.models or len(args.models) < 2:
        raise RouterayError("a pool needs --models with two models or more")
    given = getattr(args, "pool_prices", None)  # from --config, in --models order
    prices = read_prices(args.prices) if args.prices else None
    if args.spend_per_1k is not None and prices is None and not given:
        raise RouterayError("--spend-per-1k needs --prices (US$ per million input and output tokens per model)")
    prompts = read_prompts(args.prompts)
    aliases = parse_aliases(args.model_alias)
    router = as_pool_scorer(load_router(args.router, args.artifacts, **({"model_aliases": aliases} if aliases else {})),
                         args.router)
    quality = np.concatenate([router.model_quality(prompts[i:i + SCORE_BATCH], args.models)
                              for i in range(0, len(prompts), SCORE_BATCH)])
    if given or prices is not None:
        lacking = [] if given else [m for m in args.models if m not in prices]  # type: ignore[operator]
        if lacking:
            raise RouterayError(f"--prices has no price for {', '.join(lacking)}")
        listed = given or [prices[m] for m in args.models]  # type: ignore[index]
        costs = call_costs([len(p) for p in prompts], listed, args.output_tokens)
    else:  # only the order matters for a share of calls: without prices, the pool is listed cheapest first
        costs = np.tile(np.arange(len(args.models), dtype=np.float64), (len(prompts), 1))
    # what the rule weighs: the gateway's price per typical call (--config), else the mean over these prompts
    price = np.asarray(getattr(args, "pool_call_prices", None) or costs.mean(axis=0))
    if args.spend_per_1k is not None:
        threshold, spent = threshold_for_spend(quality, costs, args.spend_per_1k, prices=price)
        print(f"threshold for {args.router} at US$ {args.spend_per_1k:g} per 1,000 prompts: {threshold!r} "
              f"(spends US$ {spent:.4g} per 1,000 of these prompts"
              + (", the least any threshold spends)" if spent > args.spend_per_1k else ")"))
    else:
        if not 0.0 <= args.strong_fraction <= 1.0:
            raise RouterayError(f"--strong-fraction must be between 0 and 1, got {args.strong_fraction}")
        threshold = threshold_for_fraction(pool_score(quality, price), args.strong_fraction)
        print(f"threshold for {args.router} at {args.strong_fraction:.1%} of calls past the cheapest model: "
              f"{threshold!r}")
    picked = np.bincount(choose(quality, price, threshold), minlength=len(args.models))
    names = getattr(args, "pool_names", None) or args.models
    shares = ", ".join(f"{m} {n / len(prompts):.1%}" for m, n in zip(names, picked, strict=True) if n)
    print(f"on {len(prompts)} prompts: {shares}; use model name router-{args.router}-{threshold!r}")
    return 0
