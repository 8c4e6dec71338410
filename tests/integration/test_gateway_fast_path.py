"""The gateway's fast path on real Ray Serve: HAProxy in front of an ingress that serves HTTP itself
(``http_proxy: haproxy``) and the router scored inside the ingress (``placement: ingress``). Every behaviour
test of ``test_gateway_faults`` runs again here against it (routing, streaming, pass-through, percentage
routing, OpenAI error shapes, fallbacks, metrics), and shutting down leaves no HAProxy behind."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from routeray.config import ScorerConfig
from tests.integration import test_gateway_faults as faults
from tests.integration.conftest import _alive, _children_named, fake_gateway
from tests.integration.test_gateway_faults import Env

pytestmark = pytest.mark.integration

# The behaviour tests of test_gateway_faults, collected here against the fast path, in their order there
# (the metrics test counts what the fault tests before it caused). Its run-time scorer reconfiguration test
# is left out: here no scorer deployment exists.
_ok_modes = faults._ok_modes
test_models_and_health = faults.test_models_and_health
test_routes_to_the_right_tier = faults.test_routes_to_the_right_tier
test_streaming_matches_openai = faults.test_streaming_matches_openai
test_fields_pass_through = faults.test_fields_pass_through
test_async_client_spreads_over_both_tiers = faults.test_async_client_spreads_over_both_tiers
test_percentage_routing_holds_the_share = faults.test_percentage_routing_holds_the_share
test_bad_requests_get_openai_errors = faults.test_bad_requests_get_openai_errors
test_openai_client_raises_typed_errors = faults.test_openai_client_raises_typed_errors
test_strong_failure_falls_back_to_weak = faults.test_strong_failure_falls_back_to_weak
test_strong_failure_falls_back_when_streaming = faults.test_strong_failure_falls_back_when_streaming
test_weak_failure_is_a_clear_error_not_a_hang = faults.test_weak_failure_is_a_clear_error_not_a_hang
test_upstream_rejection_is_passed_back_not_retried_elsewhere = (
    faults.test_upstream_rejection_is_passed_back_not_retried_elsewhere)
test_broken_stream_ends_with_an_error = faults.test_broken_stream_ends_with_an_error
test_metrics_after_traffic = faults.test_metrics_after_traffic


@pytest.fixture(scope="module")
def env(clean_ray: None) -> Iterator[Env]:
    from routeray.deployments.cli import stop

    with fake_gateway(backend=faults.BACKEND, routing=faults.ROUTING, ingress={"max_body_bytes": 64_000},
                      http_proxy="haproxy",
                      routers=[ScorerConfig(router="random", placement="ingress", max_batch_size=32)]) as gw:
        yield Env(gw)
        haproxy = _children_named("haproxy")
        assert haproxy, "HAProxy was not running: the fast path was not taken"
        t0 = time.monotonic()
        stop()
        while any(_alive(p) for p in haproxy) and time.monotonic() - t0 < 30:
            time.sleep(0.5)
    assert not any(_alive(p) for p in haproxy), "HAProxy outlived Serve's shutdown"
    assert time.monotonic() - t0 < 30


def test_no_scorer_deployment_and_no_serve_proxy_in_the_path(env: Env) -> None:
    from ray import serve

    deployments = serve.status().applications["routeray"].deployments
    assert set(deployments) == {"Gateway"}
    # HAProxy answers on the configured port and hands requests straight to the ingress replica
    assert httpx.get(f"{env.url}/health").json()["routers"] == ["random"]
    assert env.client.chat.completions.create(model="router-random-1", messages=[
        {"role": "user", "content": "hi"}]).model == "fake-weak"
