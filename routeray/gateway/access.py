"""Client access control for the ingress: optional Bearer API keys with per-key rate limits.

Keys never live in the config tree: :class:`routeray.config.AccessConfig` names an environment variable
and/or a file that hold them, read when the ingress replica starts. Keys are kept only as SHA-256 digests
and compared in constant time; logs and errors name a key by a short *key id* (a digest prefix), never
the key itself. Rate limits are token buckets (``rate_per_minute`` with a ``burst``) per key, per ingress
replica: with N replicas a client can get up to N times the rate (say so when configuring).

Key file format: one key per line, optionally followed by its own requests-per-minute limit and USD
budget per period (``sk-abc123 600``, ``sk-abc123 rpm=600 usd=5``, ``sk-abc123 usd=0.5``; budgets:
:mod:`routeray.gateway.budgets`); blank lines and ``#`` comments are ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from routeray.config import AccessConfig
from routeray.errors import RouterayError
from routeray.gateway.protocol import APIError

log = logging.getLogger(__name__)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_id(key: str) -> str:
    """A short, non-reversible name for a key, safe for logs."""
    return "key-" + _digest(key).hex()[:8]


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; :meth:`take` says how long to wait when empty."""

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate_per_s
        self.burst = burst
        self.tokens = burst
        self._clock = clock
        self._last = clock()

    def take(self) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(frozen=True)
class Client:
    """An authenticated (or anonymous, when keys are off) caller."""

    key_id: str
    rate_per_minute: float | None
    burst: float = 1.0


class KeyLimits(NamedTuple):
    """A key's own limits from its key-file line (None: the configured default)."""

    rate_per_minute: float | None = None
    budget_usd: float | None = None


_KEY_FIELDS = "'<key> [requests per minute] [rpm=<n>] [usd=<budget>]'"


def _positive(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value > 0):
        raise RouterayError(f"{where}: {what} must be a positive number, got {text!r}")
    return value


def parse_key_line(fields: list[str], where: str) -> KeyLimits:
    """The limits after a key on one key-file line: a bare number (requests per minute), rpm=, usd=."""
    found: dict[str, float] = {}
    for i, f in enumerate(fields):
        name, eq, value = f.partition("=")
        if not eq and i == 0:
            name, value = "rpm", f
        if name not in ("rpm", "usd") or name in found:
            raise RouterayError(f"{where}: expected {_KEY_FIELDS}, got {f!r}")
        found[name] = _positive(value, "rate limit (requests per minute)" if name == "rpm" else "budget (USD)",
                                where)
    return KeyLimits(found.get("rpm"), found.get("usd"))


def parse_key_file(path: str | Path) -> dict[str, KeyLimits]:
    """Keys (and their own limits, if given) from a key file; bad lines name file and line."""
    keys: dict[str, KeyLimits] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise RouterayError(f"{path}: cannot read API key file: {exc}") from exc
    for n, raw in enumerate(lines, 1):
        parts = raw.split("#", 1)[0].split()
        if parts:
            keys[parts[0]] = parse_key_line(parts[1:], f"{path}:{n}")
    return keys


def load_keys(cfg: AccessConfig, environ: Mapping[str, str] | None = None) -> dict[str, KeyLimits]:
    """Every client key the config points to (env var: comma- or whitespace-separated; file: see module)."""
    env = os.environ if environ is None else environ
    keys: dict[str, KeyLimits] = {}
    if cfg.api_keys_env:
        value = env.get(cfg.api_keys_env, "")
        if not value.strip():
            raise RouterayError(f"access.api_keys_env names ${cfg.api_keys_env}, which is unset or empty")
        keys.update({k: KeyLimits() for k in value.replace(",", " ").split()})
    if cfg.api_keys_file:
        keys.update(parse_key_file(cfg.api_keys_file))
    if (cfg.api_keys_env or cfg.api_keys_file) and not keys:
        raise RouterayError("client API keys are configured but none were found")
    return keys


class AccessControl:
    """Authenticates requests by Bearer key and applies per-key rate limits. Raises :class:`APIError`."""

    def __init__(self, cfg: AccessConfig, environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self._clock = clock
        keys = load_keys(cfg, environ)
        self._clients = {_digest(k): self._client(key_id(k), lim.rate_per_minute) for k, lim in keys.items()}
        default = cfg.budgets.usd_per_period
        # USD per period for each key id (None: unlimited); "anonymous" stands for every caller when keys are off
        self.budgets: dict[str, float | None] = (
            {key_id(k): lim.budget_usd or default for k, lim in keys.items()} if keys else {"anonymous": default})
        self._buckets: dict[str, TokenBucket] = {}
        if self._clients:
            log.info("client API keys required: %d keys (%s)", len(self._clients),
                     ", ".join(sorted(c.key_id for c in self._clients.values())))

    def _client(self, name: str, own_rate: float | None) -> Client:
        """A key's limits: its own rate (burst: one second's worth) or the configured default rate and burst."""
        if own_rate is not None:
            return Client(name, own_rate, max(1.0, own_rate / 60.0))
        rate = self.cfg.rate_limit_per_minute
        return Client(name, rate, self.cfg.rate_limit_burst or max(1.0, (rate or 60.0) / 60.0))

    @property
    def enabled(self) -> bool:
        """Whether requests must carry a key."""
        return bool(self._clients)

    def authenticate(self, authorization: str | None) -> Client:
        """The client behind an ``Authorization`` header; 401 when keys are on and it is missing or wrong."""
        if not self._clients:
            return self._client("anonymous", None)
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise APIError("missing API key: send 'Authorization: Bearer <key>'", type="authentication_error",
                           code="missing_api_key")
        digest = _digest(token.strip())
        # Constant-time comparison against every key: the match reveals nothing through timing.
        found = None
        for known, client in self._clients.items():
            if hmac.compare_digest(known, digest):
                found = client
        if found is None:
            raise APIError("invalid API key", type="authentication_error", code="invalid_api_key")
        return found

    def check_rate(self, client: Client) -> None:
        """Take one request from the client's bucket; 429 with ``retry_after_s`` set when it is empty."""
        if client.rate_per_minute is None:
            return
        bucket = self._buckets.get(client.key_id)
        if bucket is None:
            bucket = TokenBucket(client.rate_per_minute / 60.0, client.burst, self._clock)
            self._buckets[client.key_id] = bucket
        wait = bucket.take()
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise RateLimited(f"rate limit of {client.rate_per_minute:g} requests per minute exceeded for "
                              f"{client.key_id}; retry in {retry} s", retry)


class RateLimited(APIError):
    """A 429 in OpenAI's shape that also carries the ``Retry-After`` seconds."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message, type="rate_limit_error", code="rate_limit_exceeded", retry_after_s=retry_after_s)
