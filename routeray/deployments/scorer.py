"""The scorer deployment: one per configured router, holding its artifact and scoring prompts in batches.

Concurrent requests share one ``Router.score`` call (one embedding pass per batch) through a
:class:`~routeray.gateway.batching.ContinuousBatcher` (see there why not ``@serve.batch``); the call runs
in a worker thread so the replica's event loop stays free. Batch size and extra wait come from
``user_config`` and change at run time (``reconfigure``) without restarting the replica.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from ray import serve

from routeray.config import ScorerConfig
from routeray.gateway.batching import ContinuousBatcher
from routeray.gateway.scorers import batch_function

log = logging.getLogger(__name__)


class RouterScorer:
    """Serve deployment class (wrapped by :func:`scorer_deployment`). ``score(prompt)`` returns
    ``(score, batch_size, batch_seconds)``."""

    def __init__(self, scorer_cfg: dict[str, Any], load_overrides: dict[str, Any] | None = None,
                 pool_models: list[str] | None = None):
        """``load_overrides``: what ``Router.load`` gets (the tiers' model names and the router's overrides);
        ``pool_models``: with a pool, the models each prompt's quality row covers, cheapest first."""
        from routeray.routers.registry import load_router

        self.cfg = ScorerConfig.model_validate(scorer_cfg)
        t0 = time.perf_counter()
        overrides = self.cfg.overrides if load_overrides is None else load_overrides
        self.router = load_router(self.cfg.router, artifact=self.cfg.artifact, **overrides)
        fn = batch_function(self.router, pool_models)
        fn(["warm-up"])  # first call loads lazy weights; keep it off the first request
        log.info("scorer %s ready in %.1f s", self.cfg.router, time.perf_counter() - t0)
        # Batching knobs arrive through user_config: Serve calls reconfigure() right after __init__ and
        # again whenever the config's user_config changes, without restarting the replica.
        self.batcher = ContinuousBatcher(fn, self.cfg.max_batch_size, self.cfg.batch_wait_timeout_s,
                                         name=f"router {self.cfg.router}", max_queue_s=self.cfg.max_queue_s)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply ``max_batch_size`` and ``batch_wait_timeout_s`` from the deployment's user_config."""
        self.batcher.configure(max_batch_size=user_config.get("max_batch_size"),
                               wait_s=user_config.get("batch_wait_timeout_s"))
        log.info("scorer %s batching: %s", self.cfg.router, user_config)

    async def score(self, prompt: str) -> tuple[float | tuple[float, ...], int, float]:
        """Score one prompt within the next batch."""
        r = await self.batcher.submit(prompt)
        return r.score, r.batch_size, r.batch_seconds

    async def score_batch(self, prompts: list[str]) -> list[float | tuple[float, ...]]:
        """Score the prompts an ingress replica batched into one call (they join this replica's batches)."""
        results = await asyncio.gather(*(self.batcher.submit(p) for p in prompts))
        return [r.score for r in results]

    def batching(self) -> dict[str, Any]:
        """Current batching knobs and this replica's process id (for tests and operators)."""
        return {"max_batch_size": self.batcher.max_batch_size, "batch_wait_timeout_s": self.batcher.wait_s,
                "pid": os.getpid()}


def scorer_deployment(cfg: ScorerConfig, load_overrides: dict[str, Any] | None = None,
                      pool_models: list[str] | None = None) -> Any:
    """The bound scorer application for one router, with its resources, batching and autoscaling
    (``load_overrides`` and ``pool_models``: see :class:`RouterScorer`)."""
    options: dict[str, Any] = {
        "name": f"Scorer_{cfg.router}",
        "ray_actor_options": {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus},
        "max_ongoing_requests": cfg.max_ongoing_requests,
        "user_config": {"max_batch_size": cfg.max_batch_size, "batch_wait_timeout_s": cfg.batch_wait_timeout_s},
    }
    if cfg.autoscaling is not None:
        options["autoscaling_config"] = cfg.autoscaling.model_dump()
    else:
        options["num_replicas"] = 1
    # Init args leave the batching knobs out, so changing them only reconfigures the running replicas.
    init = cfg.model_dump(exclude={"max_batch_size", "batch_wait_timeout_s"})
    deployment: Any = serve.deployment(RouterScorer)
    return deployment.options(**options).bind(init, load_overrides, pool_models)
