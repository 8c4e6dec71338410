"""Routing without a server: a drop-in for the ``openai`` client that scores prompts locally and calls the
two backends directly, through the same :class:`~routeray.gateway.service.RoutingService` (model-name
parsing, decisions, percentage routing, fallbacks, backend client, metrics) as the gateway.

    from routeray.sdk import Router
    client = Router(strong={"name": "gpt-4o", "base_url": "https://api.openai.com/v1",
                            "api_key_env": "OPENAI_API_KEY"},
                    weak={"name": "SmolLM2-135M-Instruct", "base_url": "http://127.0.0.1:8000/weak/v1"},
                    routers=["mf"])
    resp = client.chat.completions.create(model="router-mf-0.116", messages=[...])
    resp.model  # which backend answered

``AsyncRouter`` is the ``openai.AsyncOpenAI`` counterpart. Responses are the ``openai`` package's own types
(``ChatCompletion``, ``ChatCompletionChunk``); errors are ``openai.APIStatusError`` subclasses.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from routeray.config import BackendConfig, Config, EngineConfig, PoolModelConfig, RoutingConfig, ScorerConfig
from routeray.gateway.backends import OpenAIBackend
from routeray.gateway.protocol import APIError, ChatCompletionRequest
from routeray.gateway.scorers import LocalScorers, check_models
from routeray.gateway.service import RoutingService
from routeray.metrics import GatewayMetrics

try:
    import httpx2 as _httpx  # what openai >= 3 uses
except ImportError:  # pragma: no cover - openai 1.x/2.x use httpx
    import httpx as _httpx  # type: ignore[no-redef]

log = logging.getLogger(__name__)
T = TypeVar("T")

_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError, 401: openai.AuthenticationError, 404: openai.NotFoundError,
    429: openai.RateLimitError,
}


def _as_openai_error(err: APIError) -> openai.APIStatusError:
    cls = _ERRORS.get(err.status, openai.InternalServerError if err.status >= 500 else openai.APIStatusError)
    # openai builds its errors around its own copy of httpx (httpx2 in openai 3.x)
    response = _httpx.Response(err.status, json=err.to_dict(),
                               request=_httpx.Request("POST", "http://routeray-sdk/chat/completions"))
    return cls(err.message, response=response, body=err.to_dict()["error"])


def _config(strong: BackendConfig | dict[str, Any] | None, weak: BackendConfig | dict[str, Any] | None,
            routers: list[str | ScorerConfig | dict[str, Any]], routing: RoutingConfig | dict[str, Any] | None,
            pool: list[PoolModelConfig | dict[str, Any]] | None = None) -> Config:
    scorers = [ScorerConfig(router=r) if isinstance(r, str) else ScorerConfig.model_validate(r) for r in routers]
    args: dict[str, Any] = {"routers": scorers, "engine": EngineConfig(enabled=weak is None and not pool)}
    if strong is not None:
        args["strong"] = BackendConfig.model_validate(strong)
    if weak is not None:
        args["weak"] = BackendConfig.model_validate(weak)
    if pool:
        args["pool"] = [PoolModelConfig.model_validate(m) for m in pool]
    if routing is not None:
        args["routing"] = RoutingConfig.model_validate(routing)
    cfg = Config.model_validate(args).resolved()  # pydantic's error names the field
    check_models(cfg)  # every configured model known to every router, before the first request
    return cfg


class _AsyncCompletions:
    def __init__(self, owner: AsyncRouter):
        self._owner = owner

    async def create(self, **kwargs: Any) -> ChatCompletion | AsyncIterator[ChatCompletionChunk]:
        """Same arguments as ``openai.AsyncOpenAI().chat.completions.create``."""
        service = self._owner._service()
        started = time.perf_counter()
        kwargs = {**kwargs, **(kwargs.pop("extra_body", None) or {})}
        for transport_only in ("extra_headers", "extra_query", "timeout"):
            kwargs.pop(transport_only, None)
        try:
            req = ChatCompletionRequest.model_validate(kwargs)
        except ValueError as exc:
            raise _as_openai_error(APIError(f"invalid request: {exc}")) from None
        try:
            decision = await service.decide(req, started)
            if req.stream:
                lines = await service.open_stream(req, decision)
                return _chunks(lines)
            data = await service.complete(req, decision)
        except APIError as err:
            raise _as_openai_error(err) from None
        return ChatCompletion.model_validate(data)


async def _chunks(lines: AsyncIterator[str]) -> AsyncIterator[ChatCompletionChunk]:
    import json

    try:
        async for part in lines:  # one or more SSE events ("data: ...\n\n") per part
            for event in part.split("\n\n"):
                payload = event.removeprefix("data: ").strip()
                if not payload:
                    continue
                if payload == "[DONE]":
                    return
                data = json.loads(payload)
                if "error" in data:
                    raise _as_openai_error(APIError(data["error"]["message"], type="upstream_error"))
                yield ChatCompletionChunk.model_validate(data)
    finally:  # closes the upstream stream and settles its budget now, on this loop, however the stream ends
        aclose = getattr(lines, "aclose", None)
        if aclose is not None:
            await aclose()


async def _next(agen: AsyncIterator[T]) -> T:
    return await anext(agen)


class _Namespace:
    def __init__(self, **kw: Any):
        self.__dict__.update(kw)

    def __getattr__(self, name: str) -> Any:  # for type checkers: attributes are set in __init__
        raise AttributeError(name)


class AsyncRouter:
    """Async drop-in for ``openai.AsyncOpenAI``: ``await client.chat.completions.create(...)``."""

    def __init__(self, strong: BackendConfig | dict[str, Any] | None = None,
                 weak: BackendConfig | dict[str, Any] | None = None,
                 routers: list[str | ScorerConfig | dict[str, Any]] | None = None,
                 routing: RoutingConfig | dict[str, Any] | None = None,
                 pool: list[PoolModelConfig | dict[str, Any]] | None = None):
        """Two tiers (``strong``, ``weak``) or a ``pool`` of priced models (see :class:`Config`)."""
        self.config = _config(strong, weak, routers or ["mf"], routing, pool)
        self.metrics = GatewayMetrics()
        self._scorers = LocalScorers(self.config)
        self._services: dict[int, RoutingService] = {}
        self.chat = _Namespace(completions=_AsyncCompletions(self))

    def _service(self) -> RoutingService:
        # httpx clients belong to one event loop: one service per loop that uses this client
        loop_id = id(asyncio.get_running_loop())
        if loop_id not in self._services:
            backends = {key: OpenAIBackend(b, key) for key, b in self.config.backend_table().items()}
            self._services[loop_id] = RoutingService(self.config, self._scorers, backends, self.metrics)
        return self._services[loop_id]

    def models(self) -> list[str]:
        """Model names this client accepts (an example per router, and every backend)."""
        backends = {key: _Stub(b) for key, b in self.config.backend_table().items()}
        service = RoutingService(self.config, self._scorers, backends, self.metrics)  # type: ignore[arg-type]
        return [m.id for m in service.models().data]

    async def close(self) -> None:
        services, self._services = list(self._services.values()), {}
        for s in services:
            await s.aclose()
        await self._scorers.aclose()


class _Stub:
    def __init__(self, cfg: BackendConfig):
        self.cfg = cfg
        self.name = cfg.name


class _SyncCompletions:
    def __init__(self, owner: Router):
        self._owner = owner

    def create(self, **kwargs: Any) -> ChatCompletion | Iterator[ChatCompletionChunk]:
        """Same arguments as ``openai.OpenAI().chat.completions.create``."""
        result = self._owner._run(self._owner._async.chat.completions.create(**kwargs))
        if isinstance(result, ChatCompletion):
            return result
        return self._owner._iterate(result)


class Router:
    """Sync drop-in for ``openai.OpenAI``: ``client.chat.completions.create(model="router-mf-0.116", ...)``.
    Runs an event loop in a background thread; call :meth:`close` (or use ``with``) when done."""

    def __init__(self, strong: BackendConfig | dict[str, Any] | None = None,
                 weak: BackendConfig | dict[str, Any] | None = None,
                 routers: list[str | ScorerConfig | dict[str, Any]] | None = None,
                 routing: RoutingConfig | dict[str, Any] | None = None,
                 pool: list[PoolModelConfig | dict[str, Any]] | None = None):
        self._async = AsyncRouter(strong, weak, routers, routing, pool)
        self.config = self._async.config
        self.metrics = self._async.metrics
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="routeray-sdk", daemon=True)
        self._thread.start()
        self.chat = _Namespace(completions=_SyncCompletions(self))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result()

    def _iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        while True:
            try:
                yield self._run(_next(agen))
            except StopAsyncIteration:
                return

    def models(self) -> list[str]:
        return self._async.models()

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._async.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
