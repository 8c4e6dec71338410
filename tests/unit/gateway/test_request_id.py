"""Request ids without Ray: the gateway's app takes the client's x-request-id (or makes one), answers with
it, and every routeray log line written while serving the request names it."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from routeray.gateway.http import create_api
from routeray.gateway.protocol import APIError
from routeray.gateway.request_id import install_log_request_ids

log = logging.getLogger("routeray.gateway.test_probe")


@pytest.fixture(scope="module")
def client() -> TestClient:
    api = create_api()

    @api.get("/probe")
    async def probe() -> dict[str, str]:
        log.warning("serving the probe")
        return {"ok": "yes"}

    @api.get("/refuse")
    async def refuse() -> dict[str, str]:
        raise APIError("no", type="rate_limit_error", retry_after_s=3)

    install_log_request_ids()
    return TestClient(api)


def test_the_clients_id_is_kept_and_logged(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="routeray"):
        r = client.get("/probe", headers={"x-request-id": "client-7f3a"})
    assert r.status_code == 200
    (record,) = [rec for rec in caplog.records if rec.name == log.name]
    assert record.getMessage() == "[request client-7f3a] serving the probe"
    assert getattr(record, "routeray_request_id", None) == "client-7f3a"


def test_an_id_is_made_when_none_is_given_and_errors_carry_it(client: TestClient,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="routeray"):
        r = client.get("/probe")
    (made,) = r.headers.get_list("x-request-id")
    assert len(made) == 32 and f"[request {made}]" in caplog.records[-1].getMessage()
    refused = client.get("/refuse")
    assert refused.status_code == 429 and len(refused.headers.get_list("x-request-id")) == 1
    assert refused.headers["retry-after"] == "3"


def test_ids_are_made_safe_for_log_lines(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="routeray"):
        client.get("/probe", headers={"x-request-id": "a b%s\n" + "x" * 500})
    message = caplog.records[-1].getMessage()
    assert message.startswith("[request a_b_s_xxx") and len(message) < 200 and "%" not in message


def test_logs_outside_a_request_are_untouched(caplog: pytest.LogCaptureFixture) -> None:
    install_log_request_ids()
    with caplog.at_level(logging.WARNING, logger="routeray"):
        log.warning("between requests")
    assert caplog.records[-1].getMessage() == "between requests"
