"""The HTTP ingress: FastAPI glue around :class:`RoutingService`, as a Serve deployment.

Endpoints: ``POST /v1/chat/completions`` (JSON or SSE), ``GET /v1/models``, ``GET /health`` (liveness, and
each tier's readiness), ``GET /ready`` (503 until both tiers answer), ``GET /stats``, ``GET /metrics``
(Prometheus text format), and the playground (``GET /playground``, its API under ``/playground/api/``;
:mod:`routeray.gateway.playground`). Every error leaves as an OpenAI-shaped body; the status code is
chosen in one place (:data:`routeray.gateway.protocol.STATUS_BY_TYPE`). With client keys configured
(:class:`routeray.config.AccessConfig`), ``/v1/*`` and ``/stats`` need a Bearer key (401) and chat
completions are rate-limited per key (429 with ``Retry-After``); ``/health``, ``/ready`` and ``/metrics`` stay
open for probes and scrapers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from ray import serve

from routeray.config import Config, Tier
from routeray.gateway.access import AccessControl
from routeray.gateway.backends import OpenAIBackend
from routeray.gateway.batching import ContinuousBatcher
from routeray.gateway.budgets import budgets_factory
from routeray.gateway.http import SSEResponse, chat_request_openapi, create_api, error_response, read_request
from routeray.gateway.overload import LoadShedder
from routeray.gateway.playground import ExplainRequest, page
from routeray.gateway.protocol import APIError
from routeray.gateway.readiness import TierReadiness
from routeray.gateway.request_id import install_log_request_ids
from routeray.gateway.scorers import LocalScorers, as_score, batch_function
from routeray.gateway.service import NOT_READY_RETRY_S, RoutingService, Score
from routeray.metrics import GatewayMetrics

log = logging.getLogger(__name__)

api = create_api()


def _batch_call(handle: Any) -> Callable[[list[str]], Awaitable[list[float]]]:
    async def call(prompts: list[str]) -> list[float]:
        return list(await handle.score_batch.remote(prompts))

    return call


@serve.deployment(name="Gateway")
@serve.ingress(api)
class Gateway:
    """The ingress replica: owns the routing service, its backend clients and the metrics registry."""

    def __init__(self, config: dict[str, Any], scorers: dict[str, Any]):
        install_log_request_ids()  # this replica's routeray log lines name the request they serve
        self.cfg = Config.model_validate(config)
        # Routers scored in their own deployment: concurrent prompts go out as one Ray call per batch (each
        # call costs milliseconds of CPU on both sides; per prompt, that capped the gateway near 100 req/s).
        self._remote = {r.router: ContinuousBatcher(_batch_call(scorers[r.router]), r.max_batch_size,
                                                    name=f"scorer {r.router} calls", max_queue_s=r.max_queue_s,
                                                    admit_wait_s=r.admit_wait_s)
                        for r in self.cfg.routers if r.placement == "deployment"}
        local = [r for r in self.cfg.routers if r.placement == "ingress"]
        # Routers scored here share the SDK's in-process scorers: a continuous batcher per router, the
        # router's score() in a worker thread. Loaded now, so the first request does not pay for it.
        self._local = LocalScorers(self.cfg.model_copy(update={"routers": local})) if local else None
        for r in local:
            batch_function(self._local.router(r.router), self.cfg.pool_models())(["warm-up"])  # type: ignore[union-attr]
        backends: dict[Tier, OpenAIBackend] = {key: OpenAIBackend(b, key) for key, b in self.cfg.backend_table().items()}
        self.metrics = GatewayMetrics()
        self.access = AccessControl(self.cfg.ingress.access)
        lag_ms = self.cfg.ingress.shed_loop_lag_ms
        self.shedder = LoadShedder(None if lag_ms is None else lag_ms / 1000)
        self.metrics.loop_lag.set_function(lambda: self.shedder.lag.lag_s)
        self.readiness = TierReadiness(backends, engine_tiers=[key for key, b in backends.items()
                                                               if self.cfg.behind_serve_proxy(b.cfg.base_url)])
        budgets = budgets_factory(self.cfg.ingress.access.budgets, self.access.budgets)
        self.service = RoutingService(self.cfg, self._score, backends, self.metrics, self.readiness, budgets)
        log.info("gateway ready: routers %s; %s", self.service.routers,
                 "; ".join(f"{key} {b.name} at {b.base_url}" for key, b in self.cfg.backend_table().items()))

    async def _score(self, router: str, prompt: str) -> Score:
        if router not in self._remote:
            assert self._local is not None  # every configured router is in one of the two
            return await self._local(router, prompt)
        return as_score(await self._remote[router].submit(prompt))

    @api.post("/v1/chat/completions", openapi_extra=chat_request_openapi())
    async def chat_completions(self, request: Request) -> Response:
        started = time.perf_counter()
        kind = "tier"
        try:
            # Overload, who and how often before reading the body: a refused request costs no parsing.
            self.shedder.check()
            client = self.access.authenticate(request.headers.get("authorization"))
            self.access.check_rate(client)
            req = await read_request(request, self.cfg.ingress.max_body_bytes)
            kind = "router" if req.model.startswith("router-") else "tier"
            decision = await self.service.decide(req, started, client.key_id)
            if req.stream:
                lines = await self.service.open_stream(req, decision)
                self.metrics.requests.labels(kind, "ok").inc()
                return SSEResponse(lines, headers=decision.headers())
            data = await self.service.complete(req, decision)
        except APIError as err:
            status = ("upstream_error" if err.code in ("rate_limited", "cooling_down") or err.status in (502, 504)
                      else "overloaded" if err.status == 503 else "client_error" if err.status < 500
                      else "upstream_error")
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
        """Liveness: 200 while this replica serves; the body also says whether each tier is ready."""
        ready = await self.readiness.snapshot()
        return JSONResponse({"status": "ok", "ready": ready["ready"], "routers": self.service.routers,
                             **self._backend_names(), "tiers": ready["tiers"]})

    def _backend_names(self) -> dict[str, Any]:
        if self.cfg.pool:
            return {"pool": [m.name for m in self.cfg.backend_table().values()]}
        return {"strong": self.cfg.strong.name, "weak": self.cfg.weak.name}

    @api.get("/ready")
    async def ready(self) -> JSONResponse:
        """Readiness: 200 once both tiers answer; until then 503, naming the tiers not ready (and why)."""
        ready = await self.readiness.snapshot()
        body = {"status": "ready" if ready["ready"] else "starting", **ready}
        headers = {} if ready["ready"] else {"Retry-After": str(int(NOT_READY_RETRY_S))}
        return JSONResponse(body, status_code=200 if ready["ready"] else 503, headers=headers)

    @api.get("/stats")
    async def stats(self, request: Request) -> JSONResponse:
        """This replica's token and spend totals (see routeray.gateway.spend) and, with budgets, the calling
        key's own budget, spend and what remains (never another key's)."""
        client = self.access.authenticate(request.headers.get("authorization"))
        body: dict[str, Any] = {"spend": self.service.spend.snapshot()}
        if self.service.budgets is not None:
            body["key"] = await self.service.budgets.status(client.key_id)
        return JSONResponse(body)

    @api.get("/playground", response_class=HTMLResponse)
    async def playground(self) -> HTMLResponse:
        """The playground page (no data in it: every call it makes needs a client key)."""
        return HTMLResponse(page())

    @api.post("/playground/api/explain")
    async def playground_explain(self, request: Request) -> JSONResponse:
        """Each router's score for a prompt and what a model name would decide; nothing goes upstream."""
        client = self.access.authenticate(request.headers.get("authorization"))
        self.access.check_rate(client)
        try:
            body = ExplainRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise APIError(f"invalid request: {exc.errors()[0].get('msg')}", code="invalid_value") from None
        return JSONResponse(await self.service.explain(body.prompt, body.model))

    @api.get("/playground/api/shares")
    async def playground_shares(self, request: Request) -> JSONResponse:
        """Each router's live strong share (the playground's chart)."""
        self.access.authenticate(request.headers.get("authorization"))
        return JSONResponse({"routers": self.service.shares(), "time": time.time()})

    @api.get("/metrics")
    async def metrics_text(self) -> Response:
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)
