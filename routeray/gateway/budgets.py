"""Spend limits per client key: a USD budget per period, priced with the same table as the spend metrics.

Before a request is sent upstream, :meth:`Budgets.admit` *reserves* what it can cost at most at the chosen
tier's prices (prompt tokens from its text at two characters a token, completion tokens from ``max_tokens`` —
or ``reserve_completion_tokens`` when the client sets none — times ``n``), atomically against what the key has
spent and reserved this period; when the answer is in, :meth:`Budgets.settle` swaps the reservation for
the real cost. A request is admitted while spent + reserved is below the budget (while the rest is only
held by requests in flight, it waits for them), so however many requests arrive at once, what a key is
served past its budget is less than one request's cost (each reservation covers its request's cost when
``max_tokens`` is set). A request whose tier fails and falls back to a pricier model first grows its
reservation to that model's price (:meth:`Budgets.cover`, by the same rule), so fallbacks keep the bound too.

Over budget, a key gets a 429 in OpenAI's shape (``type``/``code`` ``insufficient_quota``, ``Retry-After``
until the period ends) or, with ``over_budget: cheapest``, its request goes to the cheapest backend instead
(the weak tier, or a pool's cheapest model).

Stores: :class:`MemoryBudgetStore` (the default; per replica, forgotten on restart — it says so at start)
and :class:`RedisBudgetStore` (one Lua script per admission, so every replica shares one count and a
restarted replica finds it). Reservations carry a deadline: a replica that dies with requests in flight
leaks nothing past ``reservation_ttl_s``.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from routeray.config import BudgetConfig, Tier
from routeray.gateway.protocol import APIError, ChatCompletionRequest
from routeray.gateway.spend import SpendMeter
from routeray.metrics import GatewayMetrics

log = logging.getLogger(__name__)

RESERVE_CHARS_PER_TOKEN = 2.0


def period_bounds(period: str, now: float) -> tuple[str, float]:
    """The current period's id and the time (epoch seconds, UTC) it ends; ``total`` never ends."""
    t = datetime.fromtimestamp(now, UTC)
    if period == "total":
        return "total", math.inf
    if period == "hour":
        start = t.replace(minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%dT%H"), start.timestamp() + 3600
    if period == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), start.timestamp() + 86400
    if period == "month":
        start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return start.strftime("%Y-%m"), end.timestamp()
    raise ValueError(f"unknown budget period {period!r}")


@dataclass
class Usage:
    """A key's standing in one period (USD)."""

    spent: float
    reserved: float


class BudgetStore(abc.ABC):
    """Spent and reserved USD per (key, period), updated atomically."""

    durable: bool = False

    @abc.abstractmethod
    async def reserve(self, key: str, period: str, limit: float, amount: float, token: str,
                      expires_at: float, keep_s: float) -> tuple[bool, Usage]:
        """Hold ``amount`` under ``token`` if spent + the *other* tokens' holds < limit (a token already held is
        re-held at the new amount: a request growing its reservation is admitted again at the new price, and a
        refused one keeps what it held); the usage seen, without this token's hold."""

    @abc.abstractmethod
    async def settle(self, key: str, period: str, token: str, cost: float, keep_s: float) -> Usage:
        """Drop a reservation and add its real cost to what was spent."""

    @abc.abstractmethod
    async def usage(self, key: str, period: str) -> Usage:
        """What the key spent and has reserved in the period."""

    async def aclose(self) -> None:  # noqa: B027 - optional
        """Release connections."""


