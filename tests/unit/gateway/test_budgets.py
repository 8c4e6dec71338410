"""Per-key budgets without Ray: the routing service against loopback OpenAI servers (real sockets) and, for
the shared store, a real redis-server. 50 concurrent requests from one key overshoot its budget by less
than one request's cost, also when they fall back to a pricier tier; over budget is a 429 in OpenAI's quota
shape or the cheaper tier; the Redis store
survives a new service (a restarted replica), the memory store says it forgets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from routeray.config import BackendConfig, BudgetConfig, Config, ScorerConfig
from routeray.gateway.backends import OpenAIBackend
from routeray.gateway.budgets import (
    Budgets,
    BudgetStore,
    MemoryBudgetStore,
    OverBudget,
    RedisBudgetStore,
    budgets_factory,
    period_bounds,
)
from routeray.gateway.protocol import APIError, ChatCompletionRequest
from routeray.gateway.service import RoutingService, Score
from tests.integration.fake_openai import FakeOpenAI
from tests.redis_server import redis_server

FAST = {"timeout_s": 5, "read_timeout_s": 2, "connect_timeout_s": 1, "max_retries": 0}
STRONG_PRICES = {"price_input_per_mtok": 2.5, "price_output_per_mtok": 10.0}
WEAK_PRICES = {"price_input_per_mtok": 0.05, "price_output_per_mtok": 0.2}
# The fakes report 5 prompt and 7 completion tokens for every answer.
STRONG_COST = (5 * 2.5 + 7 * 10.0) / 1e6
KEY = "key-0000abcd"


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with FakeOpenAI("big") as strong, FakeOpenAI("small") as weak:
        yield strong, weak


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


def _service(fakes: tuple[FakeOpenAI, FakeOpenAI], store: BudgetStore, score_value: float = 0.9,
             **budget: object) -> RoutingService:
    strong, weak = fakes
    cfg = Config(routers=[ScorerConfig(router="random")],
                 strong=BackendConfig(name="big", base_url=strong.base_url, **FAST, **STRONG_PRICES),
                 weak=BackendConfig(name="small", base_url=weak.base_url, **FAST, **WEAK_PRICES))
    bc = BudgetConfig(**budget)  # type: ignore[arg-type]
    backends = {"strong": OpenAIBackend(cfg.strong, "strong"), "weak": OpenAIBackend(cfg.weak, "weak")}

    async def score(router: str, prompt: str) -> Score:
        return Score(score_value)  # everything routed goes strong (by default)

    return RoutingService(cfg, score, backends,
                          budgets=lambda spend, metrics: Budgets(bc, {KEY: bc.usd_per_period}, spend, metrics, store))


def _req(i: int, stream: bool = False, max_tokens: int | None = 16) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({
        "model": "router-random-0.5", "stream": stream, "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": f"Question {i}: what is {i} times {i + 3}?"}]})


async def _one(service: RoutingService, req: ChatCompletionRequest) -> str:
    try:
        decision = await service.decide(req, 0.0, KEY)
        if req.stream:
            return "".join([line async for line in await service.open_stream(req, decision)])
        return (await service.complete(req, decision))["model"]
    except APIError as err:
        return err.type


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[BudgetStore]:
    yield MemoryBudgetStore() if request.param == "memory" else RedisBudgetStore(
        request.getfixturevalue("redis_url"), prefix=f"test:{request.node.name}")


def test_fifty_concurrent_requests_overshoot_by_less_than_one_request(fakes, store: BudgetStore) -> None:
    budget = 10.5 * STRONG_COST
    service = _service(fakes, store, usd_per_period=budget, period="total")
    costs: list[float] = []  # each answer's cost (streamed answers report no usage: estimated from text)
    record = service.spend.record_answer
    service.spend.record_answer = lambda *a: costs.append(record(*a)) or costs[-1]  # type: ignore[method-assign]

    async def run() -> tuple[list[str], dict]:
        try:
            out = await asyncio.gather(*[_one(service, _req(i, stream=i % 5 == 0)) for i in range(50)])
            return list(out), await service.budgets.status(KEY)  # type: ignore[union-attr]
        finally:
            await service.aclose()

    answers, status = asyncio.run(run())
    served = sum(a != "insufficient_quota" for a in answers)
    assert 0 < served < 50 and answers.count("insufficient_quota") == 50 - served
    assert status["reserved_usd"] == pytest.approx(0.0, abs=1e-12)  # every hold released
    assert len(costs) == served and status["spent_usd"] == pytest.approx(sum(costs))
    assert budget <= status["spent_usd"] < budget + max(costs)
    assert status["remaining_usd"] == 0.0


def test_fifty_concurrent_weak_requests_falling_back_to_strong_overshoot_by_less_than_one(fakes, store) -> None:
    # Admitted at the weak tier's prices (a fiftieth of strong's); the weak tier fails and each falls back to
    # strong. Holding only the weak price, all 50 used to be served by strong: 5.2 times the budget.
    _, weak = fakes
    budget = 10.5 * STRONG_COST
    service = _service(fakes, store, score_value=0.0, usd_per_period=budget, period="total")
    service.cfg.routing.weak_fallback_to_strong = True
    costs: list[float] = []
    record = service.spend.record_answer
    service.spend.record_answer = lambda *a: costs.append(record(*a)) or costs[-1]  # type: ignore[method-assign]

    async def run() -> tuple[list[str], dict]:
        weak.mode = "fail"
        try:
            out = await asyncio.gather(*[_one(service, _req(i, stream=i % 5 == 0)) for i in range(50)])
            return list(out), await service.budgets.status(KEY)  # type: ignore[union-attr]
        finally:
            weak.mode = "ok"
            await service.aclose()

    answers, status = asyncio.run(run())
    served = len(answers) - answers.count("insufficient_quota")
    assert served > 0 and all(a.startswith("data:") or a == "big" for a in answers if a != "insufficient_quota")
    assert status["reserved_usd"] == pytest.approx(0.0, abs=1e-12)  # every hold released
    assert len(costs) == served and status["spent_usd"] == pytest.approx(sum(costs))
    assert status["spent_usd"] < budget + max(costs)


@pytest.mark.parametrize("over_budget", ["reject", "cheapest"])
def test_a_pricier_fallback_grows_the_hold_or_is_not_called(fakes, store, over_budget: str) -> None:
    strong, weak = fakes
    service = _service(fakes, store, score_value=0.0, usd_per_period=100e-6, period="total",
                       over_budget=over_budget)
    assert service.budgets is not None
    service.cfg.routing.weak_fallback_to_strong = True
    direct = _req(2).model_copy(update={"model": "big"})  # the strong tier by name: holds its price

    async def run() -> tuple[str, float, dict, str, float, dict]:
        weak.mode = "fail"
        try:
            alone = await service.decide(_req(1), 0.0, KEY)  # weak: holds the weak price
            answered = (await service.complete(_req(1), alone))["model"]  # weak fails: strong, hold grown
            grown = alone.reservation.amount  # type: ignore[union-attr]
            await service.settle(alone, 0.0)
            spent_before = (await service.budgets.status(KEY))["spent_usd"]  # type: ignore[union-attr]
            routed = await service.decide(_req(3), 0.0, KEY)  # weak
            held = await service.decide(direct, 0.0, KEY)  # strong, in flight: the rest of the budget
            calls = strong.calls
            refused = await _one_decided(service, _req(3), routed)
            during = await service.budgets.status(KEY)  # type: ignore[union-attr]
            assert strong.calls == calls  # the pricier fallback was not called
            await service.settle(held, 0.0)
            return answered, grown, during, refused, spent_before, routed.headers()
        finally:
            weak.mode = "ok"
            await service.aclose()

    answered, grown, during, refused, spent_before, headers = asyncio.run(run())
    assert answered == "big" and grown == pytest.approx(service.budgets.max_cost("strong", _req(1)))
    assert refused == ("insufficient_quota" if over_budget == "reject" else "upstream_error")
    assert during["spent_usd"] == spent_before  # nothing charged for the refused request
    assert during["reserved_usd"] == pytest.approx(service.budgets.max_cost("strong", direct))  # its hold released
    assert headers["x-routeray-tier"] == "weak" and "x-routeray-budget" not in headers
    action = "rejected" if over_budget == "reject" else "downgraded"
    assert service.metrics.budget_refusals.labels(KEY, action)._value.get() == 1


async def _one_decided(service: RoutingService, req: ChatCompletionRequest, decision) -> str:
    try:
        return (await service.complete(req, decision))["model"]
    except APIError as err:
        return err.type


def test_over_budget_is_openai_shaped_429_with_retry_after(fakes) -> None:
    service = _service(fakes, MemoryBudgetStore(), usd_per_period=STRONG_COST / 2, period="day")

    async def run() -> APIError:
        try:
            assert await _one(service, _req(1)) == "big"
            with pytest.raises(OverBudget) as exc:
                await service.decide(_req(2), 0.0, KEY)
            return exc.value
        finally:
            await service.aclose()

    err = asyncio.run(run())
    assert err.status == 429 and err.to_dict()["error"]["code"] == "insufficient_quota"
    assert 1 <= int(err.headers()["Retry-After"]) <= 86400
    refused = service.metrics.budget_refusals.labels(KEY, "rejected")._value.get()
    assert refused == 1


def test_cheapest_mode_sends_the_key_to_the_weak_tier(fakes) -> None:
    service = _service(fakes, MemoryBudgetStore(), usd_per_period=STRONG_COST / 2, over_budget="cheapest")

    async def run() -> tuple[str, str, dict[str, str]]:
        try:
            first = await _one(service, _req(1))
            decision = await service.decide(_req(2), 0.0, KEY)
            answer = (await service.complete(_req(2), decision))["model"]
            return first, answer, decision.headers()
        finally:
            await service.aclose()

    first, second, headers = asyncio.run(run())
    assert (first, second) == ("big", "small")
    assert headers["x-routeray-tier"] == "weak" and "exceeded" in headers["x-routeray-budget"]


def test_failed_upstream_releases_its_hold(fakes) -> None:
    strong, _ = fakes
    service = _service(fakes, MemoryBudgetStore(), usd_per_period=1.0)
    service.cfg.routing.strong_fallback_to_weak = False

    async def run() -> dict:
        strong.mode = "fail"
        try:
            assert await _one(service, _req(1)) == "upstream_error"
            assert await _one(service, _req(2, stream=True)) == "upstream_error"
            return await service.budgets.status(KEY)  # type: ignore[union-attr]
        finally:
            strong.mode = "ok"
            await service.aclose()

    status = asyncio.run(run())
    assert status["spent_usd"] == 0.0 and status["reserved_usd"] == 0.0


def test_redis_budget_survives_a_restarted_replica_and_memory_forgets(fakes, redis_url: str, caplog) -> None:
    async def spend_then_restart(make_store) -> tuple[float, float]:
        first = _service(fakes, make_store(), usd_per_period=1.0, period="month")
        try:
            await _one(first, _req(1))
            await _one(first, _req(2))
            before = (await first.budgets.status(KEY))["spent_usd"]  # type: ignore[union-attr]
        finally:
            await first.aclose()
        second = _service(fakes, make_store(), usd_per_period=1.0, period="month")  # the replica, restarted
        try:
            return before, (await second.budgets.status(KEY))["spent_usd"]  # type: ignore[union-attr]
        finally:
            await second.aclose()

    assert asyncio.run(spend_then_restart(lambda: RedisBudgetStore(redis_url, prefix="test:restart"))) == \
        pytest.approx((2 * STRONG_COST, 2 * STRONG_COST))
    with caplog.at_level(logging.WARNING, logger="routeray.gateway.budgets"):
        before, after = asyncio.run(spend_then_restart(MemoryBudgetStore))
    assert before == pytest.approx(2 * STRONG_COST) and after == 0.0
    assert "forgets" in caplog.text


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_dead_replicas_hold_lapses(kind: str, request: pytest.FixtureRequest) -> None:
    now = [1_000_000.0]
    store: BudgetStore = MemoryBudgetStore(clock=lambda: now[0]) if kind == "memory" else RedisBudgetStore(
        request.getfixturevalue("redis_url"), prefix="test:lapse", clock=lambda: now[0])

    async def run() -> tuple[bool, bool]:
        try:
            ok1, _ = await store.reserve(KEY, "p", 1.0, 0.9, "a", now[0] + 60, 3600)
            ok2, _ = await store.reserve(KEY, "p", 1.0, 0.5, "b", now[0] + 60, 3600)  # 0.9 held: still < 1
            ok3, _ = await store.reserve(KEY, "p", 1.0, 0.5, "c", now[0] + 60, 3600)  # 1.4 held
            now[0] += 61  # the replica holding them died; nothing settles them
            ok4, seen = await store.reserve(KEY, "p", 1.0, 0.5, "d", now[0] + 60, 3600)
            assert seen.reserved == 0.0
            return ok1 and ok2 and not ok3, ok4
        finally:
            await store.aclose()

    assert asyncio.run(run()) == (True, True)


def test_periods_and_factory() -> None:
    t = 1_764_979_200.0  # 2025-12-06 00:00 UTC
    assert period_bounds("day", t + 5) == ("2025-12-06", t + 86400)
    assert period_bounds("hour", t + 3605) == ("2025-12-06T01", t + 7200)
    assert period_bounds("month", t)[0] == "2025-12" and period_bounds("month", t)[1] == 1_767_225_600.0
    assert period_bounds("total", t) == ("total", float("inf"))
    assert budgets_factory(BudgetConfig(), {"k": None}) is None
    assert budgets_factory(BudgetConfig(), {"k": 1.0}) is not None


def test_redis_store_needs_its_url(tmp_path: Path) -> None:
    from routeray.errors import RouterayError
    from routeray.gateway.budgets import make_store

    with pytest.raises(RouterayError, match="ROUTERAY_REDIS_URL"):
        make_store(BudgetConfig(store="redis"), {})


POOL_PRICES = [(0.2, 0.2), (0.8, 0.8), (10.0, 30.0)]  # m0 cheapest ... m2 dearest


def _pool_service(servers: list[FakeOpenAI], limit: float, over_budget: str) -> RoutingService:
    # the score function stands in for a pool router (random cannot score a pool: nothing loads it here)
    cfg = Config.model_validate({"routers": [{"router": "random"}], "pool": [
        {"name": f"m{i}", "base_url": s.base_url, "price_input_per_mtok": p_in, "price_output_per_mtok": p_out,
         **FAST} for i, (s, (p_in, p_out)) in enumerate(zip(servers, POOL_PRICES, strict=True))]})
    bc = BudgetConfig(usd_per_period=limit, over_budget=over_budget)  # type: ignore[arg-type]
    backends = {key: OpenAIBackend(b, key) for key, b in cfg.backend_table().items()}

    async def score(router: str, prompt: str) -> Score:
        return Score(0.0, quality=(0.1, 0.2, 0.99))  # the dearest model is far better: routed there

    return RoutingService(cfg, score, backends,
                          budgets=lambda spend, metrics: Budgets(bc, {KEY: limit}, spend, metrics, MemoryBudgetStore()))


def test_a_pool_is_priced_per_model_and_over_budget_goes_to_its_cheapest_model() -> None:
    dear = (5 * 10.0 + 7 * 30.0) / 1e6  # one answer of m2 (the fakes report 5 + 7 tokens)
    with FakeOpenAI("m0") as m0, FakeOpenAI("m1") as m1, FakeOpenAI("m2") as m2:
        service = _pool_service([m0, m1, m2], dear / 2, "cheapest")

        async def run() -> tuple[list[str], dict[str, str], dict, dict]:
            try:
                answers = [await _one(service, _req(i, max_tokens=7)) for i in range(3)]
                decision = await service.decide(_req(9), 0.0, KEY)
                explained = await service.explain("What is 2+2?", "router-random-0.5")
                return answers, decision.headers(), await service.budgets.status(KEY), explained  # type: ignore[union-attr]
            finally:
                await service.aclose()

        answers, headers, status, explained = asyncio.run(run())
    assert answers == ["m2", "m0", "m0"]  # the first fits the budget; past it, the pool's cheapest model
    assert headers["x-routeray-tier"] == "m0" and "exceeded" in headers["x-routeray-budget"]
    assert status["spent_usd"] == pytest.approx(dear)  # priced at m2's prices; downgraded answers hold nothing
    assert service.metrics.budget_refusals.labels(KEY, "downgraded")._value.get() == 3
    # the playground's explanation of a pool: every model's prices, the pool score, the model the rule picks
    assert explained["pool"] is True and explained["tier"] == "m2"
    assert list(explained["prices_per_mtok_usd"]) == ["m0", "m1", "m2"]
    assert explained["scores"]["random"]["quality"] == {"m0": 0.1, "m1": 0.2, "m2": 0.99}


def test_cheapest_mode_answers_a_refused_pool_fallback_with_the_cheapest_model() -> None:
    with FakeOpenAI("m0") as m0, FakeOpenAI("m1") as m1, FakeOpenAI("m2") as m2:
        service = _pool_service([m0, m1, m2], 100e-6, "cheapest")
        service.cfg.routing.strong_fallback_to_weak = False  # m1's only configured fallback is m2, pricier
        service.cfg.routing.weak_fallback_to_strong = True

        async def run() -> tuple[str, dict[str, str]]:
            m1.mode = "fail"
            try:
                named = _req(1).model_copy(update={"model": "m1"})
                decision = await service.decide(named, 0.0, KEY)
                held = await service.decide(_req(2).model_copy(update={"model": "m2"}), 0.0, KEY)  # in flight
                answer = (await service.complete(named, decision))["model"]
                await service.settle(held, 0.0)
                return answer, decision.headers()
            finally:
                await service.aclose()

        answer, headers = asyncio.run(run())
        assert m2.calls == 0
    assert answer == "m0" and headers["x-routeray-tier"] == "m0" and headers["x-routeray-fallback"] == "m1_error"
    assert "exceeded" in headers["x-routeray-budget"]
