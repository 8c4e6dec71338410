"""routeray: route LLM requests between a strong and a weak model, served on Ray Serve.

Importing this package does no work: routers, embedders and models load only when asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from routeray._version import __version__

if TYPE_CHECKING:
    from routeray.routers.base import Router

__all__ = ["__version__", "load_router", "available_routers"]


def load_router(name: str, artifact: str | None = None, **overrides: Any) -> Router:
    """Load a router by name (``"mf"``, ``"sw_ranking"``, …) from its artifact (default: the shipped one)."""
    from routeray.routers.registry import load_router as _load

    return _load(name, artifact=artifact, **overrides)


def available_routers() -> list[str]:
    """Names of every registered router."""
    from routeray.routers.registry import available_routers as _available

    return _available()
