"""Continuous batching for router scoring: each batch is whatever queued while the previous one ran.

Why not ``@serve.batch`` alone: in Ray 2.60 its loop forms batches eagerly — it closes a batch when the
wait timeout expires and queues it behind the concurrency semaphore, then starts the next one at once. So
with a short wait every batch holds one prompt once the scorer is busy (measured: MF saturated at ~30 req/s
with batch size 1), and a long wait taxes every idle request. Here a batch starts only when the previous
one finished, so an idle scorer answers at once and a busy one batches everything that arrived meanwhile
(up to ``max_batch_size``); ``wait_s`` can add a short extra wait to let a batch grow. The scoring function
runs in a worker thread, so the event loop stays free; an async one (the gateway's call to a remote scorer
deployment, one Ray call per batch instead of one per prompt) is awaited.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from routeray.gateway.overload import QueueFull

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """One prompt's score (with a pool: each model's predicted quality), the size of the batch it was scored
    in, and that batch's scoring time."""

    score: float | tuple[float, ...]
    batch_size: int
    batch_seconds: float


class ContinuousBatcher:
    """Batches concurrent :meth:`submit` calls into calls of ``score_fn(prompts) -> scores``."""

    def __init__(self, score_fn: Callable[[list[str]], Iterable[Any] | Awaitable[Iterable[Any]]],
                 max_batch_size: int = 64, wait_s: float = 0.0, name: str = "scorer", max_queue_s: float | None = None,
                 admit_wait_s: float | None = None):
        self._fn = score_fn
        # A coroutine function (a remote scorer's batch call) is awaited; a plain one runs in a worker thread.
        self._is_async = inspect.iscoroutinefunction(score_fn)
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        # Under overload, prompts whose caller has surely given up are shed instead of scored.
        self.max_queue_s = max_queue_s
        # Past saturation, a prompt that would wait longer than this is refused at once (QueueFull: a 503 with
        # Retry-After) instead of queued: the queue, and so the latency of what is answered, stays bounded.
        self.admit_wait_s = admit_wait_s
        self._item_s: float | None = None  # recent scoring time per prompt (moving average)
        self._in_batch = 0
        self.name = name
        self._queue: asyncio.Queue[tuple[str, asyncio.Future[Scored], float]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def configure(self, max_batch_size: int | None = None, wait_s: float | None = None) -> None:
        """Change the knobs; takes effect from the next batch."""
        if max_batch_size is not None:
            if max_batch_size < 1:
                raise ValueError("max_batch_size must be at least 1")
            self.max_batch_size = int(max_batch_size)
        if wait_s is not None:
            if wait_s < 0:
                raise ValueError("wait_s must be >= 0")
            self.wait_s = float(wait_s)

    def expected_wait_s(self) -> float:
        """How long a prompt submitted now would wait for its score: the prompts ahead of it times the recent
        scoring time per prompt (0 until a batch has been timed)."""
        queued = self._queue.qsize() if self._queue is not None else 0
        return (queued + self._in_batch) * (self._item_s or 0.0)

    async def submit(self, prompt: str) -> Scored:
        """Score one prompt as part of the next batch; :class:`QueueFull` when it would wait too long."""
        if self.admit_wait_s is not None and (wait := self.expected_wait_s()) > self.admit_wait_s:
            raise QueueFull(self.name, wait, self.admit_wait_s)
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:  # queues and tasks belong to one event loop
            self._queue, self._loop, self._task = asyncio.Queue(), loop, None
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(self._queue), name=f"{self.name}-batcher")
        future: asyncio.Future[Scored] = loop.create_future()
        self._queue.put_nowait((prompt, future, time.monotonic()))
        return await future

    async def aclose(self) -> None:
        """Stop the batching task (callers still waiting get CancelledError)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _collect(self, queue: asyncio.Queue[tuple[str, asyncio.Future[Scored], float]]
                       ) -> list[tuple[str, asyncio.Future[Scored], float]]:
        batch = [await queue.get()]
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.max_batch_size:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    def _live(self, items: list[tuple[str, asyncio.Future[Scored], float]]) -> list[tuple[str, asyncio.Future[Scored]]]:
        """Drop cancelled callers, and shed prompts that queued longer than ``max_queue_s``."""
        now = time.monotonic()
        live = []
        for prompt, fut, queued in items:
            if fut.done():
                continue
            if self.max_queue_s is not None and now - queued > self.max_queue_s:
                fut.set_exception(TimeoutError(f"{self.name}: shed after {now - queued:.1f} s in the queue"))
                continue
            live.append((prompt, fut))
        return live

    async def _call(self, prompts: list[str]) -> list[float | tuple[float, ...]]:
        if self._is_async:
            raw = await cast(Awaitable[Iterable[Any]], self._fn(prompts))
        else:
            raw = await asyncio.to_thread(cast(Callable[[list[str]], Iterable[Any]], self._fn), prompts)
        # a pool's scorer returns one row of qualities per prompt
        return [float(s) if isinstance(s, int | float) else tuple(float(v) for v in s) for s in raw]

    async def _run(self, queue: asyncio.Queue[tuple[str, asyncio.Future[Scored], float]]) -> None:
        while True:
            batch = self._live(await self._collect(queue))
            if not batch:
                continue
            prompts = [p for p, _ in batch]
            t0 = time.perf_counter()
            self._in_batch = len(prompts)
            try:
                scores = await self._call(prompts)
                if len(scores) != len(prompts):
                    raise RuntimeError(f"{self.name} returned {len(scores)} scores for {len(prompts)} prompts")
                if not all(math.isfinite(v) for s in scores for v in (s if isinstance(s, tuple) else (s,))):
                    raise RuntimeError(f"{self.name} returned a non-finite score")
            except Exception as exc:  # noqa: BLE001 - every caller of this batch gets the error
                self._in_batch = 0
                log.warning("%s: scoring a batch of %d failed: %s", self.name, len(prompts), exc)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            elapsed = time.perf_counter() - t0
            self._in_batch = 0
            per_item = elapsed / len(prompts)
            self._item_s = per_item if self._item_s is None else 0.8 * self._item_s + 0.2 * per_item
            for (_, fut), s in zip(batch, scores, strict=True):
                if not fut.done():
                    fut.set_result(Scored(s, len(prompts), elapsed))
