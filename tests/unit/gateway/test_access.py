"""Client access control without Ray: key loading, Bearer authentication, per-key rate limits (429 with
Retry-After), and the config refusing literal keys."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from routeray.config import AccessConfig, IngressConfig
from routeray.errors import RouterayError
from routeray.gateway.access import (
    AccessControl,
    KeyLimits,
    RateLimited,
    TokenBucket,
    key_id,
    load_keys,
    parse_key_file,
)
from routeray.gateway.http import error_response
from routeray.gateway.protocol import APIError


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_keys_from_env_and_file(tmp_path) -> None:
    f = tmp_path / "keys.txt"
    f.write_text("# clients\nsk-file-a 120\n\nsk-file-b  # no own limit\nsk-c usd=2.5\nsk-d rpm=60 usd=0.1\n"
                 "sk-e 30 usd=1\n")
    keys = load_keys(AccessConfig(api_keys_env="K", api_keys_file=str(f)), {"K": "sk-env-1, sk-env-2"})
    assert keys == {"sk-env-1": KeyLimits(), "sk-env-2": KeyLimits(), "sk-file-a": KeyLimits(120.0),
                    "sk-file-b": KeyLimits(), "sk-c": KeyLimits(None, 2.5), "sk-d": KeyLimits(60.0, 0.1),
                    "sk-e": KeyLimits(30.0, 1.0)}
    assert load_keys(AccessConfig(), {}) == {}
    budgets = AccessControl(AccessConfig(api_keys_file=str(f), budgets={"usd_per_period": 9}), {}).budgets
    assert budgets[key_id("sk-c")] == 2.5 and budgets[key_id("sk-file-a")] == 9


@pytest.mark.parametrize(("text", "line"), [("sk-a\nsk-b fast\n", 2), ("sk-a 1 2\n", 1), ("sk-a -5\n", 1),
                                            ("sk-a nan\n", 1), ("sk-a usd=-1\n", 1), ("sk-a usd=1 usd=2\n", 1),
                                            ("sk-a eur=3\n", 1)])
def test_bad_key_file_names_file_and_line(tmp_path, text: str, line: int) -> None:
    f = tmp_path / "keys.txt"
    f.write_text(text)
    with pytest.raises(RouterayError, match=f"keys.txt:{line}:"):
        parse_key_file(f)


def test_missing_key_sources_are_clear_errors(tmp_path) -> None:
    with pytest.raises(RouterayError, match=r"\$CLIENT_KEYS"):
        load_keys(AccessConfig(api_keys_env="CLIENT_KEYS"), {})
    with pytest.raises(RouterayError, match="cannot read"):
        load_keys(AccessConfig(api_keys_file=str(tmp_path / "absent")), {})
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(RouterayError, match="none were found"):
        load_keys(AccessConfig(api_keys_file=str(tmp_path / "empty")), {})


def test_config_has_no_place_for_literal_keys() -> None:
    with pytest.raises(ValidationError):
        IngressConfig.model_validate({"access": {"api_keys": ["sk-literal"]}})
    assert IngressConfig().access.api_keys_env is None  # off by default, no working default key


def test_authentication() -> None:
    ac = AccessControl(AccessConfig(api_keys_env="K"), {"K": "sk-good"})
    assert ac.enabled
    assert ac.authenticate("Bearer sk-good").key_id == key_id("sk-good")
    assert "sk-good" not in key_id("sk-good")
    for header, code in [(None, "missing_api_key"), ("", "missing_api_key"), ("Basic sk-good", "missing_api_key"),
                         ("Bearer ", "missing_api_key"), ("Bearer sk-bad", "invalid_api_key"),
                         ("Bearer sk-good2", "invalid_api_key")]:
        with pytest.raises(APIError) as info:
            ac.authenticate(header)
        assert info.value.status == 401 and info.value.code == code
        assert "sk-good" not in info.value.message


def test_keys_off_lets_everyone_in() -> None:
    ac = AccessControl(AccessConfig(), {})
    assert not ac.enabled and ac.authenticate(None).key_id == "anonymous"


def test_rate_limit_per_key_with_retry_after() -> None:
    clock = Clock()
    ac = AccessControl(AccessConfig(api_keys_env="K", rate_limit_per_minute=60, rate_limit_burst=3),
                       {"K": "sk-a sk-b"}, clock=clock)
    a, b = ac.authenticate("Bearer sk-a"), ac.authenticate("Bearer sk-b")
    for _ in range(3):
        ac.check_rate(a)
    with pytest.raises(RateLimited) as info:
        ac.check_rate(a)
    err = info.value
    assert err.status == 429 and err.type == "rate_limit_error" and err.retry_after_s == 1
    ac.check_rate(b)  # another key has its own bucket
    clock.t += 1.0  # 60/min refills one request per second
    ac.check_rate(a)
    with pytest.raises(RateLimited):
        ac.check_rate(a)


def test_key_file_limit_overrides_the_default(tmp_path) -> None:
    f = tmp_path / "keys"
    f.write_text("sk-slow 6\nsk-default\n")
    clock = Clock()
    ac = AccessControl(AccessConfig(api_keys_file=str(f), rate_limit_per_minute=600, rate_limit_burst=50), {},
                       clock=clock)
    slow = ac.authenticate("Bearer sk-slow")
    ac.check_rate(slow)  # its own rate: burst = max(1, one second's worth) = 1, not the default burst
    with pytest.raises(RateLimited) as info:
        ac.check_rate(slow)
    assert info.value.retry_after_s == 10  # 6/min: one every 10 s
    fast = ac.authenticate("Bearer sk-default")
    for _ in range(10):
        ac.check_rate(fast)


def test_token_bucket_refills_to_burst_only() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_per_s=2.0, burst=2, clock=clock)
    assert bucket.take() == bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.5)
    clock.t += 3600
    assert [bucket.take() == 0.0 for _ in range(3)] == [True, True, False]


def test_429_response_has_openai_shape_and_retry_after() -> None:
    resp = error_response(RateLimited("slow down", 7))
    assert resp.status_code == 429 and resp.headers["retry-after"] == "7"
    body = json.loads(bytes(resp.body))
    assert body == {"error": {"message": "slow down", "type": "rate_limit_error", "param": None,
                              "code": "rate_limit_exceeded"}}
    assert error_response(APIError("no", type="authentication_error")).status_code == 401
