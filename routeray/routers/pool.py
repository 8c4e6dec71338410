"""Routing among any number of priced models (a *pool*): per-model predicted quality and the decision rule.

Routers that learn each model's own correctness (``mf``, ``bert`` with its per-model head) implement
:class:`PoolScoring`: ``model_quality(prompts, models)`` is an ``(n_prompts, N)`` matrix of predicted
P(model answers correctly). Pool models reach a trained model through the router's aliases; a model
neither known nor aliased is an :class:`~routeray.errors.UnknownModelError` naming the known models.

**The decision rule** (``rule="cost"``, the default): quality minus λ·cost. With the pool's prices scaled
to ``ĉ ∈ [0, 1]`` (cheapest 0, priciest 1), a prompt goes to ``argmax_m q_m − λ·ĉ_m`` (ties to the pricier
model), with ``λ = 2·threshold − 1``. On two models that *is* the two-tier rule — ``q_strong − q_weak ≥
2·threshold − 1`` is ``(1 + p_strong − p_weak) / 2 ≥ threshold`` — so ``router-mf-0.6`` means the same on a
pair and on a pool; on a pool a pricier model must earn its price gap: at threshold 1 it needs a predicted
gain of its whole scaled premium over every cheaper model. With calibrated P(correct) this rule is the
Lagrangian of "most expected quality for a spend", so any budget is met by the best traffic split.

The alternative (``rule="threshold"``): in price order, the cheapest model ``m`` that no pricier model
``k`` beats by the two-tier rule, ``(1 + q_k − q_m) / 2 < threshold`` for every pricier ``k``; above 0.5
that is "the cheapest model whose predicted quality is within ``2·threshold − 1`` of the best predicted".
It uses only the price *order*, and that is its weakness: a 0.01 gain buys a 0.3 ¢ model and a 5 ¢ model
alike. Measured on a validation split of RouterBench's training files (11 models, recorded costs, mf
trained without those prompts; ``bench/pool_rules.py``, docs/evaluation.md "Routing among N models"): area
over the cost axis 0.873 for the cost rule against 0.828 for the threshold rule (the best two-model
router: 0.838), and 95 % of the best model's quality at 30.6 % of its cost against 50.1 %. Hence the default.

``pool_score(quality, costs)`` is the one number per prompt that a threshold compares against for "a model
other than the cheapest" (it goes there exactly when ``pool_score ≥ threshold``): for the cost rule
``(1 + λ*) / 2`` with ``λ* = max_k (q_k − q_cheapest) / ĉ_k``, clipped to [−1, 2] (which changes no
decision for thresholds in [0, 1]); for the threshold rule ``(1 + max_{k ≠ cheapest} q_k − q_cheapest) / 2``.
Percentage routing (``router-mf-30%``: 30 % of traffic to models other than the cheapest) takes its
quantile, as the two-tier path does with P(strong wins); on two models it is P(strong wins) itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from routeray.errors import DataError, RouterayError, UnknownModelError


class Resolver(Protocol):
    """What pool resolution needs of :class:`routeray.routers.mf.ModelResolver` (a protocol: no import cycle)."""

    known: list[str]
    aliases: dict[str, str]

    def find(self, name: str) -> str | None: ...


RULES = ("threshold", "cost")
DEFAULT_RULE = "cost"


def resolve_pool(resolver: Resolver, models: Sequence[str], router: str = "router") -> list[int]:
    """Indices of ``models`` among the router's known models, through its aliases. An unknown model, an
    alias to an unknown model, or an empty pool is a clear error that names the known models."""
    if not models:
        raise RouterayError("the model pool is empty")
    out = []
    for name in models:
        found = resolver.find(name)
        if found is None:
            target = resolver.aliases.get(name)
            known = ", ".join(resolver.known)
            if target is not None:
                raise UnknownModelError(f"model alias {name!r} -> {target!r}: {router} was not trained on "
                                        f"{target!r}; known models: {known}")
            raise UnknownModelError(f"{router} was not trained on model {name!r} and it has no alias; map it "
                                    f"to a known model with model_aliases={{{name!r}: <model>}} (known: {known})")
        out.append(resolver.known.index(found))
    return out


class PoolScoring:
    """Mixin for routers that predict each model's own correctness. Implementers set ``self.resolver`` (a
    :class:`~routeray.routers.mf.ModelResolver` over the trained models and the aliases) and implement
    :meth:`_quality`; :meth:`pool_error` may return why this instance cannot score a pool."""

    resolver: Resolver
    name: ClassVar[str]

    def pool_error(self) -> str | None:
        """None when this router can score a pool; otherwise why not (e.g. an artifact with a pair head)."""
        return None

    @property
    def known_models(self) -> list[str]:
        """The models this router was trained on (pool models map to these through aliases)."""
        return list(self.resolver.known)

    def model_columns(self, models: Sequence[str]) -> list[int]:
        """The trained-model index of each pool model (strict: see :func:`resolve_pool`)."""
        reason = self.pool_error()
        if reason:
            raise RouterayError(f"{self.name} cannot score a model pool: {reason}")
        return resolve_pool(self.resolver, models, router=f"the {self.name} router")

    def model_quality(self, prompts: Sequence[str], models: Sequence[str]) -> np.ndarray:
        """``(len(prompts), len(models))`` predicted P(correct) of each model on each prompt, in [0, 1]."""
        cols = self.model_columns(models)
        if len(prompts) == 0:
            return np.zeros((0, len(cols)), dtype=np.float64)
        return np.asarray(self._quality(list(prompts), cols), dtype=np.float64)

    def _quality(self, prompts: list[str], columns: list[int]) -> np.ndarray:
        """``(len(prompts), len(columns))`` P(correct) of the trained models at ``columns``."""
        raise NotImplementedError


def supports_pool(router: object) -> bool:
    """True when ``router`` can score a model pool."""
    return isinstance(router, PoolScoring) and router.pool_error() is None


def price_order(costs: Sequence[float] | np.ndarray) -> np.ndarray:
    """Pool indices from cheapest to priciest (equal prices keep the pool's order)."""
    return np.argsort(np.asarray(costs, dtype=np.float64), kind="stable")


def _checked(quality: np.ndarray, costs: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(costs, dtype=np.float64).reshape(-1)
    if q.ndim != 2 or q.shape[1] != c.size or c.size == 0:
        raise ValueError(f"quality must be (n_prompts, {c.size}) for {c.size} model costs, got {q.shape}")
    if not np.isfinite(c).all() or (c < 0).any():
        raise ValueError("model costs must be finite and not negative")
    return q, c


def switch_points(quality: np.ndarray, costs: Sequence[float] | np.ndarray) -> np.ndarray:
    """``(n, N)`` in price order: entry ``j`` is the threshold at or above which the ``j``-th cheapest model
    is acceptable under the threshold rule, ``(1 + max_{pricier k} q_k − q_j) / 2`` (−inf for the priciest).
    The rule picks the first acceptable model, so a prompt's decision changes only at these values."""
    q, c = _checked(quality, costs)
    qo = q[:, price_order(c)]
    # max over strictly pricier models: reversed running max, shifted by one
    suffix = np.maximum.accumulate(qo[:, ::-1], axis=1)[:, ::-1]
    pricier = np.concatenate([suffix[:, 1:], np.full((q.shape[0], 1), -np.inf)], axis=1)
    return (1.0 + pricier - qo) / 2.0


def choose(quality: np.ndarray, costs: Sequence[float] | np.ndarray, threshold: float,
           rule: str = DEFAULT_RULE) -> np.ndarray:
    """Index into the pool of the model each prompt goes to (see the module docstring for the rules)."""
    if rule == "cost":
        return choose_by_cost(quality, costs, 2.0 * float(threshold) - 1.0)
    if rule != "threshold":
        raise RouterayError(f"unknown pool decision rule {rule!r}; known: {', '.join(RULES)}")
    q, c = _checked(quality, costs)
    ok = switch_points(q, c) < float(threshold)
    ok[:, -1] = True  # the priciest model is always acceptable
    return price_order(c)[np.argmax(ok, axis=1)]


def _scaled(costs: np.ndarray) -> np.ndarray:
    span = float(costs.max() - costs.min())
    return (costs - costs.min()) / span if span > 0 else np.zeros_like(costs)


def choose_by_cost(quality: np.ndarray, costs: Sequence[float] | np.ndarray, lam: float) -> np.ndarray:
    """``argmax_m q_m − lam · ĉ_m`` with ``ĉ`` the costs scaled to [0, 1] across the pool; ties go to the
    pricier model (as the two-tier rule sends a score equal to the threshold to the strong model)."""
    q, c = _checked(quality, costs)
    order = price_order(c)[::-1]  # priciest first: argmax takes the first of tied maxima
    utility = q[:, order] - float(lam) * _scaled(c)[order]
    return order[np.argmax(utility >= utility.max(axis=1, keepdims=True) - 1e-12, axis=1)]


def pool_score(quality: np.ndarray, costs: Sequence[float] | np.ndarray, rule: str = DEFAULT_RULE) -> np.ndarray:
    """Per prompt, the value at or above which a threshold sends it to a model other than the cheapest (see
    the module docstring); with two models, P(strong wins) ``(1 + q_strong − q_weak) / 2``."""
    q, c = _checked(quality, costs)
    if c.size == 1:
        return np.zeros(q.shape[0])
    if rule == "threshold":
        return switch_points(q, c)[:, 0]
    if rule != "cost":
        raise RouterayError(f"unknown pool decision rule {rule!r}; known: {', '.join(RULES)}")
    order = price_order(c)
    cheapest, others = order[0], order[1:]
    gain = q[:, others] - q[:, [cheapest]]
    premium = _scaled(c)[others]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(premium > 0, gain / np.where(premium > 0, premium, 1.0),
                         np.where(gain >= 0, np.inf, -np.inf))
    return np.clip((1.0 + ratio.max(axis=1)) / 2.0, -1.0, 2.0)


CHARS_PER_TOKEN = 4.0  # the usual rule of thumb for English text with BPE tokenizers


def call_costs(prompt_chars: Sequence[int] | np.ndarray, prices: Sequence[tuple[float, float]],
               output_tokens: float) -> np.ndarray:
    """``(n, N)`` US$ per call: input tokens estimated from each prompt's characters, ``output_tokens`` per
    answer, at each model's ``(input, output)`` US$ per million tokens."""
    tokens_in = np.asarray(prompt_chars, dtype=np.float64).reshape(-1, 1) / CHARS_PER_TOKEN
    p = np.asarray(prices, dtype=np.float64).reshape(-1, 2)
    return (tokens_in * p[:, 0][None, :] + float(output_tokens) * p[:, 1][None, :]) / 1e6


def threshold_for_spend(quality: np.ndarray, costs: np.ndarray, usd_per_1k: float, rule: str = DEFAULT_RULE,
                        prices: np.ndarray | None = None, iterations: int = 60) -> tuple[float, float]:
    """The lowest threshold in [0, 1] (the most quality) whose decisions cost at most ``usd_per_1k`` US$ per
    1,000 of these prompts, and that spend. ``costs`` is ``(n, N)`` per call; the rule weighs ``prices``
    (default: each model's mean cost here). Spend never rises with the threshold, so a bisection finds it;
    if even threshold 1 spends more, returns 1 and its (higher) spend."""
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(costs, dtype=np.float64)
    price = c.mean(axis=0) if prices is None else np.asarray(prices, dtype=np.float64)
    rows = np.arange(q.shape[0])

    def spend(t: float) -> float:
        return float(1000 * c[rows, choose(q, price, t, rule=rule)].mean())

    if spend(0.0) <= usd_per_1k:
        return 0.0, spend(0.0)
    if spend(1.0) > usd_per_1k:
        return 1.0, spend(1.0)
    lo, hi = 0.0, 1.0  # spend(lo) > target >= spend(hi)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if spend(mid) <= usd_per_1k:
            hi = mid
        else:
            lo = mid
    return hi, spend(hi)


def read_prices(path: str | Path) -> dict[str, tuple[float, float]]:
    """``{model: (US$ per million input tokens, per million output tokens)}`` from a JSON or YAML mapping
    ``model: [in, out]`` or ``model: {input: .., output: ..}``."""
    p = Path(path)
    if not p.is_file():
        raise DataError("prices file not found", p)
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(p.read_text())
        else:
            raw = json.loads(p.read_text())
    except Exception as exc:  # json and yaml raise different types
        raise DataError(f"cannot parse prices: {exc}", p) from exc
    if not isinstance(raw, dict) or not raw:
        raise DataError("prices must be a non-empty mapping of model -> [input, output] US$ per million tokens", p)
    out = {}
    for model, value in raw.items():
        pair = [value.get("input"), value.get("output")] if isinstance(value, dict) else value
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, int | float) for v in pair)
                and min(pair) >= 0):
            raise DataError(f"price of {model!r} must be [input, output], two numbers >= 0; got {value!r}", p)
        out[str(model)] = (float(pair[0]), float(pair[1]))
    return out


def parse_aliases(items: Sequence[str]) -> dict[str, str]:
    """``MODEL=TRAINED`` pairs (``--model-alias``) as a mapping."""
    out = {}
    for item in items:
        model, sep, trained = item.partition("=")
        if not sep or not model.strip() or not trained.strip():
            raise RouterayError(f"--model-alias takes MODEL=TRAINED, got {item!r}")
        out[model.strip()] = trained.strip()
    return out


def as_pool_scorer(router: object, label: str) -> PoolScoring:
    """``router`` as a pool scorer, or a clear error saying why it is not one."""
    if not isinstance(router, PoolScoring):
        from routeray.routers.guard import GuardedRouter

        if isinstance(router, GuardedRouter):
            raise RouterayError(f"router {router.inner.name!r} has the rerouting guard on, which applies to two-tier scores "
                                "only; pool routing needs it off (drop guard from the router's overrides)")
        raise RouterayError(f"router {label!r} does not predict each model's quality; pool routing needs one "
                            "that does (mf, or bert with its per-model head)")
    reason = router.pool_error()
    if reason:
        raise RouterayError(f"router {label!r} cannot score a model pool: {reason}")
    return router

