"""Cost accounting: what each answer cost at the configured per-tier prices, and what it would have cost
had it gone to the strong tier.

Tokens come from the ``usage`` the backend reports; when it reports none (a streaming answer without
``stream_options.include_usage``, a server that omits it) they are estimated from text length at
:data:`CHARS_PER_TOKEN` characters per token, and counted apart as estimated. Spend is exported as
metrics (``routeray_spend_dollars_total`` by tier, ``routeray_spend_all_strong_dollars_total``) and as a
snapshot for the gateway's ``/stats`` endpoint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from routeray.config import BackendConfig, Tier
from routeray.metrics import GatewayMetrics

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4.0  # the usual rule of thumb for English text with BPE tokenizers
KINDS = ("prompt", "completion")


def estimate_tokens(chars: int) -> int:
    """Tokens in ``chars`` characters of text, estimated (at least 1 for non-empty text)."""
    return 0 if chars <= 0 else max(1, round(chars / CHARS_PER_TOKEN))


def text_chars(value: Any) -> int:
    """Characters of text in a message ``content`` (a string or a list of OpenAI content parts)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(len(p.get("text") or "") for p in value if isinstance(p, dict))
    return 0


def usage_tokens(usage: Any) -> dict[str, int] | None:
    """``{"prompt": n, "completion": m}`` from an OpenAI ``usage`` object, or None when it has none."""
    if not isinstance(usage, dict):
        return None
    out = {k: usage.get(f"{k}_tokens") for k in KINDS}
    if not all(isinstance(n, int) and n >= 0 for n in out.values()):
        return None
    return out  # type: ignore[return-value]


class SpendMeter:
    """Prices tokens per backend, records metrics, keeps running totals (thread-safe). ``backends``: every
    backend by its key, cheapest first; savings are measured against the last (the strong tier, or the
    priciest pool model)."""

    def __init__(self, backends: Mapping[Tier, BackendConfig], metrics: GatewayMetrics):
        def per_token(b: BackendConfig) -> dict[str, float]:
            return {"prompt": b.price_input_per_mtok / 1e6, "completion": b.price_output_per_mtok / 1e6}

        self.prices: dict[Tier, dict[str, float]] = {key: per_token(b) for key, b in backends.items()}
        self.reference: Tier = list(backends)[-1]
        self.metrics = metrics
        self._lock = threading.Lock()
        self._tokens = {t: dict.fromkeys(KINDS, 0) for t in backends}
        self._estimated = {t: dict.fromkeys(KINDS, 0) for t in backends}
        self._spend = dict.fromkeys(backends, 0.0)
        self._all_strong = 0.0

    def cost(self, tier: Tier, tokens: dict[str, int]) -> float:
        """Dollars for ``tokens`` at ``tier``'s prices."""
        return sum(tokens[k] * self.prices[tier][k] for k in KINDS)

    def record(self, tier: Tier, tokens: dict[str, int], estimated: bool = False) -> float:
        """Count one answer's tokens for ``tier``; returns its cost in dollars."""
        spent, if_strong = self.cost(tier, tokens), self.cost(self.reference, tokens)
        m = self.metrics
        for kind in KINDS:
            (m.tokens_estimated if estimated else m.tokens).labels(tier, kind).inc(tokens[kind])
        m.spend.labels(tier).inc(spent)
        m.spend_all_strong.inc(if_strong)
        with self._lock:
            for kind in KINDS:
                (self._estimated if estimated else self._tokens)[tier][kind] += tokens[kind]
            self._spend[tier] += spent
            self._all_strong += if_strong
        return spent

    def record_answer(self, tier: Tier, usage: Any, prompt_chars: int, completion_chars: int) -> float:
        """Count from ``usage`` when the backend reported it, else from the text lengths."""
        tokens = usage_tokens(usage)
        if tokens is not None:
            return self.record(tier, tokens)
        est = {"prompt": estimate_tokens(prompt_chars), "completion": estimate_tokens(completion_chars)}
        return self.record(tier, est, estimated=True)

    def snapshot(self) -> dict[str, Any]:
        """Totals since the replica started: tokens (reported and estimated), spend, savings, prices."""
        with self._lock:
            spend = sum(self._spend.values())
            return {
                "tokens": {t: dict(v) for t, v in self._tokens.items()},
                "tokens_estimated": {t: dict(v) for t, v in self._estimated.items()},
                "spend_usd": {**self._spend, "total": spend},
                "all_strong_usd": self._all_strong,
                "savings_usd": self._all_strong - spend,
                "prices_per_mtok_usd": {t: {k: p * 1e6 for k, p in v.items()} for t, v in self.prices.items()},
            }
