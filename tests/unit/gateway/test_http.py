"""Ingress glue without Ray: body reading and validation, error shapes and status codes, wire models."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.requests import Request

from routeray.gateway.http import error_response, read_request
from routeray.gateway.protocol import STATUS_BY_TYPE, APIError, ChatCompletionRequest


def _request(body: bytes, headers: dict[str, str] | None = None, chunk: int = 1 << 16) -> Request:
    parts = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]

    async def receive() -> dict:
        part = parts.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(parts)}

    hdrs = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": hdrs}, receive)


def _read(body: bytes, headers: dict[str, str] | None = None, limit: int = 10_000) -> ChatCompletionRequest:
    return asyncio.run(read_request(_request(body, headers, chunk=1000), limit))


def test_reads_a_valid_request_keeping_unknown_fields() -> None:
    req = _read(json.dumps({"model": "router-mf-0.1", "messages": [{"role": "user", "content": "hi"}],
                            "tools": [{"type": "function"}], "seed": 3}).encode())
    body = req.upstream_body("backend-model")
    assert body["model"] == "backend-model" and body["tools"] == [{"type": "function"}] and body["seed"] == 3
    assert "temperature" not in body  # unset fields are not invented


@pytest.mark.parametrize(("body", "param"), [
    (b'{"model": "m", "messages": [{"role": "user", "content": 5}]}', "messages.0.content"),
    (b'{"model": "m", "messages": [{"role": "user"}], "n": 0}', "n"),
    (b'{"model": "m", "messages": [{"role": "user"}], "max_tokens": -1}', "max_tokens"),
])
def test_wrong_types_name_the_parameter(body: bytes, param: str) -> None:
    with pytest.raises(APIError) as info:
        _read(body)
    assert info.value.status == 400 and (info.value.param or "").startswith(param)


def test_body_limits_are_413_whether_declared_or_streamed() -> None:
    big = b'{"model": "m", "messages": [{"role": "user", "content": "' + b"x" * 20_000 + b'"}]}'
    for headers in ({"content-length": str(len(big))}, {}):
        with pytest.raises(APIError) as info:
            _read(big, headers)
        assert info.value.status == 413


@pytest.mark.parametrize("depth", [100_000, 2_000, 300])
def test_deeply_nested_bodies_are_a_400_not_a_500(depth: int) -> None:
    """Under the size limit, nested past what parsing (RecursionError) or forwarding (pydantic's serialisation
    depth) can take: the client's mistake, said as such."""
    nested = b"[" * depth + b"]" * depth
    for body in (nested, b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "x": ' + nested + b"}"):
        with pytest.raises(APIError) as info:
            _read(body, limit=1_000_000)
        assert info.value.status == 400 and "nested too deeply" in info.value.message
        assert info.value.code == "invalid_json"


def test_reasonably_nested_fields_pass_through() -> None:
    schema: dict = {"type": "string"}
    for _ in range(30):  # a deep tool schema: 60 levels of objects
        schema = {"type": "object", "properties": {"a": schema}}
    req = _read(json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                            "tools": [{"type": "function", "function": {"parameters": schema}}]}).encode(),
                limit=1_000_000)
    assert json.loads(json.dumps(req.upstream_body("b")))["tools"][0]["function"]["parameters"] == schema


def test_errors_have_openai_shape_and_mapped_status() -> None:
    resp = error_response(APIError("nope", type="upstream_error", code="timeout"))
    assert resp.status_code == 502
    assert json.loads(resp.body) == {"error": {"message": "nope", "type": "upstream_error", "param": None,
                                               "code": "timeout"}}
    assert STATUS_BY_TYPE["invalid_request_error"] == 400 and STATUS_BY_TYPE["request_too_large"] == 413
    assert APIError("x", type="something new").status == 500


def test_routing_text_is_the_last_user_turn() -> None:
    req = ChatCompletionRequest.model_validate({"model": "m", "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url", "image_url": {}}]}]})
    assert req.routing_text() == "second"
    assert req.routing_text("all_user") == "first\n\nsecond"


def _run_sse(parts: list[str], spec: str, disconnect_after: int | None = None) -> tuple[list[dict], bool]:
    """Serve an SSEResponse over plain ASGI; the messages sent, and whether the body iterator was closed by
    the time the response returned."""
    from routeray.gateway.http import SSEResponse

    closed = False
    sent: list[dict] = []

    async def body():
        nonlocal closed
        try:
            for part in parts:
                yield part
                await asyncio.sleep(0)
        finally:
            closed = True

    async def receive() -> dict:
        if disconnect_after is None:
            await asyncio.sleep(3600)
        while len(sent) < disconnect_after:
            await asyncio.sleep(0)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)
        if disconnect_after is not None and len(sent) > disconnect_after:
            await asyncio.sleep(3600)  # a client that left: the rest never gets out

    async def serve() -> bool:
        scope = {"type": "http", "asgi": {"spec_version": spec}}
        await asyncio.wait_for(SSEResponse(body(), headers={"x-routeray-tier": "weak"})(scope, receive, send), 5)
        return closed  # when the response returned, not when asyncio.run finalised leftover generators

    return sent, asyncio.run(serve())


@pytest.mark.parametrize("spec", ["2.3", "2.4"])
def test_sse_response_sends_the_head_then_each_part_then_ends(spec: str) -> None:
    sent, closed = _run_sse(["data: a\n\ndata: b\n\n", "data: c\n\n", "data: [DONE]\n\n"], spec)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream") and headers[b"x-routeray-tier"] == b"weak"
    assert [m["body"] for m in sent[1:]] == [b"data: a\n\ndata: b\n\n", b"data: c\n\n", b"data: [DONE]\n\n", b""]
    assert [m["more_body"] for m in sent[1:]] == [True, True, True, False]
    assert closed


def test_sse_response_stops_reading_when_the_client_leaves() -> None:
    """Under uvicorn's ASGI 2.3 the client's leaving is only seen on receive(): the stream stops there and
    the body iterator (the upstream stream) is closed, not read to its end."""
    sent, closed = _run_sse([f"data: {i}\n\n" for i in range(1000)], "2.3", disconnect_after=3)
    assert len(sent) < 10 and closed
