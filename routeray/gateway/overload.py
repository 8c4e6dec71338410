"""Load shedding for the ingress: refuse new chat requests at once while the replica's event loop is behind.

Past saturation an ingress replica that accepts everything gets slower for everyone: requests queue inside
its event loop, callers time out while their work is still being done, and answers per second fall (the
overhead benchmark saw 185 answers/s at 600 req/s offered, against 328 at best; docs/serving.md). In-flight
counts cannot tell that apart from a slow upstream (100 req/s of 30-second answers is 3,000 in flight on a
healthy replica), but the event loop's lag can: a ticker that should wake every ``interval_s`` measures how
late it wakes. When the lag passes the configured limit, new requests get a 503 in OpenAI's shape with
``Retry-After`` — a cheap answer that frees the CPU for the requests already accepted — until it recovers.

The lag sees only requests that reached the handler. Requests beyond ``max_ongoing_requests`` wait in Ray
Serve's replica queue, before any user code; ``ingress.max_queued_requests`` bounds that queue (Serve answers
the excess with its own plain-text 503). Both are off by default: the right limits depend on the replica's
service rate, which the deployment knows and this module does not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from routeray.gateway.protocol import APIError

DEFAULT_INTERVAL_S = 0.05
DECAY_PER_S = 0.001  # an old lag reading falls to 0.1 % of itself per second (x0.71 per 50 ms tick)


class Overloaded(APIError):
    """A 503 in OpenAI's shape that also carries the ``Retry-After`` seconds."""

    def __init__(self, lag_s: float, limit_s: float, retry_after_s: int = 1):
        super().__init__(f"the gateway is overloaded (its event loop runs {lag_s * 1000:.0f} ms behind, limit "
                         f"{limit_s * 1000:.0f} ms); retry in {retry_after_s} s", type="overloaded_error",
                         code="overloaded", retry_after_s=retry_after_s)


class QueueFull(APIError):
    """A 503 ``overloaded_error`` with ``Retry-After``: the scorer's queue is already longer than a prompt may wait."""

    def __init__(self, name: str, wait_s: float, limit_s: float, retry_after_s: int = 1):
        super().__init__(f"the gateway is overloaded ({name}: a prompt would wait {wait_s * 1000:.0f} ms to be "
                         f"scored, limit {limit_s * 1000:.0f} ms); retry in {retry_after_s} s",
                         type="overloaded_error", code="overloaded", retry_after_s=retry_after_s)
        self.args_ = (name, wait_s, limit_s, retry_after_s)

    def again(self) -> QueueFull:
        """A fresh copy, for refusing another request on the same grounds."""
        return QueueFull(*self.args_)


class LoopLag:
    """The lag of the running event loop: a ticker sleeps ``interval_s`` and records how late it woke.

    The estimate rises at once to a late tick and decays exponentially after it (``decay_per_s``), so one
    slow tick sheds for a fraction of a second while a loop that stays behind keeps shedding. Start it from
    inside the loop it watches (:meth:`ensure_started`); it stops with :meth:`stop` or with the loop."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, decay_per_s: float = DECAY_PER_S,
                 clock: Callable[[], float] = time.perf_counter):
        self.interval_s = interval_s
        self._decay_per_tick = decay_per_s ** interval_s
        self._clock = clock
        self._lag = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def lag_s(self) -> float:
        return self._lag

    def observe(self, late_s: float) -> None:
        """Take one tick's lateness into the estimate."""
        self._lag = max(max(0.0, late_s), self._lag * self._decay_per_tick)

    def ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._tick(), name="routeray-loop-lag")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _tick(self) -> None:
        while True:
            due = self._clock() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.observe(self._clock() - due)


class LoadShedder:
    """Refuses requests while :class:`LoopLag` is above ``max_lag_s``; ``max_lag_s`` None turns it off."""

    def __init__(self, max_lag_s: float | None, lag: LoopLag | None = None):
        self.max_lag_s = max_lag_s
        self.lag = lag or LoopLag()

    def check(self) -> None:
        """Raise :class:`Overloaded` when the loop is too far behind. The first call starts the lag ticker
        (also when shedding is off: the lag is exported as a metric either way)."""
        self.lag.ensure_started()
        if self.max_lag_s is not None and self.lag.lag_s > self.max_lag_s:
            raise Overloaded(self.lag.lag_s, self.max_lag_s)
