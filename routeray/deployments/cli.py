"""``routeray serve``: start Ray and Serve, deploy the weak engine and the gateway, block until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from routeray.config import STRONG_URL_ENV, Config, load_config_file, local_profile

log = logging.getLogger(__name__)


def serve_applications(cfg: Config) -> list[dict[str, Any]]:
    """The Serve config ``applications`` for ``cfg``: the same shape as ``deploy/serve_config.yaml``."""
    logging_config = {"enable_access_log": cfg.ingress.access_log}
    apps = []
    if cfg.engine.enabled:
        engine = cfg.engine.model_copy(update={"model_id": cfg.engine.model_id or cfg.weak.upstream_model})
        apps.append({"name": cfg.engine.app_name, "route_prefix": cfg.engine.route_prefix,
                     "import_path": "routeray.deployments.app:build_engine_app",
                     "args": engine.model_dump(mode="json"), "logging_config": logging_config})
    apps.append({"name": cfg.app_name, "route_prefix": cfg.route_prefix,
                 "import_path": "routeray.deployments.app:build_app",
                 "args": cfg.model_dump(mode="json"), "logging_config": logging_config})
    return apps


def build_application(app: dict[str, Any]) -> Any:
    """The Serve ``Application`` a Serve config entry describes: its ``import_path`` (a builder called with
    ``args``, or an application), as ``serve run``/``serve deploy`` import it."""
    module_name, _, attr = str(app["import_path"]).partition(":")
    target = getattr(importlib.import_module(module_name), attr)
    return target(app.get("args") or {}) if callable(target) else target


def deploy(applications: list[dict[str, Any]], timeout_s: float = 600.0) -> None:
    """Deploy Serve applications (entries of a Serve config's ``applications``) with Serve's public
    ``serve.run``, gateway first (it answers, and says what is not ready, while the engine loads), and
    return once every one is RUNNING; a failed deployment raises with Serve's message.

    ``serve.run`` waits for each application in turn; it runs in a worker thread so that a deployment that
    cannot be placed (it would wait forever) ends in a clear error after ``timeout_s``. This thread calls no
    Serve API meanwhile: Serve's config validators register and unregister modules for pickling globally, so
    two threads using Serve at once can break each other. Deployment-level ``deployments:`` overrides are for
    Serve's declarative deploy (``serve deploy``, KubeRay), which applies them; here they are refused rather
    than silently dropped."""
    from ray import serve

    from routeray.errors import RouterayError

    for app in applications:
        if app.get("deployments"):
            raise RouterayError(f"application {app['name']!r} has a `deployments:` list: routeray serve deploys "
                                "with serve.run, which cannot apply it; say those options in its args "
                                "(or deploy the file with `serve deploy`)")
    ordered = sorted(applications, key=lambda a: not str(a["import_path"]).endswith(":build_app"))
    errors: list[BaseException] = []
    done: list[str] = []

    def run_all() -> None:
        try:
            for app in ordered:
                serve.run(build_application(app), name=app["name"], route_prefix=app.get("route_prefix", "/"),
                          logging_config=app.get("logging_config"))
                done.append(app["name"])
        except BaseException as exc:  # noqa: BLE001 - reported by the waiting thread
            errors.append(exc)

    worker = threading.Thread(target=run_all, name="routeray-deploy", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if errors:
        raise RouterayError(f"deploying failed: {type(errors[0]).__name__}: {errors[0]}") from errors[0]
    if worker.is_alive():
        waiting = [a["name"] for a in ordered if a["name"] not in done]
        raise RouterayError(f"Serve applications {waiting} not running after {timeout_s:.0f} s (is there a "
                            "node with the resources they ask for?)")


RAY_WORKER_PORTS_END = 19999  # Ray's workers bind ports 10002-19999 by default
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _unassigned_ports() -> tuple[int, int] | None:
    """Ports above Ray's worker ports and below the kernel's ephemeral range, or None when that leaves too few."""
    try:
        ephemeral_low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 49152  # IANA's dynamic range, the default where /proc is not there
    low, high = RAY_WORKER_PORTS_END + 1, ephemeral_low - 1
    return (low, high) if high - low >= 1000 else None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now, for a server that binds it a moment later. Chosen outside the
    kernel's ephemeral range, where every outgoing connection takes its local port: a port picked there (by
    binding port 0) can be taken in between, and a Ray start opens many connections (HAProxy's stats port was
    taken that way in CI: "cannot bind socket (Address already in use)"). Falls back to port 0's choice when
    there is no such range."""
    span = _unassigned_ports()
    if span is not None:
        for port in random.sample(range(span[0], span[1] + 1), 200):
            with socket.socket() as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


HAPROXY_HEALTH_CHECK_FALL = "10"  # failed checks before HAProxy marks a replica down (Ray's default: 2)


def haproxy_env() -> dict[str, str]:
    """Ray 2.60 environment for ``http_proxy: haproxy``: HAProxy on the HTTP port, ingress replicas serving
    HTTP themselves (no Python proxy, no proxy -> replica call, no body pulled back from the proxy), user code
    on the replica's main loop, gRPC between deployments. The short drain suits a local run (nothing in front
    to deregister from); HAProxy's stats, metrics and fallback-proxy ports are free ones, so several gateways
    can share a machine. HAProxy marks a replica down after 10 failed health checks, not Ray's 2: a saturated
    replica answers its checks late, and once marked down its traffic goes to Ray's Python proxy (HAProxy's
    backup server), which costs more CPU per request on the same cores; past saturation that halved answers/s
    (``bench/results/overhead_pinned_hc.json``; Ray's controller still removes replicas that die)."""
    return {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_HEALTH_CHECK_FALL": HAPROXY_HEALTH_CHECK_FALL,
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
        **{name: str(free_port()) for name in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                                               "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
                                               "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")},
    }


