"""``routeray serve``: start Ray and Serve, deploy the weak engine and the gateway, block until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from routeray.config import STRONG_URL_ENV, Config, load_config_file, local_profile

log = logging.getLogger(__name__)


def start(cfg: Config, ray_init: dict[str, Any] | None = None) -> Config:
    """Start (or join) Ray, start Serve on ``cfg``'s host and port, and deploy everything; returns the
    resolved config once every application is running."""
    import ray
    from ray import serve
    from ray.serve.api import RunTarget

    from routeray.deployments.app import build_app, build_engine_app

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    resolved = cfg.resolved()
    if not ray.is_initialized():
        ray.init(**(ray_init or {"include_dashboard": False}))
    serve.start(http_options={"host": cfg.http_host, "port": cfg.http_port})
    targets = []
    if cfg.engine.enabled:
        targets.append(RunTarget(build_engine_app(cfg.engine.model_dump()), name=cfg.engine.app_name,
                                 route_prefix=cfg.engine.route_prefix))
    targets.append(RunTarget(build_app(cfg.model_dump()), name=cfg.app_name, route_prefix=cfg.route_prefix))
    serve.run_many(targets)
    return resolved


def stop() -> None:
    """Shut Serve and Ray down (the engine's worker processes go with them)."""
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def run(args: argparse.Namespace) -> int:
    """Entry point of ``routeray serve [--config file] [--host H] [--port P]``."""
    cfg = load_config_file(args.config) if args.config else local_profile()
    cfg = cfg.model_copy(update={"http_host": args.host, "http_port": args.port})
    t0 = time.perf_counter()
    resolved = start(cfg)
    url = f"http://{cfg.http_host}:{cfg.http_port}{cfg.route_prefix.rstrip('/')}"
    strong = (f"{resolved.strong.base_url} (model {resolved.strong.upstream_model})"
              if os.environ.get(STRONG_URL_ENV) or cfg.strong.base_url
              else f"the LOCAL weak engine (no {STRONG_URL_ENV} set): both tiers are {resolved.weak.upstream_model}")
    lines = [
        f"routeray gateway ready in {time.perf_counter() - t0:.0f} s at {url}/v1  (OpenAI API)",
        f"  routers: {', '.join(r.router for r in cfg.routers)}  -> model=router-<router>-<threshold>",
        f"  weak tier:   {resolved.weak.name} at {resolved.weak.base_url}",
        f"  strong tier: {resolved.strong.name} = {strong}",
        f"  metrics:     {url}/metrics   health: {url}/health",
        "Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    print("shutting down…", file=sys.stderr, flush=True)
    stop()
    return 0
