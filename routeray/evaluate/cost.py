"""Cost, as the paper's Table 6 does it: how many fewer strong calls a router needs than random routing
to recover the same share of the quality gap, and what that is worth at given token prices.

Random routing recovers x % of the gap with x % strong calls (its expected curve is the diagonal), so at
CPT(x%) the saving ratio is ``x / CPT(x%)`` and the share of strong calls saved ``1 - CPT(x%) / x``.
Money uses mean tokens per prompt: input from the prompts, output from the responses when the benchmark
has them, else an assumed length; tokens are estimated at 4 characters each (OpenAI's rule of thumb).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from routeray.evaluate.benchmarks import Benchmark

CHARS_PER_TOKEN = 4.0
ASSUMED_OUTPUT_TOKENS = 256.0
TARGETS = (50, 80)


@dataclass(frozen=True)
class Prices:
    """US$ per million input and output tokens of each model."""

    strong_in: float
    strong_out: float
    weak_in: float
    weak_out: float

    def __post_init__(self) -> None:
        if min(self.strong_in, self.strong_out, self.weak_in, self.weak_out) < 0:
            raise ValueError("prices must not be negative")


def token_estimates(bench: Benchmark) -> dict[str, Any]:
    """Mean input tokens per prompt and mean output tokens of each model, with where they came from."""
    n_in = float(np.mean([sum(len(t) for t in texts) for texts in bench.texts])) / CHARS_PER_TOKEN
    if bench.strong_output_chars is not None and bench.weak_output_chars is not None:
        s_out = float(np.mean(bench.strong_output_chars)) / CHARS_PER_TOKEN
        w_out = float(np.mean(bench.weak_output_chars)) / CHARS_PER_TOKEN
        source = "responses in the data, 4 characters per token"
    else:
        s_out = w_out = ASSUMED_OUTPUT_TOKENS
        source = f"assumed {ASSUMED_OUTPUT_TOKENS:.0f} output tokens per answer; input at 4 characters per token"
    return {"input_tokens": n_in, "strong_output_tokens": s_out, "weak_output_tokens": w_out, "source": source}


def saving(cpt_pct: float | None, target_pct: float) -> dict[str, float | None]:
    """Table 6's figures for one router at CPT(target)."""
    if cpt_pct is None or not math.isfinite(cpt_pct):
        return {"cpt": None, "saving_ratio": None, "strong_calls_saved_pct": None}
    ratio = target_pct / cpt_pct if cpt_pct > 0 else math.inf
    return {"cpt": cpt_pct, "saving_ratio": None if math.isinf(ratio) else ratio,
            "strong_calls_saved_pct": 100.0 * (1.0 - cpt_pct / target_pct)}


def cost_table(bench: Benchmark, cpts: dict[str, dict[int, float | None]],
               prices: Prices | None) -> dict[str, Any]:
    """Savings against random routing for each router at CPT(50%) and CPT(80%), and, given prices, the
    money per 1,000 prompts of the router, of random routing at the same quality, and of all-strong."""
    out: dict[str, Any] = {"vs": "random routing (x% strong calls for x% PGR)", "routers": {}}
    tokens = token_estimates(bench) if prices else None
    if tokens and prices:
        per_strong = (tokens["input_tokens"] * prices.strong_in
                      + tokens["strong_output_tokens"] * prices.strong_out) / 1e6
        per_weak = (tokens["input_tokens"] * prices.weak_in + tokens["weak_output_tokens"] * prices.weak_out) / 1e6
        out["prices_per_million_tokens"] = {"strong": [prices.strong_in, prices.strong_out],
                                            "weak": [prices.weak_in, prices.weak_out]}
        out["tokens"] = tokens
        out["usd_per_1k_prompts"] = {"all_strong": 1000 * per_strong, "all_weak": 1000 * per_weak}

    def usd(pct: float) -> float:
        return 1000 * (pct / 100 * per_strong + (1 - pct / 100) * per_weak)

    for name, by_target in cpts.items():
        row: dict[str, Any] = {}
        for target in TARGETS:
            entry: dict[str, Any] = saving(by_target.get(target), float(target))
            if tokens and entry["cpt"] is not None:
                entry["usd_per_1k_prompts"] = usd(entry["cpt"])
                entry["random_usd_per_1k_prompts"] = usd(float(target))
                entry["usd_saved_per_1k_prompts"] = usd(float(target)) - usd(entry["cpt"])
            row[f"cpt{target}"] = entry
        out["routers"][name] = row
    return out
