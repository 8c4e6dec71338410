"""Load shedding: the event-loop lag ticker sees a blocked loop, the shedder refuses with a 503 in OpenAI's
shape while the loop is behind, and lets requests in again once it has caught up."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from routeray.config import IngressConfig
from routeray.gateway.http import error_response
from routeray.gateway.overload import LoadShedder, LoopLag, Overloaded


def test_lag_estimate_jumps_to_a_late_tick_and_decays_after_it() -> None:
    lag = LoopLag(interval_s=0.05, decay_per_s=0.001)
    lag.observe(0.4)
    assert lag.lag_s == pytest.approx(0.4)
    lag.observe(0.01)  # a smaller reading does not hide the recent peak at once
    assert 0.2 < lag.lag_s < 0.4
    for _ in range(20):  # one second of on-time ticks
        lag.observe(0.0)
    assert lag.lag_s < 0.4 * 0.0011
    lag.observe(-0.01)  # a tick that woke early is no lag
    assert lag.lag_s >= 0.0


async def _block_loop_then_check(shedder: LoadShedder, block_s: float) -> tuple[bool, bool]:
    """(refused right after blocking the loop, refused again after it has been free for a while)."""
    shedder.check()  # starts the ticker
    await asyncio.sleep(0.12)  # a few on-time ticks
    time.sleep(block_s)  # a handler hogging the loop (CPU-bound work, a blocking call)
    await asyncio.sleep(0.06)  # let the ticker wake, late
    refused_now = _refused(shedder)
    await asyncio.sleep(2.0)
    refused_later = _refused(shedder)
    shedder.lag.stop()
    return refused_now, refused_later


def _refused(shedder: LoadShedder) -> bool:
    try:
        shedder.check()
    except Overloaded:
        return True
    return False


def test_a_blocked_loop_is_shed_then_served_again() -> None:
    # limits far from a busy machine's scheduling delays: a 0.8 s block against a 0.25 s limit
    shedder = LoadShedder(max_lag_s=0.25)
    refused_now, refused_later = asyncio.run(_block_loop_then_check(shedder, block_s=0.8))
    assert refused_now and not refused_later


def test_shedding_off_never_refuses_but_still_measures() -> None:
    shedder = LoadShedder(max_lag_s=None)

    async def run() -> tuple[bool, float]:
        shedder.check()
        await asyncio.sleep(0.06)
        time.sleep(0.3)
        await asyncio.sleep(0.06)
        refused, lag = _refused(shedder), shedder.lag.lag_s
        shedder.lag.stop()
        return refused, lag

    refused, lag = asyncio.run(run())
    assert not refused and lag > 0.15


def test_overloaded_is_a_503_in_openai_shape_with_retry_after() -> None:
    resp = error_response(Overloaded(lag_s=0.75, limit_s=0.25))
    body = json.loads(resp.body)
    assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
    assert body["error"]["type"] == "overloaded_error" and body["error"]["code"] == "overloaded"
    assert "750 ms behind" in body["error"]["message"] and "250 ms" in body["error"]["message"]


def test_config_takes_a_positive_lag_limit_or_none() -> None:
    assert IngressConfig().shed_loop_lag_ms is None
    assert IngressConfig(shed_loop_lag_ms=250).shed_loop_lag_ms == 250
    with pytest.raises(ValueError):
        IngressConfig(shed_loop_lag_ms=0)
