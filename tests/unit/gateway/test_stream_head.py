"""A stream's head: the gateway starts its response with the first chunk that carries output, so a tier
that breaks after the opening chunk but before its first token still falls back, and the first write holds
the token. Which chunks only open the answer is tested here; the head through the SDK's RoutingService (the
first write, fallback before the first token, an error after it) in tests/unit/test_sdk.py."""

from __future__ import annotations

import pytest

from routeray.gateway.service import _opens_only


def _chunk(delta: dict | None = None, finish: str | None = None, **extra: object) -> dict:
    return {"choices": [{"index": 0, "delta": delta if delta is not None else {}, "finish_reason": finish}],
            **extra}


@pytest.mark.parametrize(("chunk", "opens_only"), [
    (_chunk({"role": "assistant", "content": ""}), True),
    (_chunk({"role": "assistant"}), True),
    (_chunk({"role": "assistant", "content": None, "tool_calls": []}), True),
    (_chunk({"content": "Hi"}), False),
    (_chunk({"role": "assistant", "content": "Hi"}), False),
    (_chunk({"tool_calls": [{"index": 0, "function": {"name": "f"}}]}), False),
    (_chunk({"reasoning_content": "think"}), False),
    (_chunk({}, "stop"), False),
    (_chunk({"role": "assistant", "content": ""}, usage={"prompt_tokens": 1}), False),
    ({"choices": [], "usage": {"prompt_tokens": 1}}, False),
    ({"choices": "garbage"}, False),
])
def test_which_chunks_only_open_the_answer(chunk: dict, opens_only: bool) -> None:
    assert _opens_only(chunk) is opens_only