@contextlib.contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    """``extra`` in os.environ for the block (Ray's processes inherit it when ray.init starts them); the
    caller's values win, and nothing leaks into later Ray starts in this process."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update({k: v for k, v in extra.items() if saved[k] is None})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


def _start_serve(cfg: Config, ray_init: dict[str, Any] | None) -> None:
    import ray
    from ray import serve

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if ray.is_initialized():
        if cfg.http_proxy == "haproxy":
            log.warning("Ray is already running: http_proxy=haproxy needs Ray started with %s; using its setting",
                        ", ".join(haproxy_env()))
    else:
        with _environ(haproxy_env() if cfg.http_proxy == "haproxy" else {}):
            ray.init(**(ray_init or {"include_dashboard": False}))
    serve.start(http_options={"host": cfg.http_host, "port": cfg.http_port})


def start(cfg: Config, ray_init: dict[str, Any] | None = None) -> Config:
    """Start (or join) Ray, start Serve on ``cfg``'s host and port, and deploy the engine and the gateway;
    returns the resolved config once every application is running."""
    resolved = cfg.resolved()
    _start_serve(cfg, ray_init)
    deploy(serve_applications(cfg))
    return resolved


def read_serve_file(path: str) -> dict[str, Any] | None:
    """A Serve config file's contents, or None when ``path`` holds a gateway config (the Config tree)."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return data if isinstance(data, dict) and "applications" in data else None


def file_applications(serve_file: dict[str, Any], http_port: int) -> list[dict[str, Any]]:
    """The file's applications, the gateway's ``args`` told the HTTP port Serve listens on: every URL the
    gateway derives from it (the local engine's) follows a ``--port`` override."""
    apps = copy.deepcopy(serve_file["applications"])
    for app in apps:
        if str(app.get("import_path", "")).endswith(":build_app"):
            app["args"] = {**(app.get("args") or {}), "http_port": http_port}
    return apps


def start_serve_file(serve_file: dict[str, Any], cfg: Config, ray_init: dict[str, Any] | None = None) -> Config:
    """Deploy every application of a Serve config file (``import_path`` + ``args``), as ``serve run`` does,
    on ``cfg``'s host and port."""
    _start_serve(cfg, ray_init)
    deploy(file_applications(serve_file, cfg.http_port))
    return cfg.resolved()


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
        if ray.is_initialized():  # serve.shutdown() would otherwise start a new Ray just to stop it
            serve.shutdown()
    except Exception as exc:  # noqa: BLE001 - shutting down: report and go on to stop Ray
        log.warning("serve.shutdown failed: %s", exc)
    finally:
        ray.shutdown()
    if shm_before is not None:
        time.sleep(1.0)
        left = shm_segments() - shm_before
        for name in left - _in_use(left):
            (Path("/dev/shm") / name).unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``routeray serve [--config file] [--host H] [--port P]``: Ctrl-C (or SIGTERM) at any
    point, start-up included, shuts Serve and Ray down before exiting."""
    cfg = load_config_file(args.config) if args.config else local_profile()
    serve_file = read_serve_file(args.config) if args.config else None
    http = (serve_file or {}).get("http_options") or {}
    cfg = cfg.model_copy(update={"http_host": args.host or http.get("host") or cfg.http_host,
                                 "http_port": args.port or http.get("port") or cfg.http_port})
    t0 = time.perf_counter()
    shm_before = shm_segments()
    _interrupt_on_signals()  # also when SIGINT was inherited as "ignored" (a background job)
    try:
        if serve_file is not None:
            resolved = start_serve_file(serve_file, cfg)  # every application in the file, engine included
        else:
            resolved = start(cfg)
        _interrupt_on_signals()  # ray.init installs its own SIGTERM handler
        print(_ready_message(cfg, resolved, time.perf_counter() - t0), flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let shutdown finish
        print("shutting down…", file=sys.stderr, flush=True)
        stop(shm_before)
    return 0


def _interrupt_on_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)


def _ready_message(cfg: Config, resolved: Config, seconds: float) -> str:
    url = f"http://{cfg.http_host}:{cfg.http_port}{cfg.route_prefix.rstrip('/')}"
    strong = (f"{resolved.strong.base_url} (model {resolved.strong.upstream_model})"
              if os.environ.get(STRONG_URL_ENV) or cfg.strong.base_url
              else f"the LOCAL weak engine (no {STRONG_URL_ENV} set): both tiers are {resolved.weak.upstream_model}")
    return "\n".join([
        f"routeray gateway ready in {seconds:.0f} s at {url}/v1  (OpenAI API)",
        f"  routers: {', '.join(r.router for r in cfg.routers)}  -> model=router-<router>-<threshold>",
        f"  weak tier:   {resolved.weak.name} at {resolved.weak.base_url}",
        f"  strong tier: {resolved.strong.name} = {strong}",
        f"  metrics:     {url}/metrics   health: {url}/health   ready: {url}/ready",
        "Ctrl-C to stop.",
    ])
