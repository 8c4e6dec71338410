"""The schema fuzzing of ``test_fuzz_gateway`` again, with HAProxy in front of ingress replicas that serve
HTTP themselves (``http_proxy: haproxy``): same gateway config, same checks (no 5xx, the gateway keeps
answering), a shorter budget so the second mode adds well under two minutes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration import test_fuzz_gateway as fuzz
from tests.integration.conftest import _children_named, fake_gateway
from tests.integration.test_fuzz_gateway import Budget

pytestmark = pytest.mark.integration

test_openapi_describes_the_chat_body = fuzz.test_openapi_describes_the_chat_body
test_schemathesis_finds_no_server_error = fuzz.test_schemathesis_finds_no_server_error


@pytest.fixture(scope="module")
def budget() -> Budget:
    return Budget(max_examples=200, max_time_s=30, min_requests=300, min_ok=30)


@pytest.fixture(scope="module")
def gateway(clean_ray: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fake_gateway(http_proxy="haproxy", **fuzz.fuzz_config(tmp_path_factory)) as gw:
        assert _children_named("haproxy"), "HAProxy is not running: the fast path was not taken"
        yield gw.url
