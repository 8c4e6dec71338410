"""Routers scored in this process: loaded on first use, batched through a :class:`ContinuousBatcher` each
(concurrent calls share one ``Router.score`` call, run in a worker thread). Used by the SDK, and by the
ingress for routers placed there (``placement: ingress``)."""

from __future__ import annotations

import asyncio
import threading

from routeray.config import Config
from routeray.gateway.batching import ContinuousBatcher
from routeray.gateway.service import Score
from routeray.routers.base import Router


class LocalScorers:
    """A :data:`routeray.gateway.service.ScoreFn` over routers loaded in this process."""

    def __init__(self, cfg: Config):
        self._cfgs = {r.router: r for r in cfg.routers}
        self._routers: dict[str, Router] = {}
        self._batchers: dict[tuple[int, str], ContinuousBatcher] = {}
        self._lock = threading.Lock()

    def router(self, name: str) -> Router:
        """The loaded router ``name`` (loaded now if it is not yet)."""
        with self._lock:
            if name not in self._routers:
                from routeray.routers.registry import load_router

                c = self._cfgs[name]
                self._routers[name] = load_router(name, artifact=c.artifact, **c.overrides)
            return self._routers[name]

    async def __call__(self, router: str, prompt: str) -> Score:
        key = (id(asyncio.get_running_loop()), router)  # a batcher's queue belongs to one event loop
        if key not in self._batchers:
            loaded = await asyncio.to_thread(self.router, router)
            c = self._cfgs[router]
            self._batchers.setdefault(key, ContinuousBatcher(loaded.score, c.max_batch_size, c.batch_wait_timeout_s,
                                                             name=f"router {router}", max_queue_s=c.max_queue_s,
                                                             admit_wait_s=c.admit_wait_s))
        r = await self._batchers[key].submit(prompt)
        return Score(value=r.score, batch_size=r.batch_size, latency_s=r.batch_seconds)

    async def aclose(self) -> None:
        """Stop the batchers that run on the current event loop."""
        loop_id = id(asyncio.get_running_loop())
        for key in [k for k in self._batchers if k[0] == loop_id]:
            await self._batchers.pop(key).aclose()

