"""The HTTP ingress: FastAPI glue around :class:`RoutingService`, as a Serve deployment.

Endpoints: ``POST /v1/chat/completions`` (JSON or SSE), ``GET /v1/models``, ``GET /health``,
``GET /metrics`` (Prometheus text format). Every error leaves as an OpenAI-shaped body; the status code is
chosen in one place (:data:`routeray.deployments.protocol.STATUS_BY_TYPE`). With client keys configured
(:class:`routeray.config.AccessConfig`), ``/v1/*`` and ``/stats`` need a Bearer key (401) and chat
completions are rate-limited per key (429 with ``Retry-After``); ``/health`` and ``/metrics`` stay open for
probes and scrapers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from routeray.config import Config, Tier
from routeray.deployments.access import AccessControl
from routeray.deployments.backends import OpenAIBackend
from routeray.deployments.batching import ContinuousBatcher
from routeray.deployments.overload import LoadShedder
from routeray.deployments.protocol import APIError, ChatCompletionRequest
from routeray.deployments.service import RoutingService, Score
from routeray.metrics import GatewayMetrics
from routeray.sdk import _LocalScorers

log = logging.getLogger(__name__)

api = FastAPI(title="routeray", description="OpenAI-compatible LLM routing gateway")


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


def validation_message(exc: ValidationError) -> tuple[str, str | None]:
    """A short message and the offending parameter of a pydantic validation error."""
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{param or 'body'}: {first.get('msg', 'invalid')}{more}", param


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
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError("request body must be a JSON object", code="invalid_json")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        message, param = validation_message(exc)
        raise APIError(message, param=param, code="invalid_value") from None


def _batch_call(handle: Any) -> Callable[[list[str]], Awaitable[list[float]]]:
    async def call(prompts: list[str]) -> list[float]:
        return list(await handle.score_batch.remote(prompts))

    return call


@serve.deployment(name="Gateway")
@serve.ingress(api)
class Gateway:
    """The ingress replica: owns the routing service, its backend clients and the metrics registry."""

    def __init__(self, config: dict[str, Any], scorers: dict[str, Any]):
        self.cfg = Config.model_validate(config)
        # Routers scored in their own deployment: concurrent prompts go out as one Ray call per batch (each
        # call costs milliseconds of CPU on both sides; per prompt, that capped the gateway near 100 req/s).
        self._remote = {r.router: ContinuousBatcher(_batch_call(scorers[r.router]), r.max_batch_size,
                                                    name=f"scorer {r.router} calls", max_queue_s=r.max_queue_s)
                        for r in self.cfg.routers if r.placement == "deployment"}
        local = [r for r in self.cfg.routers if r.placement == "ingress"]
        # Routers scored here share the SDK's in-process scorers: a continuous batcher per router, the
        # router's score() in a worker thread. Loaded now, so the first request does not pay for it.
        self._local = _LocalScorers(self.cfg.model_copy(update={"routers": local})) if local else None
        for r in local:
            self._local._router(r.router).score(["warm-up"])  # type: ignore[union-attr]
        backends: dict[Tier, OpenAIBackend] = {"strong": OpenAIBackend(self.cfg.strong, "strong"),
                                               "weak": OpenAIBackend(self.cfg.weak, "weak")}
        self.metrics = GatewayMetrics()
        self.access = AccessControl(self.cfg.ingress.access)
        lag_ms = self.cfg.ingress.shed_loop_lag_ms
        self.shedder = LoadShedder(None if lag_ms is None else lag_ms / 1000)
        self.metrics.loop_lag.set_function(lambda: self.shedder.lag.lag_s)
        self.service = RoutingService(self.cfg, self._score, backends, self.metrics)
        log.info("gateway ready: routers %s; strong %s at %s; weak %s at %s", self.service.routers,
                 self.cfg.strong.name, self.cfg.strong.base_url, self.cfg.weak.name, self.cfg.weak.base_url)

    async def _score(self, router: str, prompt: str) -> Score:
        if router not in self._remote:
            assert self._local is not None  # every configured router is in one of the two
            return await self._local(router, prompt)
        r = await self._remote[router].submit(prompt)
        return Score(value=r.score, batch_size=r.batch_size, latency_s=r.batch_seconds)

    @api.post("/v1/chat/completions", openapi_extra=chat_request_openapi())
    async def chat_completions(self, request: Request) -> Response:
        started = time.perf_counter()
        kind = "tier"
        try:
            # Overload, who and how often before reading the body: a refused request costs no parsing.
            self.shedder.check()
            self.access.check_rate(self.access.authenticate(request.headers.get("authorization")))
            req = await read_request(request, self.cfg.ingress.max_body_bytes)
            kind = "router" if req.model.startswith("router-") else "tier"
            decision = await self.service.decide(req, started)
            if req.stream:
                lines = await self.service.open_stream(req, decision)
                self.metrics.requests.labels(kind, "ok").inc()
                return StreamingResponse(lines, media_type="text/event-stream", headers=decision.headers())
            data = await self.service.complete(req, decision)
        except APIError as err:
            status = "client_error" if err.status < 500 else "overloaded" if err.status == 503 else "upstream_error"
            self.metrics.requests.labels(kind, status).inc()
            return error_response(err)
        self.metrics.requests.labels(kind, "ok").inc()
        return JSONResponse(data, headers=decision.headers())

    @api.get("/v1/models")
    async def list_models(self, request: Request) -> JSONResponse:
        self.access.authenticate(request.headers.get("authorization"))
        return JSONResponse(self.service.models().model_dump())

    @api.get("/health")
    async def health(self) -> JSONResponse:
        return JSONResponse({"status": "ok", "routers": self.service.routers,
                             "strong": self.cfg.strong.name, "weak": self.cfg.weak.name})

    @api.get("/stats")
    async def stats(self, request: Request) -> JSONResponse:
        """This replica's token and spend totals (see routeray.deployments.spend)."""
        self.access.authenticate(request.headers.get("authorization"))
        return JSONResponse({"spend": self.service.spend.snapshot()})

    @api.get("/metrics")
    async def metrics_text(self) -> Response:
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)
