"""Wire models of the OpenAI chat API (what the gateway accepts and returns), and errors as values.

Requests keep fields the gateway does not know (``extra="allow"``): tools, response_format, seed, logprobs,
… pass through to the backend unchanged. Errors have OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``; :data:`STATUS_BY_TYPE` maps them to HTTP status codes
in one place.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# error type -> HTTP status. The one place where status codes are chosen.
STATUS_BY_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "insufficient_quota": 429,
    "upstream_error": 502,
    "overloaded_error": 503,
    "timeout_error": 504,
    "server_error": 500,
}


class TextPart(BaseModel):
    """One part of a multi-part message content."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """One message of the conversation."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text (text parts joined; non-text parts ignored)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if p.text)


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``. Known fields are checked; others pass through to the backend."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=16)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    user: str | None = None

    def routing_text(self, mode: str = "last_user") -> str:
        """The text a router scores: the last user turn (default), or every user turn joined."""
        users = [m.text() for m in self.messages if m.role == "user"]
        if not users:  # a conversation with no user turn: route on whatever was said last
            return self.messages[-1].text()
        return users[-1] if mode == "last_user" else "\n\n".join(users)

    def upstream_body(self, model: str) -> dict[str, Any]:
        """The JSON body for a backend: everything the client sent, with ``model`` replaced."""
        body = self.model_dump(mode="json", exclude_unset=True, exclude_none=False)
        body["model"] = model
        return body


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "routeray"
    routeray: dict[str, Any] = Field(default_factory=dict, description="What this name does, for people.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class APIError(Exception):
    """An error that becomes an OpenAI-shaped response. Raised anywhere, rendered in one place.
    ``retry_after_s``: when to come back (429, 503), sent as ``Retry-After``."""

    def __init__(self, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, retry_after_s: int | None = None):
        super().__init__(message)
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s

    @property
    def status(self) -> int:
        return STATUS_BY_TYPE.get(self.type, 500)

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"
