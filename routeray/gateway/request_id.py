"""Request ids: every answer carries ``x-request-id`` (the client's, or one made here) and every log record
the gateway writes while serving that request names it.

Behind Ray Serve (its proxy, or an ingress replica serving HTTP itself) Serve's own middleware takes the
client's ``x-request-id`` or makes one, passes it on in the request and puts it on the answer; this
middleware reads it from the request so the logs say the same id. Served without Serve (a test client), it
makes the id and puts it on the answer itself.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

HEADER = "x-request-id"
REQUEST_ID: ContextVar[str | None] = ContextVar("routeray_request_id", default=None)
_UNSAFE = re.compile(r"[^A-Za-z0-9._:\-]")

Message = MutableMapping[str, Any]
ASGIApp = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def log_safe(request_id: str) -> str:
    """The id as it may appear in a log line: at most 128 characters of ``[A-Za-z0-9._:-]``."""
    return _UNSAFE.sub("_", request_id)[:128]


class RequestIdMiddleware:
    """ASGI middleware: the request's id in :data:`REQUEST_ID` while it is served (and on the answer when
    nothing in front of the app gave the request one)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == b"x-request-id"), "")
        request_id = log_safe(given) if given else uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if not given and message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (HEADER.encode(), request_id.encode())]
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


def install_log_request_ids(prefix: str = "routeray") -> None:
    """Make every log record of the ``prefix`` loggers written while a request is served start with
    ``[request <id>]`` (and carry ``record.routeray_request_id``). Process-wide; installing twice is harmless.

    Records of other loggers are left exactly as they were: Ray Serve's own logging reads and writes a
    ``request_id`` attribute, and setting it on every record (even to None) broke Serve's direct-ingress
    (HAProxy) path: connections closed without an answer."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "routeray_request_ids", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        request_id = REQUEST_ID.get()
        if request_id and record.name.startswith(prefix):
            record.routeray_request_id = request_id
            record.msg = f"[request {request_id}] {record.msg}"
        return record

    factory.routeray_request_ids = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
