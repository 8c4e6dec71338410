"""The scorer's continuous batcher (no Ray): idle requests wait for nothing, busy ones share batches,
errors reach every caller of the batch, cancelled callers are dropped, knobs change at run time."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from routeray.gateway.batching import ContinuousBatcher
from routeray.gateway.overload import QueueFull


class SlowScorer:
    """Scores len(prompt)/100, taking `per_call` seconds per call whatever the batch size."""

    def __init__(self, per_call: float = 0.05):
        self.per_call = per_call
        self.batches: list[int] = []
        self.threads: set[int] = set()

    def __call__(self, prompts: list[str]) -> list[float]:
        self.threads.add(threading.get_ident())
        self.batches.append(len(prompts))
        time.sleep(self.per_call)
        return [len(p) / 100 for p in prompts]


def test_idle_request_is_scored_alone_and_at_once() -> None:
    fn = SlowScorer(per_call=0.0)
    b = ContinuousBatcher(fn, max_batch_size=8)

    async def go() -> float:
        t0 = time.perf_counter()
        r = await b.submit("abc")
        assert (r.score, r.batch_size) == (0.03, 1)
        return time.perf_counter() - t0

    assert asyncio.run(go()) < 0.25  # no batch wait: a worker-thread hop, even on a slow, busy machine
    assert threading.get_ident() not in fn.threads  # scored off the event loop


def test_busy_scorer_batches_what_queued_meanwhile() -> None:
    fn = SlowScorer(per_call=0.05)
    b = ContinuousBatcher(fn, max_batch_size=16)

    async def go() -> list:
        first = asyncio.create_task(b.submit("x"))
        await asyncio.sleep(0.01)  # the first batch (of one) is now running
        rest = await asyncio.gather(*[b.submit("y" * i) for i in range(1, 41)])
        return [await first, *rest]

    results = asyncio.run(go())
    assert fn.batches[0] == 1 and fn.batches[1:] == [16, 16, 8]
    assert [r.score for r in results[1:]] == [i / 100 for i in range(1, 41)]  # each caller gets its own score
    assert all(r.batch_size == 16 for r in results[1:17])


def test_wait_lets_a_batch_grow_and_configure_changes_it() -> None:
    fn = SlowScorer(per_call=0.0)
    b = ContinuousBatcher(fn, max_batch_size=64, wait_s=0.05)

    async def staggered(n: int) -> None:
        async def one(i: int) -> None:
            await asyncio.sleep(i * 0.002)
            await b.submit(str(i))

        await asyncio.gather(*[one(i) for i in range(n)])

    asyncio.run(staggered(10))
    assert fn.batches == [10]
    b.configure(max_batch_size=4, wait_s=0.0)
    fn.batches.clear()
    asyncio.run(staggered(8))
    assert max(fn.batches) <= 4 and sum(fn.batches) == 8
    with pytest.raises(ValueError):
        b.configure(max_batch_size=0)


def test_errors_reach_every_caller_and_the_batcher_survives() -> None:
    calls = {"n": 0}

    def flaky(prompts: list[str]) -> list[float]:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(0.03)
            raise RuntimeError("encoder exploded")
        return [float("nan")] if prompts == ["nan"] else [0.5] * len(prompts)

    b = ContinuousBatcher(flaky, max_batch_size=8)

    async def go() -> None:
        outs = await asyncio.gather(*[b.submit(f"p{i}") for i in range(3)], return_exceptions=True)
        assert all(isinstance(o, RuntimeError) and "exploded" in str(o) for o in outs)
        with pytest.raises(RuntimeError, match="non-finite"):
            await b.submit("nan")
        assert (await b.submit("ok")).score == 0.5

    asyncio.run(go())


def test_cancelled_callers_are_not_scored() -> None:
    fn = SlowScorer(per_call=0.05)
    b = ContinuousBatcher(fn, max_batch_size=8)

    async def go() -> None:
        first = asyncio.create_task(b.submit("a"))
        await asyncio.sleep(0.01)
        doomed = [asyncio.create_task(b.submit("b")) for _ in range(3)]
        kept = asyncio.create_task(b.submit("c"))
        await asyncio.sleep(0)
        for t in doomed:
            t.cancel()
        await first
        assert (await kept).batch_size == 1

    asyncio.run(go())
    assert fn.batches == [1, 1]


def test_overloaded_scorer_sheds_prompts_that_waited_too_long() -> None:
    fn = SlowScorer(per_call=0.2)
    b = ContinuousBatcher(fn, max_batch_size=2, max_queue_s=0.1)

    async def go() -> list:
        return await asyncio.gather(*[b.submit(str(i)) for i in range(6)], return_exceptions=True)

    outs = asyncio.run(go())
    scored = [o for o in outs if not isinstance(o, BaseException)]
    shed = [o for o in outs if isinstance(o, TimeoutError)]
    assert len(scored) == 2 and len(shed) == 4  # the first batch ran; the rest waited 0.2 s > 0.1 s
    assert fn.batches == [2]


def test_async_score_fn_is_awaited_on_the_loop_once_per_batch() -> None:
    """The gateway's call to a scorer deployment: a coroutine, one call per batch of concurrent prompts."""
    calls: list[int] = []
    loop_threads: set[int] = set()

    async def remote(prompts: list[str]) -> list[float]:
        loop_threads.add(threading.get_ident())
        calls.append(len(prompts))
        await asyncio.sleep(0.05)
        return [len(p) / 100 for p in prompts]

    b = ContinuousBatcher(remote, max_batch_size=64)

    async def go() -> list[float]:
        first = asyncio.create_task(b.submit("x"))
        await asyncio.sleep(0.01)  # the first call is out: the next 20 queue behind it
        rest = await asyncio.gather(*(b.submit("y" * i) for i in range(1, 21)))
        return [(await first).score] + [r.score for r in rest]

    scores = asyncio.run(go())
    assert scores == [0.01] + [i / 100 for i in range(1, 21)]
    assert calls == [1, 20] and loop_threads == {threading.main_thread().ident}


def test_admission_refuses_at_once_what_would_wait_too_long() -> None:
    """Per-prompt time 10 ms (one prompt a batch): with 0.05 s to spare, about five may queue; the rest get a
    503 with Retry-After at once, and what was admitted is answered."""
    fn = SlowScorer(per_call=0.01)
    b = ContinuousBatcher(fn, max_batch_size=1, admit_wait_s=0.05)

    async def go() -> tuple[list[object], float]:
        await b.submit("warm")  # one timed batch: the batcher now knows the time per prompt
        t0 = time.perf_counter()
        results = await asyncio.gather(*(b.submit(f"p{i}") for i in range(40)), return_exceptions=True)
        return results, time.perf_counter() - t0

    results, elapsed = asyncio.run(go())
    refused = [r for r in results if isinstance(r, QueueFull)]
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert 3 <= len(answered) <= 8 and len(refused) == 40 - len(answered)
    assert refused[0].status == 503 and refused[0].headers() == {"Retry-After": "1"}
    assert elapsed < 0.5  # the refused did not wait for the admitted
    assert b.expected_wait_s() == 0.0
