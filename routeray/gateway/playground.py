"""The playground: one plain HTML page (``static/playground.html``, no build step) served by the gateway at
``/playground``, and the two small JSON endpoints it calls besides the OpenAI API.

The page holds no data; every call it makes carries the client key the user types (kept in the tab's
session storage) and goes through the same key check, rate limit and budget as any request: ``POST
/playground/api/explain`` (each router's score for a prompt and what the chosen model name would decide,
with the tiers' prices; nothing is sent upstream) and ``GET /playground/api/shares`` (each router's live
strong share, for the chart). The answer itself streams from ``/v1/chat/completions``.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from pydantic import BaseModel, ConfigDict, Field


class ExplainRequest(BaseModel):
    """``POST /playground/api/explain``."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(max_length=100_000)
    model: str = Field(min_length=1, max_length=256)


@cache
def page() -> str:
    """The playground's HTML (read once from the package)."""
    return files("routeray.gateway").joinpath("static/playground.html").read_text(encoding="utf-8")