class MemoryBudgetStore(BudgetStore):
    """In this process only: each replica counts on its own and a restart forgets everything."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._spent: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}  # token -> (amount, expires)

    def _reserved(self, k: tuple[str, str], but: str | None = None) -> float:
        now = self._clock()
        held = self._held.setdefault(k, {})
        for token in [t for t, (_, exp) in held.items() if exp <= now]:
            del held[token]
        return sum(a for t, (a, _) in held.items() if t != but)

    async def reserve(self, key: str, period: str, limit: float, amount: float, token: str,
                      expires_at: float, keep_s: float) -> tuple[bool, Usage]:
        k = (key, period)
        seen = Usage(self._spent.get(k, 0.0), self._reserved(k, token))  # no await in between: atomic on the loop
        if seen.spent + seen.reserved >= limit:
            return False, seen
        self._held[k][token] = (amount, expires_at)
        return True, seen

    async def settle(self, key: str, period: str, token: str, cost: float, keep_s: float) -> Usage:
        k = (key, period)
        self._held.setdefault(k, {}).pop(token, None)
        self._spent[k] = self._spent.get(k, 0.0) + cost
        return Usage(self._spent[k], self._reserved(k))

    async def usage(self, key: str, period: str) -> Usage:
        k = (key, period)
        return Usage(self._spent.get(k, 0.0), self._reserved(k))


# KEYS: spent (string), reservations (hash token -> amount), deadlines (zset token -> expiry)
# ARGV: now, limit, amount, token, expires_at, keep_s. The token's own hold (when growing) does not count.
_RESERVE = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
for _, t in ipairs(expired) do redis.call('HDEL', KEYS[2], t) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local reserved = 0
local held = redis.call('HGETALL', KEYS[2])
for i = 1, #held, 2 do
  if held[i] ~= ARGV[4] then reserved = reserved + tonumber(held[i + 1]) end
end
if spent + reserved >= tonumber(ARGV[2]) then
  return {0, tostring(spent), tostring(reserved)}
end
redis.call('HSET', KEYS[2], ARGV[4], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[6]) end
return {1, tostring(spent), tostring(reserved)}
"""
# KEYS as above; ARGV: token, cost, keep_s
_SETTLE = """
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local spent = redis.call('INCRBYFLOAT', KEYS[1], ARGV[2])
local reserved = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do reserved = reserved + tonumber(v) end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
return {tostring(spent), tostring(reserved)}
"""


class RedisBudgetStore(BudgetStore):
    """A Redis server shared by every replica; budgets survive restarts (as long as Redis keeps its data)."""

    durable = True

    def __init__(self, url: str, prefix: str = "routeray:budget", clock: Callable[[], float] = time.time):
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url, decode_responses=True)
        self._prefix = prefix
        self._clock = clock
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)

    def _keys(self, key: str, period: str) -> list[str]:
        base = f"{self._prefix}:{key}:{period}"
        return [f"{base}:spent", f"{base}:held", f"{base}:deadlines"]

    async def reserve(self, key: str, period: str, limit: float, amount: float, token: str,
                      expires_at: float, keep_s: float) -> tuple[bool, Usage]:
        ok, spent, reserved = await self._reserve(
            keys=self._keys(key, period), args=[self._clock(), limit, amount, token, expires_at, int(keep_s)])
        return bool(int(ok)), Usage(float(spent), float(reserved))

    async def settle(self, key: str, period: str, token: str, cost: float, keep_s: float) -> Usage:
        spent, reserved = await self._settle(keys=self._keys(key, period), args=[token, cost, int(keep_s)])
        return Usage(float(spent), float(reserved))

    async def usage(self, key: str, period: str) -> Usage:
        spent_key, held_key, _ = self._keys(key, period)
        spent, held = await asyncio.gather(self._redis.get(spent_key), self._redis.hvals(held_key))
        return Usage(float(spent or 0.0), sum(float(v) for v in held))

    async def aclose(self) -> None:
        await self._redis.aclose()


def make_store(cfg: BudgetConfig, environ: Mapping[str, str] | None = None) -> BudgetStore:
    """The configured store; Redis needs its URL in the environment variable ``redis_url_env``."""
    if cfg.store == "memory":
        return MemoryBudgetStore()
    env = os.environ if environ is None else environ
    url = env.get(cfg.redis_url_env, "")
    if not url:
        from routeray.errors import RouterayError

        raise RouterayError(f"budgets.store is redis but ${cfg.redis_url_env} (the Redis URL) is unset")
    return RedisBudgetStore(url)


@dataclass
class Reservation:
    """What one admitted request holds against its key's budget until it is settled."""

    key: str
    period: str
    token: str
    amount: float
    settled: bool = field(default=False)


