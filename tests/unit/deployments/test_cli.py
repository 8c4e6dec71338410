"""``routeray serve`` without starting anything: what it would deploy, and on which port."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from routeray.config import Config

REPO = Path(__file__).resolve().parents[3]


def _deployed(monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``routeray serve`` with Ray faked out; returns the HTTP options it would start Serve with and the
    applications it would deploy."""
    from routeray import cli
    from routeray.deployments import cli as serve_cli

    started: dict[str, Any] = {}
    deployed: list[dict[str, Any]] = []
    monkeypatch.setattr(serve_cli, "_start_serve", lambda cfg, ray_init=None: started.update(
        host=cfg.http_host, port=cfg.http_port))
    monkeypatch.setattr(serve_cli, "deploy", lambda apps, timeout_s=600.0: deployed.extend(apps))
    monkeypatch.setattr(serve_cli, "stop", lambda shm_before=None: None)
    monkeypatch.setattr(serve_cli, "_interrupt_on_signals", lambda: None)

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(serve_cli.time, "sleep", interrupt)
    args = cli.build_parser().parse_args(["serve", *argv])
    assert isinstance(args, argparse.Namespace) and serve_cli.run(args) == 0
    return started, deployed


def test_port_override_reaches_every_url_derived_from_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """`routeray serve --config deploy/serve_config.yaml --port 9000`: Serve listens on 9000 and the gateway
    reaches the weak engine through 9000 too (it stayed on the file's 8000)."""
    monkeypatch.delenv("ROUTERAY_STRONG_BASE_URL", raising=False)
    started, apps = _deployed(monkeypatch, "--config", str(REPO / "deploy" / "serve_config.yaml"), "--port", "9000")
    assert started["port"] == 9000
    (gateway,) = [a for a in apps if a["import_path"].endswith(":build_app")]
    resolved = Config.model_validate(gateway["args"]).resolved()
    assert resolved.weak.base_url == "http://127.0.0.1:9000/weak/v1"
    assert resolved.strong.base_url == resolved.weak.base_url  # no strong API set: the local engine


def test_without_flags_the_files_http_options_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    started, apps = _deployed(monkeypatch, "--config", str(REPO / "deploy" / "serve_config.yaml"))
    assert started == {"host": "0.0.0.0", "port": 8000}
    (gateway,) = [a for a in apps if a["import_path"].endswith(":build_app")]
    assert Config.model_validate(gateway["args"]).resolved().weak.base_url == "http://127.0.0.1:8000/weak/v1"


def test_free_ports_come_from_outside_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """HAProxy's stats/metrics ports and the tests' servers: a port between Ray's worker ports and the kernel's
    ephemeral range (where outgoing connections take theirs, so a port picked there can be gone before its
    server binds it), free at the time; port 0's choice where that range is too small."""
    import socket

    from routeray.deployments import cli as serve_cli

    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("32768\t60999\n")
    monkeypatch.setattr(serve_cli, "_EPHEMERAL_RANGE", ranges)
    ports = {serve_cli.free_port() for _ in range(20)}
    assert all(serve_cli.RAY_WORKER_PORTS_END < p < 32768 for p in ports) and len(ports) > 1
    with socket.socket() as s:  # and it is free: a server can bind it
        s.bind(("127.0.0.1", ports.pop()))
    ranges.write_text("20100 60999\n")  # no room below the ephemeral range: the kernel's choice
    assert serve_cli._unassigned_ports() is None
    assert 0 < serve_cli.free_port() < 65536
