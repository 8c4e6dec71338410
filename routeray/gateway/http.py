"""HTTP glue shared by every server of the gateway (FastAPI, no Ray): the app with its error handlers and
request ids, the chat request reader (size limit, JSON, schema) and the OpenAPI description of the chat body."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from routeray.gateway.protocol import APIError, ChatCompletionRequest
from routeray.gateway.request_id import RequestIdMiddleware

log = logging.getLogger(__name__)


def error_response(err: APIError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one place an error becomes an HTTP response (a 429 or 503 carries its ``Retry-After``)."""
    return JSONResponse(err.to_dict(), status_code=err.status, headers={**err.headers(), **(headers or {})})


class SSEResponse(StreamingResponse):
    """A ``text/event-stream`` response whose first part (the stream's head: a token) goes out at once, before
    anything else is set up. Starlette's StreamingResponse, under a server of ASGI spec < 2.4 (uvicorn says
    2.3), first starts a task group to watch for the client leaving, which puts the first write a scheduling
    round later on a busy event loop; here that watcher starts after the first write. The rest streams as
    Starlette does, and the body iterator is closed however the response ends (so the upstream stream is)."""

    def __init__(self, content: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.body_iterator
        try:
            await self._send_start_and_head(send)
            spec = tuple(map(int, scope.get("asgi", {}).get("spec_version", "2.0").split(".")))
            if spec >= (2, 4):  # the server raises on a write to a gone client
                try:
                    await self._send_rest(send)
                except OSError:
                    raise ClientDisconnect() from None
                return
            async with anyio.create_task_group() as group:
                async def rest() -> None:
                    await self._send_rest(send)
                    group.cancel_scope.cancel()

                group.start_soon(rest)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _send_start_and_head(self, send: Send) -> None:
        head = await anext(aiter(self.body_iterator), None)
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if head is not None:
            await send({"type": "http.response.body", "body": _encoded(head), "more_body": True})

    async def _send_rest(self, send: Send) -> None:
        async for part in self.body_iterator:
            await send({"type": "http.response.body", "body": _encoded(part), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _encoded(part: str | bytes | memoryview) -> bytes | memoryview:
    return part.encode("utf-8") if isinstance(part, str) else part


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    """A JSON schema with pydantic's local ``$defs`` references inlined (OpenAPI has no ``$defs``)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline_refs(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(v, defs) for v in schema]
    return schema


def chat_request_openapi() -> dict[str, Any]:
    """The chat request body for the OpenAPI document: the handler reads the raw body itself (size limit
    while streaming it in), so FastAPI cannot infer it; schema-driven clients and fuzzers need it."""
    schema = ChatCompletionRequest.model_json_schema()
    body = _inline_refs(schema, schema.get("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}}


def validation_message(exc: ValidationError) -> tuple[str, str | None]:
    """A short message and the offending parameter of a pydantic validation error."""
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{param or 'body'}: {first.get('msg', 'invalid')}{more}", param


# Deepest JSON nesting a request may have. Tool schemas nest a few dozen levels at most; pydantic stops
# serialising (forwarding) near 255 and json.loads near 1,000 (RecursionError), which were 500s before.
MAX_JSON_DEPTH = 128


def json_depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (a scalar is 0, ``[]`` is 1); iterative, so any depth is safe."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _too_deep() -> APIError:
    return APIError(f"request body is nested too deeply (more than {MAX_JSON_DEPTH} levels of arrays and objects)",
                    code="invalid_json")


async def read_request(request: Request, max_bytes: int) -> ChatCompletionRequest:
    """Read and validate a chat request body; every problem becomes a 4xx :class:`APIError`."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise APIError(f"request body of {declared} bytes exceeds the {max_bytes}-byte limit",
                       type="request_too_large")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > max_bytes:
            raise APIError(f"request body exceeds the {max_bytes}-byte limit", type="request_too_large")
    try:
        data = json.loads(body)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise _too_deep()
    if not isinstance(data, dict):
        raise APIError("request body must be a JSON object", code="invalid_json")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        message, param = validation_message(exc)
        raise APIError(message, param=param, code="invalid_value") from None


def create_api() -> FastAPI:
    """The gateway's FastAPI app with its error handlers: every error leaves in OpenAI's shape, with the
    status code chosen in one place (:data:`routeray.gateway.protocol.STATUS_BY_TYPE`)."""
    api = FastAPI(title="routeray", description="OpenAI-compatible LLM routing gateway")
    api.add_middleware(RequestIdMiddleware)  # type: ignore[arg-type]

    @api.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @api.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(APIError(f"invalid request: {exc.errors()[:3]}"))

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error"}.get(
            exc.status_code, "invalid_request_error")
        err = APIError(str(exc.detail), type=kind)
        return JSONResponse(err.to_dict(), status_code=exc.status_code)

    @api.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(APIError(f"internal error: {type(exc).__name__}", type="server_error"))

    return api
