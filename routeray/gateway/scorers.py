"""Routers scored in this process: loaded on first use, batched through a :class:`ContinuousBatcher` each
(concurrent calls share one ``Router.score`` call, run in a worker thread). Used by the SDK, and by the
ingress for routers placed there (``placement: ingress``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from routeray.config import Config
from routeray.gateway.batching import ContinuousBatcher, Scored
from routeray.gateway.service import Score
from routeray.routers.base import Router
from routeray.routers.pool import as_pool_scorer


def check_models(cfg: Config) -> None:
    """Start-up check, before any traffic: every router knows every configured model (the tiers' or the
    pool's, by name or ``score_as``), and with a pool predicts each one's quality. Raises a
    :class:`~routeray.errors.RouterayError` naming the router, the model and the models it knows."""
    from routeray.routers.known import check_router_models

    models = cfg.pool_models() or [cfg.strong.router_model, cfg.weak.router_model]
    for r in cfg.routers:
        check_router_models(r.router, r.artifact, models, r.overrides.get("model_aliases"), pool=bool(cfg.pool))


def batch_function(router: Router, pool_models: list[str] | None) -> Callable[[list[str]], Any]:
    """What a scorer batches: ``router.score`` (P(strong wins) per prompt), or with a pool each prompt's
    row of predicted qualities, one per pool model, cheapest first."""
    if pool_models is None:
        return router.score
    scorer = as_pool_scorer(router, router.name)

    def quality(prompts: list[str]) -> list[tuple[float, ...]]:
        return [tuple(row) for row in scorer.model_quality(prompts, pool_models).tolist()]

    return quality


def as_score(r: Scored) -> Score:
    """A batcher's result as the routing service's :class:`Score`."""
    if isinstance(r.score, tuple):
        return Score(value=0.0, batch_size=r.batch_size, latency_s=r.batch_seconds, quality=r.score)
    return Score(value=r.score, batch_size=r.batch_size, latency_s=r.batch_seconds)


class LocalScorers:
    """A :data:`routeray.gateway.service.ScoreFn` over routers loaded in this process."""

    def __init__(self, cfg: Config):
        self._config = cfg
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
                self._routers[name] = load_router(name, artifact=c.artifact, **self._config.router_overrides(c))
            return self._routers[name]

    async def __call__(self, router: str, prompt: str) -> Score:
        key = (id(asyncio.get_running_loop()), router)  # a batcher's queue belongs to one event loop
        if key not in self._batchers:
            loaded = await asyncio.to_thread(self.router, router)
            c = self._cfgs[router]
            fn = batch_function(loaded, self._config.pool_models())
            self._batchers.setdefault(key, ContinuousBatcher(fn, c.max_batch_size, c.batch_wait_timeout_s,
                                                             name=f"router {router}", max_queue_s=c.max_queue_s,
                                                             admit_wait_s=c.admit_wait_s))
        return as_score(await self._batchers[key].submit(prompt))

    async def aclose(self) -> None:
        """Stop the batchers that run on the current event loop."""
        loop_id = id(asyncio.get_running_loop())
        for key in [k for k in self._batchers if k[0] == loop_id]:
            await self._batchers.pop(key).aclose()

