"""Gateway config: validation, defaults, environment resolution, the shipped Serve config file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from routeray.config import (
    AutoscalingConfig,
    BackendConfig,
    Config,
    EngineConfig,
    ScorerConfig,
    load_config_file,
)
from routeray.errors import RouterayError

REPO = Path(__file__).resolve().parents[2]
SERVE_CONFIG = REPO / "deploy" / "serve_config.yaml"


def _models(model: type[BaseModel], seen: set[type] | None = None) -> set[type[BaseModel]]:
    seen = seen if seen is not None else set()
    seen.add(model)
    for field in model.model_fields.values():
        for t in getattr(field.annotation, "__args__", ()) + (field.annotation,):
            if isinstance(t, type) and issubclass(t, BaseModel) and t not in seen:
                _models(t, seen)
    return seen


def test_every_field_is_described_and_extra_keys_are_forbidden() -> None:
    models = _models(Config)
    assert {ScorerConfig, BackendConfig, EngineConfig, AutoscalingConfig} <= models
    for model in models:
        assert model.model_config.get("extra") == "forbid", model
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


@pytest.mark.parametrize("args", [
    {"routerz": []},
    {"routers": []},
    {"routers": [{"router": "mf"}, {"router": "mf"}]},
    {"routers": [{"router": "mf", "max_batch_size": 0}]},
    {"routers": [{"router": "mf", "max_batch_size": 600, "max_ongoing_requests": 100}]},
    {"routers": [{"router": "mf", "autoscaling": {"min_replicas": 3, "max_replicas": 2}}]},
    {"strong": {"name": "x"}, "weak": {"name": "x"}},
    {"strong": {"name": "router-x"}},
    {"weak": {"name": "strong"}},
    {"routing": {"scorer_failure_tier": "medium"}},
    {"ingress": {"max_body_bytes": 10}},
    {"engine": {"accelerator": "tpu"}},
    {"strong": {"name": "s", "api_key": "sk-secret"}},
])
def test_invalid_configs_are_refused(args: dict) -> None:
    with pytest.raises(ValidationError):
        Config.model_validate(args)


def test_strong_tier_comes_from_the_environment() -> None:
    cfg = Config().resolved({"ROUTERAY_STRONG_BASE_URL": "https://api.example.com/v1",
                             "ROUTERAY_STRONG_MODEL": "gpt-4o"})
    assert cfg.strong.base_url == "https://api.example.com/v1"
    assert cfg.strong.upstream_model == "gpt-4o"
    assert cfg.strong.api_key_env == "ROUTERAY_STRONG_API_KEY"
    assert cfg.weak.base_url == "http://127.0.0.1:8000/weak/v1"


def test_without_a_strong_api_the_strong_tier_is_the_local_engine(caplog: pytest.LogCaptureFixture) -> None:
    cfg = Config(http_port=8123).resolved({})
    assert cfg.strong.base_url == cfg.weak.base_url == "http://127.0.0.1:8123/weak/v1"
    assert cfg.strong.upstream_model == cfg.weak.upstream_model == "SmolLM2-135M-Instruct"
    assert cfg.strong.name == "strong"  # responses still say which tier answered
    assert "LOCAL weak engine" in caplog.text


def test_readiness_knows_which_tiers_sit_behind_this_clusters_serve_proxy() -> None:
    """Only those answer 404 while their route is missing (the gateway then waits for them); any other API may
    lack a /models route and is up."""
    cfg = Config(http_port=8123).resolved({"ROUTERAY_STRONG_BASE_URL": "https://api.example.com/v1"})
    assert cfg.behind_serve_proxy(cfg.weak.base_url)
    assert cfg.behind_serve_proxy("http://127.0.0.1:8123/another-app/v1")
    assert not cfg.behind_serve_proxy(cfg.strong.base_url)
    assert not cfg.behind_serve_proxy("http://127.0.0.1:81234/weak/v1")  # another port, not a prefix match
    assert not cfg.behind_serve_proxy(None)


def test_serve_config_file_is_valid() -> None:
    data = yaml.safe_load(SERVE_CONFIG.read_text())
    apps = {a["name"]: a for a in data["applications"]}
    assert apps["routeray"]["import_path"] == "routeray.deployments.app:build_app"
    assert apps["weak-engine"]["import_path"] == "routeray.deployments.app:build_engine_app"
    cfg = load_config_file(str(SERVE_CONFIG))
    assert "mf" in [r.router for r in cfg.routers]
    assert all(r.num_gpus > 0 for r in cfg.routers if r.router != "random")
    engine = EngineConfig.model_validate(apps["weak-engine"]["args"])
    assert engine.accelerator == "gpu"
    assert apps["weak-engine"]["route_prefix"] == cfg.engine.route_prefix


def test_config_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("routers: [{router: random, max_batch_size: -1}]\n")
    with pytest.raises(RouterayError, match="bad.yaml"):
        load_config_file(str(bad))
    with pytest.raises(RouterayError, match="missing.yaml"):
        load_config_file(str(tmp_path / "missing.yaml"))


def test_make_serve_ships_the_fast_shape() -> None:
    """`routeray serve` without --config: HAProxy, every router scored in the ingress, admission shedding on,
    and mf's shipped prefilter in use."""
    from routeray.config import local_profile

    cfg = local_profile()
    assert cfg.http_proxy == "haproxy"
    assert {r.router for r in cfg.routers} == {"mf", "random"}
    assert all(r.placement == "ingress" and r.admit_wait_s for r in cfg.routers)
    mf = next(r for r in cfg.routers if r.router == "mf")
    assert cfg.router_prefilter(mf) == 3.0 and "prefilter" not in cfg.router_overrides(mf)
