"""``routeray serve``: start Ray and Serve, deploy the weak engine and the gateway, block until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
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
    logging_config = {"enable_access_log": cfg.ingress.access_log}
    targets = []
    if cfg.engine.enabled:
        targets.append(RunTarget(build_engine_app(cfg.engine.model_dump()), name=cfg.engine.app_name,
                                 route_prefix=cfg.engine.route_prefix, logging_config=logging_config))
    targets.append(RunTarget(build_app(cfg.model_dump()), name=cfg.app_name, route_prefix=cfg.route_prefix,
                             logging_config=logging_config))
    serve.run_many(targets)
    return resolved


def start_serve_file(path: str, cfg: Config, ray_init: dict[str, Any] | None = None) -> Config:
    """Deploy every application of a Serve config file (``import_path`` + ``args``), as ``serve run`` does."""
    import importlib

    import ray
    import yaml
    from ray import serve
    from ray.serve.api import RunTarget

    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not ray.is_initialized():
        ray.init(**(ray_init or {"include_dashboard": False}))
    serve.start(http_options={"host": cfg.http_host, "port": cfg.http_port})
    targets = []
    for app in data["applications"]:
        module, _, attr = app["import_path"].replace(":", ".").rpartition(".")
        builder = getattr(importlib.import_module(module), attr)
        targets.append(RunTarget(builder(app.get("args") or {}), name=app["name"],
                                 route_prefix=app.get("route_prefix", "/")))
    serve.run_many(targets)
    return cfg.resolved()


def _is_serve_file(path: str) -> bool:
    import yaml

    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return isinstance(data, dict) and "applications" in data


def shm_segments() -> set[str]:
    """Names of the shared-memory segments vLLM's message queues create (``/dev/shm/psm_*``)."""
    shm = Path("/dev/shm")
    return {p.name for p in shm.glob("psm_*")} | {p.name for p in shm.glob("sem.mp-*")} if shm.is_dir() else set()


def _in_use(names: set[str]) -> set[str]:
    """Those of ``names`` some live process still maps or holds open."""
    used = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            maps = (proc / "maps").read_text(errors="replace")
        except OSError:
            continue
        used |= {n for n in names if n in maps}
    return used


def stop(shm_before: set[str] | None = None) -> None:
    """Shut Serve and Ray down (the engine's worker processes go with them). With ``shm_before`` (taken
    before start), remove the shared-memory segments vLLM left behind that no process uses any more."""
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
    if shm_before is not None:
        time.sleep(1.0)
        left = shm_segments() - shm_before
        for name in left - _in_use(left):
            (Path("/dev/shm") / name).unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``routeray serve [--config file] [--host H] [--port P]``."""
    cfg = load_config_file(args.config) if args.config else local_profile()
    cfg = cfg.model_copy(update={"http_host": args.host, "http_port": args.port})
    t0 = time.perf_counter()
    shm_before = shm_segments()
    if args.config and _is_serve_file(args.config):
        resolved = start_serve_file(args.config, cfg)  # every application in the file, engine included
    else:
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
    # Explicit handlers: a SIGINT inherited as "ignored" (background job) would otherwise never stop us.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1.0):
        pass
    print("shutting down…", file=sys.stderr, flush=True)
    stop(shm_before)
    return 0
