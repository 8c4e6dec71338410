"""Clients for the two tiers: any OpenAI-compatible chat completions API, over async httpx.

The strong tier is a hosted API; the weak tier is the local vLLM engine (``ray.serve.llm``'s OpenAI app on
Serve's proxy), so both go through this one client. Timeouts on connect, on every streamed chunk and on
the whole answer; retries with exponential backoff and jitter on connect errors, 5xx and a 429 without
``Retry-After``, only before the first byte; answers that are not OpenAI-shaped are errors, never passed on.
A 429 with ``Retry-After`` is not retried: the tier cools down that long (calls are refused at once, so the
other tier answers), and a 429 that outlasts the retries counts against the circuit breaker. The optional
breaker (``breaker_failures``) stops calling a tier that keeps failing, so fallbacks do not wait for its
timeouts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from routeray.config import BackendConfig, Tier

log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(eq=False)
class BackendError(Exception):
    """A failed backend call. ``reason`` is a metric tag: connect, timeout, status_4xx, status_5xx,
    rate_limited (a 429), cooling_down (not called: a 429's Retry-After has not expired), circuit_open,
    not_ready, bad_response or stream. ``client_fault`` marks upstream 400/422 answers caused by the request
    itself; ``retry_after_s`` says when the tier may be called again."""

    tier: Tier
    reason: str
    detail: str
    status: int | None = None
    client_fault: bool = False
    retry_after_s: float | None = None

    def __post_init__(self) -> None:
        super().__init__(f"{self.tier} backend: {self.detail}")

    def __str__(self) -> str:
        return f"{self.tier} backend: {self.detail}"

    def __reduce__(self) -> tuple[Any, ...]:  # pickle by fields (Exception's default passes only the message)
        return (BackendError, (self.tier, self.reason, self.detail, self.status, self.client_fault, self.retry_after_s))

    @property
    def rate_limited(self) -> bool:
        return self.reason in ("rate_limited", "cooling_down")


class CircuitBreaker:
    """Closed until ``failures`` consecutive calls fail; then open for ``cooldown_s`` (calls are refused at
    once); then half-open: one trial call goes through while the others are still refused, and its outcome
    closes or reopens the breaker. ``failures = 0`` turns it off."""

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic):
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._count = 0
        self._open_until = 0.0
        self._trial = False

    def allow(self) -> bool:
        """May a call go out now? (Claims the trial when half-open.)"""
        if self.failures <= 0 or self._count < self.failures:
            return True
        if self._clock() < self._open_until or self._trial:
            return False
        self._trial = True
        return True

    def succeeded(self) -> None:
        self._count, self._trial = 0, False

    def failed(self) -> None:
        self._count += 1
        self._trial = False
        if self.failures > 0 and self._count >= self.failures:
            self._open_until = self._clock() + self.cooldown_s

    def abandoned(self) -> None:
        """A call ended without a verdict (cancelled): free the trial slot."""
        self._trial = False

    def retry_in(self) -> float:
        return max(0.0, self._open_until - self._clock())


class OpenAIBackend:
    """One OpenAI-compatible API. Create it inside the process that uses it (it owns a connection pool)."""

    def __init__(self, cfg: BackendConfig, tier: Tier, environ: Mapping[str, str] | None = None):
        if not cfg.base_url:
            raise ValueError(f"{tier} backend {cfg.name!r} has no base_url (resolve the config first)")
        self.cfg = cfg
        self.tier = tier
        self.name = cfg.name
        env = os.environ if environ is None else environ
        headers = {"Content-Type": "application/json"}
        key = env.get(cfg.api_key_env) if cfg.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._url = cfg.base_url.rstrip("/") + "/chat/completions"
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s, read=cfg.read_timeout_s),
            limits=httpx.Limits(max_connections=cfg.max_connections,
                                max_keepalive_connections=cfg.max_connections),
        )
        self.breaker = CircuitBreaker(cfg.breaker_failures, cfg.breaker_cooldown_s)
        self._cool_until = 0.0  # monotonic time before which an upstream 429's Retry-After forbids calls

    async def aclose(self) -> None:
        await self._client.aclose()

    async def probe(self, timeout_s: float = 2.0, missing_means_starting: bool = True) -> tuple[bool, str]:
        """Does the API answer yet? ``GET {base_url}/models``: any answer but a 5xx counts, even a refused key
        (the API is up; the calls will say why). A 404 counts as not ready when ``missing_means_starting`` (the
        local engine: Serve's proxy answers 404 until the engine's route exists); from any other upstream it
        is an API without a ``/models`` route, which is up."""
        url = f"{self.cfg.base_url.rstrip('/')}/models" if self.cfg.base_url else ""
        try:
            resp = await self._client.get(url, timeout=timeout_s)
        except httpx.HTTPError as exc:
            return False, f"GET {url}: {type(exc).__name__}"
        if (resp.status_code == 404 and missing_means_starting) or resp.status_code >= 500:
            return False, f"GET {url}: HTTP {resp.status_code}"
        return True, f"GET {url}: HTTP {resp.status_code}"

    def _body(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "model": self.cfg.upstream_model}

    async def _guarded(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """``await call()`` under the upstream's cool-down and the circuit breaker: refused at once while
        either holds; a 4xx answer means the upstream is up, any other failure (connect, timeout, 5xx, 429,
        bad answer) counts against it."""
        wait = self._cool_until - time.monotonic()
        if wait > 0:
            raise BackendError(self.tier, "cooling_down", f"not called: the upstream answered 429 with "
                               f"Retry-After; next try in {wait:.1f} s", status=429, retry_after_s=wait)
        if not self.breaker.allow():
            raise BackendError(self.tier, "circuit_open",
                               f"not called: its last {self.breaker.failures} calls failed; next try in "
                               f"{self.breaker.retry_in():.1f} s")
        try:
            result = await call()
        except BackendError as exc:
            if exc.reason == "status_4xx":
                self.breaker.succeeded()
            else:
                self.breaker.failed()
            raise
        except BaseException:
            self.breaker.abandoned()
            raise
        self.breaker.succeeded()
        return result

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streaming completion: the backend's JSON answer (``model`` set to this tier's name)."""
        return await self._guarded(lambda: self._complete(body))

    async def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        payload = self._body({**body, "stream": False})
        payload.pop("stream_options", None)
        try:
            async with asyncio.timeout(self.cfg.timeout_s):
                resp = await self._with_retries(lambda: self._client.post(self._url, json=payload))
                try:
                    data = resp.json()
                except ValueError:
                    raise BackendError(self.tier, "bad_response", "answer is not JSON", resp.status_code) from None
        except TimeoutError:
            raise BackendError(self.tier, "timeout", f"no answer within {self.cfg.timeout_s:g} s") from None
        if not (isinstance(data, dict) and isinstance(data.get("choices"), list)):
            raise BackendError(self.tier, "bad_response", "answer has no `choices` list", resp.status_code)
        data["model"] = self.name
        return data

    async def stream(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """A streaming completion: the backend's SSE chunks as dicts (``model`` set to this tier's name).
        Connection errors and bad status raise before the first chunk; later failures raise ``stream``."""
        payload = self._body({**body, "stream": True})
        request = self._client.build_request("POST", self._url, json=payload)
        resp = await self._guarded(
            lambda: self._with_retries(lambda: self._client.send(request, stream=True), stream=True))
        try:
            async for line in self._lines(resp):
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise BackendError(self.tier, "bad_response", "stream chunk is not JSON") from None
                if not isinstance(chunk, dict):
                    raise BackendError(self.tier, "bad_response", "stream chunk is not an object")
                if "error" in chunk:
                    raise BackendError(self.tier, "stream", f"error in stream: {_error_message(chunk)}")
                chunk["model"] = self.name
                yield chunk
            raise BackendError(self.tier, "stream", "stream ended without [DONE]")
        except BackendError:
            self.breaker.failed()  # a tier that breaks its streams is not healthy
            raise
        finally:
            await resp.aclose()

    async def _lines(self, resp: httpx.Response) -> AsyncIterator[str]:
        try:
            async for line in resp.aiter_lines():
                yield line
        except httpx.TimeoutException:
            raise BackendError(self.tier, "timeout",
                               f"stream stalled for {self.cfg.read_timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise BackendError(self.tier, "stream", f"stream broke: {type(exc).__name__}") from None

    async def _with_retries(self, send: Any, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            try:
                resp = await send()
            except httpx.TimeoutException:
                err = BackendError(self.tier, "timeout", "timed out connecting or waiting for headers")
            except httpx.HTTPError as exc:
                err = BackendError(self.tier, "connect", f"cannot reach {self.cfg.base_url}: {type(exc).__name__}")
            else:
                if resp.status_code < 400:
                    return resp
                err = await self._status_error(resp, stream)
                if err.client_fault:
                    raise err
                if err.retry_after_s is not None:  # the upstream said when: no retry before that
                    self._cool_until = max(self._cool_until, time.monotonic() + err.retry_after_s)
                    raise err
            if attempt >= self.cfg.max_retries or err.status in (401, 403, 404):
                raise err
            delay = self.cfg.backoff_s * (2**attempt) * (0.5 + random.random())
            log.info("%s backend: %s; retry %d in %.2f s", self.tier, err.reason, attempt + 1, delay)
            await asyncio.sleep(delay)
            attempt += 1

    async def _status_error(self, resp: httpx.Response, stream: bool) -> BackendError:
        try:
            raw = await resp.aread() if stream else resp.content
            message = _error_message(json.loads(raw))
        except (ValueError, httpx.HTTPError):
            message = f"HTTP {resp.status_code}"
        finally:
            if stream:
                await resp.aclose()
        code = resp.status_code
        if code == 429:
            wait = retry_after_s(resp.headers.get("retry-after"), self.cfg.max_retry_after_s)
            return BackendError(self.tier, "rate_limited", f"HTTP 429: {message}", status=code, retry_after_s=wait)
        reason = "status_5xx" if code >= 500 else "status_4xx"
        return BackendError(self.tier, reason, f"HTTP {code}: {message}", status=code,
                            client_fault=code in (400, 422))


def retry_after_s(value: str | None, cap_s: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), at most ``cap_s``;
    None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(seconds, 0.0), cap_s) if seconds == seconds else None  # NaN: unreadable


def _error_message(data: Any) -> str:
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:500]
        return str(err)[:500]
    return str(data)[:500]
