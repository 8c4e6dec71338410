"""HTTP glue shared by every server of the gateway (FastAPI, no Ray): the app with its error handlers and
request ids, the chat request reader (size limit, JSON, schema) and the OpenAPI description of the chat body."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from routeray.gateway.protocol import APIError, ChatCompletionRequest
from routeray.gateway.request_id import RequestIdMiddleware

log = logging.getLogger(__name__)


def error_response(err: APIError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one place an error becomes an HTTP response (a 429 or 503 carries its ``Retry-After``)."""
    return JSONResponse(err.to_dict(), status_code=err.status, headers={**err.headers(), **(headers or {})})


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
