"""The soak of ``test_replica_faults_soak`` with HAProxy in front of ingress replicas that serve HTTP
themselves (``http_proxy: haproxy``): same gateway config, rate, length (``ROUTERAY_SOAK_S``) and checks (no
failed request, flat memory). No Serve proxy is in the path here: the memory watched is the Gateway and
Scorer replicas', Serve's HAProxy manager actor's and the haproxy process's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration import test_replica_faults_soak as soak
from tests.integration.conftest import fake_gateway

pytestmark = [pytest.mark.integration, pytest.mark.slow]

test_fixed_rate_soak_has_no_failures_and_flat_memory = soak.test_fixed_rate_soak_has_no_failures_and_flat_memory


@pytest.fixture(scope="module")
def url(clean_ray: None) -> Iterator[str]:
    with fake_gateway(http_proxy="haproxy", **soak.GATEWAY) as gw:
        yield gw.url


@pytest.fixture(scope="module")
def watched() -> tuple[str, ...]:
    return "ServeReplica:routeray:Gateway", "ServeReplica:routeray:Scorer_random", "HAProxyManager", "haproxy -db"
