"""Maps router names to classes. Built-ins are imported lazily so that listing names loads nothing."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from routeray.errors import UnknownRouterError
from routeray.routers.base import Router

# name -> "module:Class"; imported only when that router is asked for.
_BUILTIN: dict[str, str] = {
    "random": "routeray.routers.random:RandomRouter",
    "length": "routeray.routers.length:LengthRouter",
    "knn": "routeray.routers.knn:KNNRouter",
    "sw_ranking": "routeray.routers.sw_ranking:SWRankingRouter",
    "mf": "routeray.routers.mf:MFRouter",
    "bert": "routeray.routers.bert:BertRouter",
    "causal_llm": "routeray.routers.causal_llm:CausalLLMRouter",
}
_REGISTERED: dict[str, type[Router]] = {}


def register_router(cls: type[Router]) -> type[Router]:
    """Class decorator registering a user-defined router under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Router)):
        raise TypeError(f"{cls!r} is not a subclass of routeray.routers.base.Router")
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__name__} has no `name`")
    if name in _BUILTIN or name in _REGISTERED:
        raise ValueError(f"a router named {name!r} is already registered")
    _REGISTERED[name] = cls
    return cls


def available_routers() -> list[str]:
    return sorted({*_BUILTIN, *_REGISTERED})


def get_router_class(name: str) -> type[Router]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _BUILTIN:
        raise UnknownRouterError(f"unknown router {name!r}; known routers: {', '.join(available_routers())}")
    module_name, _, class_name = _BUILTIN[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not issubclass(cls, Router):
        raise TypeError(f"{_BUILTIN[name]} is not a Router")
    return cls


def load_router(name: str, artifact: str | Path | None = None, guard: Any = None, **overrides: Any) -> Router:
    """Load router ``name`` from ``artifact`` (a directory), or from its default artifact when omitted,
    guarded against rerouting by ``guard`` (a mode name or options, :mod:`routeray.routers.guard`, e.g.
    ``"heads"``; None: the router class's own default, which is ``off``: the guard is opt-in)."""
    from routeray.artifacts import resolve_artifact_dir
    from routeray.routers.guard import guard_router

    cls = get_router_class(name)
    if not getattr(cls, "needs_artifact", True):
        router = cls.load(Path(artifact) if artifact else None, **overrides)
    else:
        router = cls.load(resolve_artifact_dir(name, artifact), **overrides)
    return guard_router(router, cls.guard if guard is None else guard)
