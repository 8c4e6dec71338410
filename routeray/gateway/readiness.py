"""Whether each tier can answer yet, so a request sent while the weak engine is still starting gets a clear
503 (with ``Retry-After``) instead of the proxy's 404 passed on as a 502, and ``/ready`` says which tier is
not ready.

A tier is ready once its API has answered a probe (:meth:`OpenAIBackend.probe`; a 404 means "still
starting" only for ``engine_tiers``, the local engine behind Serve's proxy: another API may just lack a
``/models`` route); from then on its failures are the circuit breaker's and the fallbacks' business, so a
ready tier is never probed again. Probes run on demand (a chat request for the tier, ``/ready``,
``/health``), at most one per tier per ``interval_s``; concurrent callers share it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from routeray.config import Tier
from routeray.gateway.backends import OpenAIBackend


class TierReadiness:
    """Per-tier readiness, probed on demand until the tier first answers."""

    def __init__(self, backends: Mapping[Tier, OpenAIBackend], interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, engine_tiers: Collection[Tier] | None = None):
        self._backends = backends
        self._engine_tiers = set(backends if engine_tiers is None else engine_tiers)
        self.interval_s = interval_s
        self._clock = clock
        self._ready: dict[Tier, bool] = dict.fromkeys(backends, False)
        self._detail: dict[Tier, str] = dict.fromkeys(backends, "not probed yet")
        self._last: dict[Tier, float] = {}
        self._probing: dict[Tier, asyncio.Future[bool]] = {}

    async def check(self, tier: Tier) -> bool:
        """Is ``tier`` ready? Probes it when it is not and the last probe is older than ``interval_s``."""
        if self._ready[tier]:
            return True
        if tier in self._probing:
            return await asyncio.shield(self._probing[tier])
        if self._clock() - self._last.get(tier, -1e9) < self.interval_s:
            return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._probing[tier] = future
        try:
            ok, self._detail[tier] = await self._backends[tier].probe(
                missing_means_starting=tier in self._engine_tiers)
            self._ready[tier] = self._ready[tier] or ok
        finally:
            self._last[tier] = self._clock()
            del self._probing[tier]
            future.set_result(self._ready[tier])
        return self._ready[tier]

    def detail(self, tier: Tier) -> str:
        return "ready" if self._ready[tier] else self._detail[tier]

    async def snapshot(self) -> dict[str, Any]:
        """Every tier's readiness (probing those not ready), for ``/ready`` and ``/health``."""
        ready = await asyncio.gather(*(self.check(t) for t in self._backends))
        tiers = {t: {"ready": ok, "detail": self.detail(t)} for t, ok in zip(self._backends, ready, strict=True)}
        return {"ready": all(ready), "not_ready": [t for t, ok in zip(self._backends, ready, strict=True) if not ok],
                "tiers": tiers}
