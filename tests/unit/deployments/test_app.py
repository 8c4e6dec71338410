"""The Ray Serve glue without a running cluster: application builders, the deployments' options, the scorer's
run-time batching knobs, and the shipped Serve config file (each option said once)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from routeray.config import Config, EngineConfig, IngressConfig, load_config_file
from routeray.errors import UnknownModelError

REPO = Path(__file__).resolve().parents[3]
SERVE_CONFIG = REPO / "deploy" / "serve_config.yaml"
OFFLINE_TIERS = {"strong": {"name": "s", "base_url": "http://127.0.0.1:9/v1"},
                 "weak": {"name": "w", "base_url": "http://127.0.0.1:9/v1"}, "engine": {"enabled": False}}


def test_build_app_validates_its_args() -> None:
    from ray.serve import Application

    from routeray.deployments.app import build_app

    assert isinstance(build_app({"routers": [{"router": "random"}]}), Application)
    with pytest.raises(ValidationError):
        build_app({"routers": [{"router": "random", "bogus": 1}]})
    # a model the router was not trained on, without score_as: refused before Serve starts anything
    with pytest.raises(UnknownModelError, match="'my-model' and it has no alias.*known: "):
        build_app({"routers": [{"router": "mf"}], "weak": {"name": "my-model"}})
    pool = [{"name": n, "score_as": m, "price_input_per_mtok": p, "price_output_per_mtok": p}
            for n, m, p in (("a", "mistralai/mistral-7b-chat", 0.2), ("b", "gpt-4-1106-preview", 10))]
    assert isinstance(build_app({"routers": [{"router": "mf"}], "pool": pool}), Application)


def test_serve_config_and_embedded_profile_fit_serves_schema() -> None:
    from ray.serve.schema import ServeDeploySchema

    from routeray.deployments.app import build_engine_app
    from routeray.deployments.cli import serve_applications

    ServeDeploySchema.model_validate(yaml.safe_load(SERVE_CONFIG.read_text()))
    apps = serve_applications(Config())
    assert [a["name"] for a in apps] == ["weak-engine", "routeray"]
    ServeDeploySchema.model_validate({"applications": apps})
    assert Config.model_validate(apps[1]["args"]) == Config()
    # the engine `routeray serve` deploys serves exactly the model the weak tier asks for
    assert EngineConfig.model_validate(apps[0]["args"]).model_id == Config().resolved().weak.upstream_model
    engine_args = yaml.safe_load(SERVE_CONFIG.read_text())["applications"][0]["args"]
    # ray.serve.llm reads ray.get_runtime_context() while building, which starts a local Ray: stop it here
    # (a Ray left running in the test process until exit has crashed the interpreter's shutdown)
    try:
        assert build_engine_app({**engine_args, "model_source": "/models/any"}) is not None
    finally:
        import ray

        ray.shutdown()
    with pytest.raises(ValueError, match="model_id"):
        build_engine_app({"accelerator": "cpu"})


def test_the_gpu_config_says_each_option_once() -> None:
    """deploy/serve_config.yaml: everything the gateway deploys in its args (no `deployments:` list repeating
    them), no http_options or weak-engine settings repeated in the args, and a production weak model on GPU
    vLLM whose name is the one the gateway asks for."""
    data = yaml.safe_load(SERVE_CONFIG.read_text())
    apps = {a["import_path"].rpartition(":")[2]: a for a in data["applications"]}
    gateway, engine_app = apps["build_app"], apps["build_engine_app"]
    assert "deployments" not in gateway and "deployments" not in engine_app
    assert not {"http_port", "http_host", "engine", "app_name", "route_prefix"} & set(gateway["args"])
    cfg, engine = load_config_file(str(SERVE_CONFIG)), EngineConfig.model_validate(engine_app["args"])
    assert engine.accelerator == "gpu" and engine.model_source and "SmolLM2" not in engine.model_source
    assert cfg.weak.upstream_model == engine.model_id
    assert cfg.resolved(environ={}).weak.base_url == f"http://127.0.0.1:{data['http_options']['port']}" \
        f"{engine_app['route_prefix']}/v1"


def test_ingress_options_reach_the_serve_deployment() -> None:
    from routeray.deployments.app import build_app

    app = build_app({"routers": [{"router": "random"}], **OFFLINE_TIERS,
                     "ingress": {"max_ongoing_requests": 64, "max_queued_requests": 32, "num_cpus": 0.5,
                                 "resources": {"routeray_ingress": 1}}})
    gateway = app._bound_deployment  # the deployment behind the bound application
    assert (gateway.max_ongoing_requests, gateway.max_queued_requests) == (64, 32)
    assert gateway.ray_actor_options == {"num_cpus": 0.5, "resources": {"routeray_ingress": 1}}
    with pytest.raises(ValueError):
        IngressConfig(max_queued_requests=-2)


def test_ingress_args_keep_batching_only_for_routers_scored_in_the_ingress() -> None:
    from routeray.deployments.app import ingress_args

    cfg = Config(routers=[{"router": "random", "placement": "ingress", "max_batch_size": 8},
                          {"router": "mf", "max_batch_size": 16}], **OFFLINE_TIERS)
    local, remote = ingress_args(cfg)["routers"]
    assert (local["placement"], local["max_batch_size"]) == ("ingress", 8)
    assert remote["placement"] == "deployment" and "max_batch_size" not in remote
    assert Config.model_validate(ingress_args(cfg)).routers[0].max_batch_size == 8


def test_scorer_takes_its_batching_knobs_from_user_config() -> None:
    """What Serve does with a `deployments:` user_config override: calls reconfigure() on the running
    replica; the next batch uses the new knobs."""
    from routeray.deployments.scorer import RouterScorer

    scorer = RouterScorer({"router": "random", "max_batch_size": 32, "batch_wait_timeout_s": 0.01})
    scorer.reconfigure({"max_batch_size": 8, "batch_wait_timeout_s": 0.002})
    knobs = scorer.batching()
    assert (knobs["max_batch_size"], knobs["batch_wait_timeout_s"]) == (8, 0.002)


def test_every_deployment_of_the_gpu_config_autoscales() -> None:
    """docs/scale.md: the ingress, every scorer deployment and the weak engine scale with load."""
    from routeray.deployments.app import build_app, engine_llm_config

    cfg = load_config_file(str(SERVE_CONFIG))
    assert cfg.ingress.autoscaling is not None and cfg.http_proxy == "haproxy"
    assert all(r.autoscaling is not None for r in cfg.routers if r.placement == "deployment")
    engine_args = next(a for a in yaml.safe_load(SERVE_CONFIG.read_text())["applications"]
                       if a["import_path"].endswith(":build_engine_app"))["args"]
    engine = EngineConfig.model_validate({**engine_args, "model_source": "/models/any"})
    assert engine.autoscaling is not None
    llm = engine_llm_config(engine)
    assert llm.deployment_config["autoscaling_config"]["max_replicas"] == engine.autoscaling.max_replicas
    app = build_app({"routers": [{"router": "random"}], **OFFLINE_TIERS,
                     "ingress": {"autoscaling": {"min_replicas": 2, "max_replicas": 6, "target_ongoing_requests": 100}}})
    assert app._bound_deployment._deployment_config.autoscaling_config.max_replicas == 6