class OverBudget(APIError):
    """429 in OpenAI's quota shape, with ``Retry-After`` until the period ends."""

    def __init__(self, message: str, retry_after_s: int | None):
        super().__init__(message, type="insufficient_quota", code="insufficient_quota", retry_after_s=retry_after_s)


class Budgets:
    """Per-key budgets for one ingress replica (the store may be shared). ``limits``: key id -> USD per
    period (None: unlimited), from the key file or the config's default."""

    def __init__(self, cfg: BudgetConfig, limits: Mapping[str, float | None], spend: SpendMeter,
                 metrics: GatewayMetrics, store: BudgetStore | None = None, clock: Callable[[], float] = time.time):
        self.cfg = cfg
        self.limits = dict(limits)
        self.spend = spend
        self.metrics = metrics
        self.store = store or make_store(cfg)
        self._clock = clock
        if any(v is not None for v in self.limits.values()):
            if self.store.durable:
                log.info("budgets for %d keys, per %s, kept in Redis", len(self.limits), cfg.period)
            else:
                log.warning("budgets for %d keys are kept in this replica's memory: each replica counts on its "
                            "own and a restart forgets what was spent (set budgets.store: redis to keep them)",
                            len(self.limits))
        for key, limit in self.limits.items():
            if limit is not None:
                metrics.key_budget.labels(key).set(limit)
                metrics.key_budget_remaining.labels(key).set(limit)

    def limit(self, key: str) -> float | None:
        return self.limits.get(key, self.cfg.usd_per_period)

    def max_cost(self, tier: Tier, req: ChatCompletionRequest) -> float:
        """The most this request can cost at ``tier``'s prices: prompt tokens at two characters a token (the
        spend meter's estimate is four: tokenizers rarely do worse than two outside CJK text), completion
        tokens from max_tokens, else the configured reservation, times n."""
        prompt = math.ceil(sum(len(m.text()) for m in req.messages) / RESERVE_CHARS_PER_TOKEN)
        completion = req.max_completion_tokens or req.max_tokens or self.cfg.reserve_completion_tokens
        return self.spend.cost(tier, {"prompt": prompt, "completion": completion * (req.n or 1)})

    async def admit(self, key: str, tier: Tier, req: ChatCompletionRequest,
                    cheapest: Tier) -> tuple[Tier, Reservation | None]:
        """Reserve this request's cost against ``key``'s budget: the tier to use and the reservation (None when
        the key has no budget). While the budget is only held by requests in flight, wait for them (up to
        ``hold_wait_s``). Over budget: :class:`OverBudget`, or ``cheapest`` (the service's cheapest backend:
        the weak tier, or the pool's cheapest model) with ``over_budget: cheapest``."""
        limit = self.limit(key)
        if limit is None:
            return tier, None
        reservation = Reservation(key, "", uuid.uuid4().hex, 0.0)
        if await self._hold(reservation, limit, self.max_cost(tier, req)):
            return tier, reservation
        return cheapest, None

    async def cover(self, key: str, reservation: Reservation | None, tier: Tier, req: ChatCompletionRequest,
                    why: str = "") -> bool:
        """Before a fallback to ``tier``: grow ``reservation`` to the most the request can cost there, admitted
        by the same rule as a new request, without waiting (a request that waits here holds budget itself: two
        could wait for each other). True: the hold covers ``tier`` (at once when the key has no budget or
        ``tier`` costs no more than what is held). False with ``over_budget: cheapest``: ``tier`` is past the
        budget and only the cheapest model may answer (also for a request already downgraded, which holds
        nothing); :class:`OverBudget` otherwise (``why`` starts its message)."""
        if reservation is None:
            return self.limit(key) is None
        limit = self.limit(key)
        amount = self.max_cost(tier, req)
        if limit is None or amount <= reservation.amount:
            return True
        return await self._hold(reservation, limit, amount, wait=False, why=why)

    async def _hold(self, reservation: Reservation, limit: float, amount: float, wait: bool = True,
                    why: str = "") -> bool:
        """Hold ``amount`` under the reservation's token (set its period when new), waiting up to
        ``hold_wait_s`` for requests in flight if ``wait``; False, or :class:`OverBudget`, when over budget
        (see :meth:`_refuse`)."""
        key, held = reservation.key, reservation.amount
        deadline = self._clock() + (self.cfg.hold_wait_s if wait else 0.0)
        pause = 0.01
        while True:
            period, ends = period_bounds(self.cfg.period, self._clock())
            period = reservation.period or period
            ok, seen = await self.store.reserve(key, period, limit, amount, reservation.token,
                                                self._clock() + self.cfg.reservation_ttl_s, self._keep_s(ends))
            self._remaining(key, limit, seen.spent + seen.reserved + (amount if ok else held))
            if ok:
                reservation.period, reservation.amount = period, amount
                return True
            if seen.spent < limit and self._clock() < deadline:
                await asyncio.sleep(pause)  # what is left is held by requests in flight: see what they cost
                pause = min(0.2, pause * 2)
                continue
            self._refuse(key, limit, seen, ends, why)
            return False

    def _refuse(self, key: str, limit: float, seen: Usage, ends: float, why: str) -> None:
        """Count a refusal; with ``over_budget: reject`` raise :class:`OverBudget` (``why`` starts its message)."""
        if self.cfg.over_budget == "cheapest":
            self.metrics.budget_refusals.labels(key, "downgraded").inc()
            return
        self.metrics.budget_refusals.labels(key, "rejected").inc()
        if seen.spent < limit:  # still held by requests in flight after hold_wait_s
            raise OverBudget(f"{why}{key}: the rest of its budget (${limit - seen.spent:.6f}) is held by requests "
                             "in flight; retry shortly", 1)
        retry = None if math.isinf(ends) else max(1, math.ceil(ends - self._clock()))
        raise OverBudget(f"{why}{key} has used its budget of ${limit:g} per {self.cfg.period} "
                         f"(${seen.spent:.6f} spent)", retry)

    async def settle(self, reservation: Reservation | None, cost: float) -> None:
        """Replace a reservation by the request's real cost (0 when nothing was answered)."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        _, ends = period_bounds(self.cfg.period, self._clock())
        seen = await self.store.settle(reservation.key, reservation.period, reservation.token, cost,
                                       self._keep_s(ends))
        limit = self.limit(reservation.key)
        if limit is not None:
            self._remaining(reservation.key, limit, seen.spent + seen.reserved)

    async def status(self, key: str) -> dict[str, Any]:
        """``key``'s budget, spend and what remains in the current period (for its own /stats)."""
        limit = self.limit(key)
        period, ends = period_bounds(self.cfg.period, self._clock())
        seen = await self.store.usage(key, period)
        return {"key": key, "budget_usd": limit, "period": self.cfg.period, "period_id": period,
                "resets_at": None if math.isinf(ends) else datetime.fromtimestamp(ends, UTC).isoformat(),
                "spent_usd": seen.spent, "reserved_usd": seen.reserved,
                "remaining_usd": None if limit is None else max(0.0, limit - seen.spent - seen.reserved),
                "over_budget": self.cfg.over_budget, "store": "redis" if self.store.durable else "memory"}

    def _remaining(self, key: str, limit: float, used: float) -> None:
        self.metrics.key_budget_remaining.labels(key).set(max(0.0, limit - used))

    def _keep_s(self, ends: float) -> float:
        """How long a period's counts are kept: to its end plus a day (``total``: a year past the last use)."""
        return 365 * 86400 if math.isinf(ends) else max(60.0, ends - self._clock() + 86400)

    async def aclose(self) -> None:
        await self.store.aclose()


def budgets_factory(cfg: BudgetConfig, limits: Mapping[str, float | None]
                    ) -> Callable[[SpendMeter, GatewayMetrics], Budgets] | None:
    """What :class:`~routeray.gateway.service.RoutingService` builds its budgets with (it owns the spend
    meter and metrics), or None when no key has a budget."""
    if all(v is None for v in limits.values()):
        return None
    return lambda spend, metrics: Budgets(cfg, limits, spend, metrics)
