"""Which models a trained router knows, read from its artifact without loading it: the start-up check that
every configured model (a tier, or a pool model) is one the router was trained on, directly or through an
alias, before any traffic is accepted."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from routeray.artifacts import CONFIG_FILE, resolve_artifact_dir
from routeray.errors import ArtifactError, RouterayError
from routeray.routers.mf import ModelResolver
from routeray.routers.pool import PoolScoring, resolve_pool
from routeray.routers.registry import get_router_class

log = logging.getLogger(__name__)


def trained_models(router: str, artifact: str | Path | None = None) -> tuple[list[str], dict[str, str], bool] | None:
    """What router ``router``'s artifact was trained on, read from its ``config.json`` without loading it:
    ``(models, model_aliases, scores_a_pool)``; None for a router without an artifact or one that does not
    list its models (a pair-only 3-class head: it scores the pair asked for as its trained pair)."""
    cls = get_router_class(router)
    if not getattr(cls, "needs_artifact", True):
        return None
    path = resolve_artifact_dir(router, artifact) / CONFIG_FILE
    if not path.is_file():
        raise ArtifactError(f"no router artifact at {path.parent} (missing {CONFIG_FILE})")
    cfg = json.loads(path.read_text()).get("config", {})
    models = cfg.get("models") or list(cfg.get("model_tiers") or [])
    if not models or cfg.get("head") == "three_class":
        return None
    per_model = issubclass(cls, PoolScoring) and cfg.get("head", "per_model") == "per_model"
    return [str(m) for m in models], {str(k): str(v) for k, v in (cfg.get("model_aliases") or {}).items()}, per_model


def check_router_models(router: str, artifact: str | Path | None, models: Sequence[str],
                        aliases: dict[str, str] | None = None, pool: bool = False) -> None:
    """Start-up check that router ``router`` knows every configured model (by name or alias); with
    ``pool``, also that it predicts each model's quality. Raises a :class:`RouterayError` saying which."""
    try:
        trained = trained_models(router, artifact)
    except ArtifactError as exc:
        if pool:
            raise
        # no artifact to read: the scorer fails on load too, and scorer_failure_tier answers meanwhile
        log.warning("cannot check the models router %r knows: %s", router, exc)
        return
    if trained is None:
        if pool:
            raise RouterayError(f"router {router!r} cannot route a model pool: it does not predict each model's "
                                "quality (serve mf, or bert with its per-model head)")
        return
    known, trained_aliases, per_model = trained
    if pool and not per_model:
        raise RouterayError(f"router {router!r} cannot route a model pool: it does not predict each model's "
                            "quality (serve mf, or bert with its per-model head)")
    resolve_pool(ModelResolver(known, {**trained_aliases, **(aliases or {})}), models, router=f"router {router!r}")
