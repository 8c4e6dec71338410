"""A small OpenAI-protocol server of the tests' own, on loopback, that can be told to misbehave.

Modes: ``ok`` (echo answers, streaming or not), ``fail`` (HTTP 500), ``stall`` (never answers),
``garbage`` (200 with a body that is not OpenAI JSON), ``reject`` (HTTP 400 like a real API refusing a
parameter), ``stall_midstream`` / ``garbage_stream`` (the opening chunk and the first token, then silence / a non-JSON SSE
chunk), ``stall_before_content`` / ``garbage_before_content`` (the same right after the opening chunk),
``rate_limited`` (HTTP 429 with ``Retry-After: <retry_after>`` when that is set), ``starting`` (HTTP 404 on
every route, as Serve's proxy answers before the engine's route exists). ``GET /v1/models`` lists the model.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from routeray.deployments.cli import free_port


class FakeOpenAI:
    """Runs in a background thread; ``mode`` may be changed at any time; ``calls`` counts requests and
    ``authorizations`` keeps each one's Authorization header. ``with FakeOpenAI(...) as fake`` starts it and
    stops it afterwards."""

    def __init__(self, model: str):
        self.model = model
        self.mode = "ok"
        self.retry_after: str | None = None  # the Retry-After header of mode rate_limited
        self.calls = 0
        self.last_body: dict | None = None
        self.authorizations: list[str] = []
        self.port = free_port()
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._chat)
        self.app.get("/v1/models")(self._models)
        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                     log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        deadline = time.time() + 10
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self._server.force_exit = True  # handlers left stalling by a test would hold a graceful shutdown
        self.stop()

    def _answer(self, body: dict) -> str:
        last = body["messages"][-1].get("content", "")
        return f"[{self.model}] {str(last)[:40]}"

    async def _models(self):
        if self.mode in ("starting", "no_models_route"):
            return PlainTextResponse("Not Found", status_code=404)
        return {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "fake"}]}

    async def _chat(self, request: Request):
        if self.mode == "starting":
            return PlainTextResponse("Not Found", status_code=404)
        self.calls += 1
        self.authorizations.append(request.headers.get("authorization", ""))
        body = await request.json()
        self.last_body = body
        mode = self.mode
        if mode == "fail":
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, status_code=500)
        if mode == "rate_limited":
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            return JSONResponse({"error": {"message": "Rate limit reached", "type": "rate_limit_error",
                                           "param": None, "code": "rate_limit_exceeded"}},
                                status_code=429, headers=headers)
        if mode == "reject":
            return JSONResponse({"error": {"message": "max_tokens is too large", "type": "invalid_request_error",
                                           "param": "max_tokens", "code": None}}, status_code=400)
        if mode == "stall":
            await asyncio.sleep(3600)
        if mode == "garbage":
            return PlainTextResponse("<html>surprise</html>", status_code=200)
        text = self._answer(body)
        created = int(time.time())
        if not body.get("stream"):
            return JSONResponse({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": created, "model": self.model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
            })
        return StreamingResponse(self._stream(text, created, mode), media_type="text/event-stream")

    async def _stream(self, text: str, created: int, mode: str):
        def chunk(delta: dict, finish: str | None = None) -> str:
            c = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                 "model": self.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(c)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        # *_before_content: broken after the opening chunk, before any token (the gateway can still fall
        # back); stall_midstream / garbage_stream: broken after the first token (too late to fall back)
        if mode == "stall_before_content":
            await asyncio.sleep(3600)
        if mode == "garbage_before_content":
            yield "data: {not json\n\n"
            return
        for i, word in enumerate(text.split(" ")):
            yield chunk({"content": word + " "})
            if i == 0 and mode == "stall_midstream":
                await asyncio.sleep(3600)
            if i == 0 and mode == "garbage_stream":
                yield "data: {not json\n\n"
                return
        yield chunk({}, "stop")
        yield "data: [DONE]\n\n"
