"""The routing service: one request from parsed body to answer, shared by the Serve ingress and the SDK.

It receives its scorers and backends by injection (Serve handles in the gateway, in-process routers in the
SDK), decides the tier, calls the backend (streaming or not), falls back when a tier fails, and records
every metric. Errors leave it as :class:`APIError` values.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from routeray.config import Config, Tier
from routeray.gateway.backends import BackendError, OpenAIBackend
from routeray.gateway.budgets import Budgets, Reservation
from routeray.gateway.overload import QueueFull
from routeray.gateway.protocol import APIError, ChatCompletionRequest, ModelCard, ModelList
from routeray.gateway.readiness import TierReadiness
from routeray.gateway.routing import PoolDecider, ScoreWindow, ShareTracker, Target, decide, parse_model_name
from routeray.gateway.spend import SpendMeter, text_chars
from routeray.metrics import GatewayMetrics
from routeray.routers.guard import guarded_score, views
from routeray.routers.prefilter import load_prefilter

log = logging.getLogger(__name__)
PREFILTER_HOLD_S = 0.25  # how long after the scorer's last refusal the prefilter's routes are refused too

NOT_READY_RETRY_S = 5.0  # the Retry-After of a 503 for a tier that is still starting

T = TypeVar("T")


@dataclass(frozen=True)
class Score:
    """A router's score for one prompt, with how it was computed (for metrics). With a pool, ``quality``
    holds each pool model's predicted P(correct), cheapest first, and ``value`` is unused."""

    value: float
    batch_size: int = 1
    latency_s: float = 0.0
    quality: tuple[float, ...] | None = None


# router name, prompt -> Score. The gateway awaits a Serve handle; the SDK a local router in a thread.
ScoreFn = Callable[[str, str], Awaitable[Score]]


@dataclass
class Decision:
    """Where one request goes and why; turned into response headers. ``tier`` is the backend's key: strong
    or weak, or the pool model's name."""

    tier: Tier
    router: str | None = None
    score: float | None = None
    threshold: float | None = None
    fallback: str | None = None
    overhead_s: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)
    key: str = "anonymous"  # the client key id the request is charged to
    reservation: Reservation | None = None  # what it holds against that key's budget until answered

    def headers(self) -> dict[str, str]:
        h: dict[str, str] = {"x-routeray-tier": str(self.tier)}
        if self.router:
            h["x-routeray-router"] = self.router
        if self.score is not None:
            h["x-routeray-score"] = f"{self.score:.6f}"
        if self.threshold is not None:
            h["x-routeray-threshold"] = f"{self.threshold:.6f}"
        if self.fallback:
            h["x-routeray-fallback"] = self.fallback
        return {**h, **self.extra}


class RoutingService:
    """Decides and forwards chat completions. Holds no Serve or HTTP framework objects."""

    def __init__(self, cfg: Config, score_fn: ScoreFn, backends: dict[Tier, OpenAIBackend],
                 metrics: GatewayMetrics | None = None, readiness: TierReadiness | None = None,
                 budgets: Callable[[SpendMeter, GatewayMetrics], Budgets] | None = None):
        """``readiness``: refuse (503, or fall back) a tier that has not answered yet (the gateway passes
        one; the SDK calls whatever the caller configured). ``budgets``: builds the per-key budgets from this
        service's spend meter and metrics (None: no key has a budget)."""
        self.cfg = cfg
        self.readiness = readiness
        self.score_fn = score_fn
        table = cfg.backend_table()
        self.order: list[Tier] = list(table)  # cheapest first
        self.backends = {key: backends[key] for key in self.order}
        self.metrics = metrics or GatewayMetrics()
        self.spend = SpendMeter(table, self.metrics)
        self.budgets = budgets(self.spend, self.metrics) if budgets else None
        self.routers = [r.router for r in cfg.routers]
        self.pool = PoolDecider(self.order, [cfg.call_price(b) for b in table.values()]) if cfg.pool else None
        self.tier_names: dict[str, Tier] = {backends[key].name: key for key in self.order}
        if self.pool is None:
            self.tier_names.update(strong="strong", weak="weak")
        rc = cfg.routing
        self._windows = {r: ScoreWindow(rc.percent_window, rc.percent_min_samples, seed=i)
                         for i, r in enumerate(self.routers)}
        self._shares = {r: ShareTracker(rc.share_window) for r in self.routers}
        # rerouting guards (routeray.routers.guard), applied here and not in the scorers: a prompt's views are
        # scored only when its own score would send it strong, the only case where they can change the tier
        self._guards = {r.router: spec for r in cfg.routers if (spec := cfg.router_guard(r)) is not None}
        # prefilters (routeray.routers.prefilter): a cheap estimate settles the routes far from the threshold
        self._prefilters = {r.router: load_prefilter(r.router, r.artifact, band)
                            for r in cfg.routers if (band := cfg.router_prefilter(r)) is not None}
        # while a router's scorer refuses prompts (QueueFull), the replica is overloaded: the prefilter's settled
        # routes are refused too for PREFILTER_HOLD_S after the last refusal, or they would queue up unbounded
        self._refusing: dict[str, tuple[float, QueueFull]] = {}

    # ---- models -------------------------------------------------------------------------------------
    def models(self) -> ModelList:
        """Every name a request can use: one per router (example threshold), and every backend (both tiers,
        or each pool model, cheapest first)."""
        cards = [ModelCard(id=f"router-{r}-0.5", routeray={
            "router": r, "usage": f"router-{r}-<threshold in [0,1]> or router-{r}-<percent>%"})
            for r in self.routers]
        for rank, key in enumerate(reversed(self.order) if self.pool is None else self.order):
            backend = self.backends[key]
            info: dict[str, Any] = {"tier": key, "upstream_model": backend.cfg.upstream_model,
                                    "scored_as": backend.cfg.router_model,
                                    "price_per_mtok_usd": {"input": backend.cfg.price_input_per_mtok,
                                                           "output": backend.cfg.price_output_per_mtok}}
            if self.pool is None:
                info["alias"] = key
            else:
                info.update(pool_rank=rank, call_price_usd=float(self.pool.prices[rank]))
            cards.append(ModelCard(id=backend.name, routeray=info))
        return ModelList(data=cards)

    # ---- explaining (the playground) ----------------------------------------------------------------
    async def explain(self, text: str, model: str) -> dict[str, Any]:
        """Every configured router's score for ``text`` and what ``model`` would decide now, with every
        backend's prices; nothing is sent upstream and no metric, window or budget moves. With a pool, a
        router's score is its pool score (``quality``: its predicted P(correct) per model, cheapest first)."""
        target = parse_model_name(model, self.routers, self.tier_names)
        scores: dict[str, Any] = {}
        for router in self.routers:
            try:
                s = await asyncio.wait_for(self.score_fn(router, text), self.cfg.routing.scorer_timeout_s)
                if self.pool is None:
                    scores[router] = {"score": s.value, "latency_s": s.latency_s}
                    if router in self._guards:  # the guarded score decides at every threshold
                        scores[router].update(score=await self._guarded(router, text, s.value),
                                              unguarded_score=s.value, guard=self._guards[router].describe())
                else:
                    quality = dict(zip(self.order, s.quality or (), strict=False))
                    scores[router] = {"score": self.pool.score(s.quality or ()), "quality": quality,
                                      "latency_s": s.latency_s}
            except Exception as exc:  # noqa: BLE001 - shown to the user as that router's error
                scores[router] = {"score": None, "error": f"{type(exc).__name__}: {exc}"}
        out: dict[str, Any] = {"model": model, "scores": scores, "prices_per_mtok_usd": {
            key: {"input": b.cfg.price_input_per_mtok, "output": b.cfg.price_output_per_mtok}
            for key, b in self.backends.items()},
            "tier_names": {key: b.name for key, b in self.backends.items()}, "pool": self.pool is not None}
        if not target.routed:
            return {**out, "tier": target.tier, "router": None, "threshold": None, "percent": None}
        assert target.router is not None
        name: str = target.router
        score = scores[name]["score"]
        threshold = target.threshold
        if target.strong_percent is not None:
            threshold = self._windows[name].threshold(target.strong_percent)
        tier: Tier | None
        if score is None:
            tier = self._failure_tier()
        elif threshold is None:
            tier = None  # the percentage's window is still short: a seeded draw decides
        elif self.pool is not None:
            row = list(scores[name]["quality"].values())
            tier = self.order[0] if score < threshold else self.pool.pick(row, threshold)
        else:
            tier = decide(score, threshold)
        shown = threshold if threshold is not None and math.isfinite(threshold) else None  # 0 %: never strong
        return {**out, "router": name, "score": score, "threshold": shown, "percent": target.strong_percent,
                "tier": tier}

    def shares(self) -> dict[str, Any]:
        """Each router's live strong share and the decisions it covers (the playground's chart)."""
        out = {}
        for router, tracker in self._shares.items():
            share, n = tracker.share()
            out[router] = {"strong_share": share, "decisions": n}
        return out

    # ---- deciding -----------------------------------------------------------------------------------
    async def decide(self, req: ChatCompletionRequest, started: float, key: str = "anonymous") -> Decision:
        """Parse ``model``, score when routed, pick the tier, and hold the request's cost against ``key``'s
        budget (429 :class:`~routeray.gateway.budgets.OverBudget` past it). Records decision metrics."""
        target = parse_model_name(req.model, self.routers, self.tier_names)
        if not target.routed:
            assert target.tier is not None
            decision = Decision(tier=target.tier, key=key)
            await self._admit(decision, req)
            decision.overhead_s = time.perf_counter() - started
            return decision
        decision = await self._route(target, req)
        decision.key = key
        await self._admit(decision, req)
        decision.overhead_s = time.perf_counter() - started
        m = self.metrics
        m.routing_overhead.labels(target.router).observe(decision.overhead_s)
        m.decisions.labels(target.router, decision.tier).inc()
        up = decision.tier != self.order[0]  # strong, or past the pool's cheapest model
        m.strong_share.labels(target.router).set(self._shares[target.router].add(up))  # type: ignore[index]
        return decision

    async def _admit(self, decision: Decision, req: ChatCompletionRequest) -> None:
        if self.budgets is None:
            return
        tier, decision.reservation = await self.budgets.admit(decision.key, decision.tier, req, self.order[0])
        if tier != decision.tier:
            decision.tier = tier
            decision.extra["x-routeray-budget"] = "exceeded: cheapest tier"

    async def _route(self, target: Target, req: ChatCompletionRequest) -> Decision:
        router = target.router
        assert router is not None
        text = req.routing_text(self.cfg.routing.route_on)
        if self.cfg.ingress.log_prompts:
            log.debug("routing prompt with %s: %r", router, text[:200])
        if router in self._prefilters:
            settled = self._prefiltered(router, target, text)
            if settled is not None:
                return settled
        try:
            score = await asyncio.wait_for(self.score_fn(router, text), self.cfg.routing.scorer_timeout_s)
            if self.pool is not None:
                value = self.pool.score(score.quality or ())  # raises on a missing or malformed row
            elif not (0.0 <= score.value <= 1.0):
                raise ValueError(f"score {score.value!r} outside [0, 1]")
        except QueueFull as exc:
            if router in self._prefilters:
                self._refusing[router] = (time.monotonic() + PREFILTER_HOLD_S, exc)
            raise  # shed on purpose: the caller gets the 503, no other tier answers in the scorer's place
        except Exception as exc:  # noqa: BLE001 - any scorer failure takes the configured tier
            return self._scorer_failed(router, "scorer", exc)
        self.metrics.scoring_latency.labels(router).observe(score.latency_s)
        self.metrics.scorer_batch_size.labels(router).observe(score.batch_size)
        window = self._windows[router]
        if self.pool is not None:
            assert score.quality is not None
            if target.strong_percent is not None:
                tier, threshold = self.pool.by_percent(score.quality, window, target.strong_percent)
                self._percent_metrics(router, target.strong_percent, threshold)
            else:
                threshold = target.threshold
                tier = self.pool.pick(score.quality, threshold)  # type: ignore[arg-type]
            window.add(value)
            return Decision(tier=tier, router=router, score=value, threshold=threshold)
        value = score.value
        if target.strong_percent is not None:
            tier, threshold = window.decide(value, target.strong_percent)
            self._percent_metrics(router, target.strong_percent, threshold)
        else:
            threshold = target.threshold
            tier = decide(value, threshold)  # type: ignore[arg-type]
        if tier == "strong" and router in self._guards and threshold is not None:
            try:
                value = await self._guarded(router, text, value)
            except QueueFull:
                raise
            except Exception as exc:  # noqa: BLE001 - as any scorer failure
                return self._scorer_failed(router, "guard views scorer", exc)
            if value < threshold:
                tier = "weak"
                self.metrics.guard_demotions.labels(router).inc()
        window.add(value)
        return Decision(tier=tier, router=router, score=value, threshold=threshold)

    def _prefiltered(self, router: str, target: Target, text: str) -> Decision | None:
        """The decision on the prefilter's estimate when it lies outside the band around the threshold (for a
        percentage, the window's current threshold); None when the router's own score is needed. With the
        guard on, only weak routes are settled: the guard can lower a strong route's score, never a weak one's.
        Raises :class:`QueueFull` while the router's scorer refuses prompts (see ``_refusing``)."""
        window = self._windows[router]
        percent = target.strong_percent
        threshold = target.threshold if percent is None else window.threshold(percent)
        if threshold is None or not math.isfinite(threshold) or (percent is not None and not 0 < percent < 100):
            return None
        until, refused = self._refusing.get(router, (0.0, None))
        if refused is not None and time.monotonic() < until:
            raise refused.again()
        estimate = min(max(float(self._prefilters[router].estimate([text])[0]), 0.0), 1.0)
        strong = self._prefilters[router].settle(estimate, threshold)
        if strong is None or (strong and router in self._guards):
            return None
        tier: Tier = "strong" if strong else "weak"
        if percent is not None:
            self._percent_metrics(router, percent, threshold)
        self.metrics.prefilter_settled.labels(router, tier).inc()
        window.add(estimate)
        return Decision(tier=tier, router=router, score=estimate, threshold=threshold)

    def _scorer_failed(self, router: str, what: str, exc: Exception) -> Decision:
        """A failed scoring call: the configured scorer-failure tier, logged and counted as a fallback."""
        tier = self._failure_tier()
        log.warning("%s %s failed (%s: %s): routing to %s", what, router, type(exc).__name__, exc, tier)
        self.metrics.fallbacks.labels("scorer_error", tier).inc()
        return Decision(tier=tier, router=router, fallback="scorer_error")

    async def _guarded(self, router: str, text: str, value: float) -> float:
        """The rerouting guard's score of ``text`` whose own score is ``value``: the lower of ``value`` and its
        lowest view's score plus the margin (:func:`routeray.routers.guard.guarded_score`); the views go
        through the router's scorer like prompts, batched with other requests."""
        spec = self._guards[router]
        texts = views(text, spec)[1:]
        if not texts:
            return value
        scored = await asyncio.wait_for(asyncio.gather(*(self.score_fn(router, t) for t in texts)),
                                        self.cfg.routing.scorer_timeout_s)
        return guarded_score(value, [s.value for s in scored], spec.margin)

    def _percent_metrics(self, router: str, percent: float, threshold: float | None) -> None:
        self.metrics.strong_share_target.labels(router).set(percent / 100.0)
        if threshold is not None and threshold != float("inf"):
            self.metrics.threshold.labels(router).set(threshold)

    def _failure_tier(self) -> Tier:
        """The configured scorer-failure tier; with a pool, weak is the cheapest model and strong the priciest."""
        tier = self.cfg.routing.scorer_failure_tier
        if self.pool is None:
            return tier
        return self.order[0] if tier == "weak" else self.order[-1]

    def _order(self, tier: Tier) -> list[Tier]:
        """``tier`` then its fallbacks: the next cheaper models, nearest first (strong_fallback_to_weak), then
        the pricier ones, nearest first (weak_fallback_to_strong). With two tiers: strong -> weak, weak -> strong."""
        r = self.cfg.routing
        i = self.order.index(tier)
        cheaper = self.order[:i][::-1] if r.strong_fallback_to_weak else []
        pricier = self.order[i + 1:] if r.weak_fallback_to_strong else []
        return [tier, *cheaper, *pricier]

    async def _check_ready(self, tier: Tier) -> None:
        """Raise ``not_ready`` for a tier that has not answered yet (the weak engine still starting)."""
        if self.readiness is None or await self.readiness.check(tier):
            return
        backend = self.backends[tier]
        what = ("its engine is still starting" if backend.cfg.base_url == self.cfg.local_engine_url()
                else "its API does not answer yet")
        raise BackendError(tier, "not_ready", f"{backend.name} is not ready: {what} ({self.readiness.detail(tier)})",
                           retry_after_s=NOT_READY_RETRY_S)

    async def _fall_back(self, exc: BackendError, req: ChatCompletionRequest, decision: Decision,
                         tried: list[Tier]) -> Tier:
        """The tier to call after ``exc``: the decided tier's next fallback not tried yet, once the key's budget
        covers it (a pricier model grows the request's hold first; past the budget, 429 or, with ``over_budget:
        cheapest``, the cheapest model if it was not tried). Raises the request's error when none is left."""
        self.metrics.upstream_errors.labels(exc.tier, exc.reason).inc()
        log.warning("%s", exc)
        if exc.client_fault:
            raise APIError(f"the {exc.tier} model rejected the request: {exc.detail}", code="upstream_rejected")
        nxt = next((t for t in self._order(tried[0]) if t not in tried), None)
        if nxt is not None and self.budgets is not None and not await self.budgets.cover(
                decision.key, decision.reservation, nxt, req,
                why=f"the {exc.tier} model failed and its fallback {self.backends[nxt].name} costs more: "):
            nxt = self.order[0] if self.order[0] not in tried else None
            if nxt is not None:
                decision.extra["x-routeray-budget"] = "exceeded: cheapest tier"
        if nxt is None:
            wait = None if exc.retry_after_s is None else max(1, math.ceil(exc.retry_after_s))
            if exc.rate_limited:  # the client may retry when the upstream said it could
                raise APIError(f"{exc}", type="rate_limit_error", code=exc.reason, retry_after_s=wait)
            if exc.reason == "not_ready":
                raise APIError(f"{exc}", type="overloaded_error", code="not_ready", retry_after_s=wait)
            kind = "timeout_error" if exc.reason == "timeout" else "upstream_error"
            raise APIError(f"{exc}", type=kind, code=exc.reason)
        self.metrics.fallbacks.labels(f"{exc.tier}_error", nxt).inc()
        decision.fallback = f"{exc.tier}_error"
        decision.tier = nxt
        return nxt

    async def _first_answer(self, req: ChatCompletionRequest, decision: Decision,
                            call: Callable[[Tier], Awaitable[T]]) -> tuple[Tier, T]:
        """``call`` the decided tier, then its fallbacks, until one answers: that tier and its answer."""
        tried: list[Tier] = []
        tier = decision.tier
        while True:
            tried.append(tier)
            t0 = time.perf_counter()
            try:
                await self._check_ready(tier)
                out = await call(tier)
            except BackendError as exc:
                tier = await self._fall_back(exc, req, decision, tried)
                continue
            self.metrics.upstream_latency.labels(tier).observe(time.perf_counter() - t0)
            return tier, out

    # ---- answering ----------------------------------------------------------------------------------
    async def complete(self, req: ChatCompletionRequest, decision: Decision) -> dict[str, Any]:
        """Non-streaming answer from the decided tier, or its fallback."""
        body = req.upstream_body(model="")
        cost = 0.0
        try:
            tier, data = await self._first_answer(req, decision, lambda t: self.backends[t].complete(body))
            cost = self._count_answer(tier, req, data, decision.key)
            return data
        finally:
            await self.settle(decision, cost)

    async def settle(self, decision: Decision, cost: float) -> None:
        """Release what the request held against its key's budget, charging ``cost`` (USD) instead."""
        if self.budgets is not None:
            await self.budgets.settle(decision.reservation, cost)

    async def open_stream(self, req: ChatCompletionRequest, decision: Decision) -> AsyncIterator[str]:
        """Start a streaming answer: returns once the first chunk with output arrived (past any chunk that only
        opens the answer, such as ``{"role": "assistant", "content": ""}``), so a tier that dies before its
        first token can still fall back and a total failure is still an HTTP error; the iterator yields SSE
        lines to the end, the head (every chunk read so far) as one write."""
        body = req.upstream_body(model="")

        async def first(tier: Tier) -> tuple[AsyncGenerator[dict[str, Any], None], list[dict[str, Any]]]:
            chunks = self.backends[tier].stream(body)
            head: list[dict[str, Any]] = []
            try:
                async for chunk in chunks:
                    head.append(chunk)
                    if not _opens_only(chunk) or len(head) >= MAX_HEAD_CHUNKS:
                        break
                if not head:
                    raise BackendError(tier, "stream", "stream ended before its first chunk")
            except BaseException:
                await chunks.aclose()
                raise
            return chunks, head

        try:
            tier, (chunks, head) = await self._first_answer(req, decision, first)
        except BaseException:
            await self.settle(decision, 0.0)
            raise
        return self._sse(tier, head, chunks, req, decision)

    async def _sse(self, tier: Tier, head: list[dict[str, Any]], chunks: AsyncGenerator[dict[str, Any], None],
                   req: ChatCompletionRequest, decision: Decision) -> AsyncIterator[str]:
        usage, chars, cost = None, 0, 0.0

        def line(chunk: dict[str, Any]) -> str:
            nonlocal usage, chars
            usage = chunk.get("usage") or usage
            chars += sum(text_chars((c.get("delta") or {}).get("content")) for c in chunk.get("choices") or ()
                         if isinstance(c, dict) and isinstance(c.get("delta") or {}, dict))
            return f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"

        try:
            yield "".join(line(chunk) for chunk in head)
            async for chunk in chunks:
                yield line(chunk)
            cost = self._charge(tier, req, usage, chars, decision.key)
            yield "data: [DONE]\n\n"
        except BackendError as exc:
            # Mid-stream failure: too late to fall back; tell the client in OpenAI's in-stream error shape.
            self.metrics.upstream_errors.labels(exc.tier, exc.reason).inc()
            log.warning("%s", exc)
            err = APIError(str(exc), type="upstream_error", code=exc.reason)
            yield f"data: {json.dumps(err.to_dict())}\n\n"
        finally:
            await chunks.aclose()
            await self.settle(decision, cost)

    def _count_answer(self, tier: Tier, req: ChatCompletionRequest, data: dict[str, Any], key: str) -> float:
        """Tokens and spend of a whole answer (from its usage, else estimated from its text); its cost."""
        chars = sum(text_chars((c.get("message") or {}).get("content")) for c in data.get("choices") or ()
                    if isinstance(c, dict) and isinstance(c.get("message") or {}, dict))
        return self._charge(tier, req, data.get("usage"), chars, key)

    def _charge(self, tier: Tier, req: ChatCompletionRequest, usage: Any, chars: int, key: str) -> float:
        cost = self.spend.record_answer(tier, usage, _prompt_chars(req), chars)
        self.metrics.key_spend.labels(key).inc(cost)
        return cost

    async def aclose(self) -> None:
        for backend in self.backends.values():
            await backend.aclose()
        if self.budgets is not None:
            await self.budgets.aclose()


def _prompt_chars(req: ChatCompletionRequest) -> int:
    return sum(len(m.text()) for m in req.messages)


MAX_HEAD_CHUNKS = 8  # opening chunks read before the response starts, at most (then it starts anyway)


def _opens_only(chunk: dict[str, Any]) -> bool:
    """True for a stream chunk that only opens the answer (a role, empty content): no token, no finish, no
    usage. The response starts after the first chunk that is more, so the first write carries a token."""
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or chunk.get("usage"):
        return False
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict) or choice.get("finish_reason") is not None:
            return False
        if any(value not in (None, "", []) for key, value in delta.items() if key != "role"):
            return False
    return True
